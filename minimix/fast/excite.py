"""Squeeze-and-excitation's full-size passes on Numba kernels (``minimix.kernels.excite_numba``).

The reference computes the squeeze as ``x.mean(axis=(2, 3))`` and the excite as the broadcasting
product ``x * gate``, whose backward makes a full-size product and then sums it for dL/dgate.
Here the plane means run on every core, and the backward reads g and x once for both
gradients: dL/dx = g * gate and dL/dgate[n, c] = sum over (h, w) of g * x.
"""
import numpy as np

from ..kernels import excite_numba
from ..tensor import Function


class Excite(Function):
    """y = x * gate for x (N, C, H, W) and gate (N, C, 1, 1)."""

    def forward(self, x, gate):
        self.x, self.gate = x, gate
        return excite_numba.excite_forward(x, gate)

    def backward(self, g):
        return excite_numba.excite_backward(self.x, self.gate, g)


class GlobalAvgPool(Function):
    """y[n, c, 0, 0] = mean over (h, w) of x[n, c, h, w];  dL/dx[n, c, h, w] = g[n, c] / (H*W).

    The gradient is a broadcast view: no full-size array is made.
    """

    def forward(self, x):
        self.shape = x.shape
        return excite_numba.plane_means(x)

    def backward(self, g):
        return np.broadcast_to(g / (self.shape[2] * self.shape[3]), self.shape)


def excite(x, gate):
    """The fast ``nn.squeeze_excite.excite``; NotImplemented (the reference then explains or handles it)
    for bad shapes, mixed dtypes or no values at all (an empty batch)."""
    if len(x.shape) != 4 or tuple(gate.shape) != (x.shape[0], x.shape[1], 1, 1) or gate.dtype != x.dtype \
            or 0 in x.shape:
        return NotImplemented
    return Excite.apply(x, gate)


def global_avg_pool(x, output_size=1):
    """The fast ``nn.functional.adaptive_avg_pool2d`` (output size 1 only, as the reference); an empty
    batch or empty planes go to the reference."""
    if output_size not in (1, (1, 1), [1, 1]) or len(x.shape) != 4 or 0 in x.shape:
        return NotImplemented
    return GlobalAvgPool.apply(x)
