"""Squeeze-and-Excitation (Hu et al. 2018), as used in MixNet's blocks.

Each channel gets a gate in (0, 1) computed from the whole image::

    s = mean over (H, W) of x                    (N, C, 1, 1)   squeeze
    z = act(conv_reduce(s))                      (N, R, 1, 1)   1x1 conv with bias, R < C
    gate = sigmoid(conv_expand(z))               (N, C, 1, 1)   1x1 conv with bias
    y = x * gate                                 (N, C, H, W)   excite: rescale every channel

The excite step is one op (``Excite``) rather than a broadcasting multiply: its gradient
w.r.t. the gate, sum over (H, W) of g * x, is then a single contraction instead of a
full-size product followed by a sum. With Numba both gradients come from one pass over g
and x, on every core (``minimix.kernels.excite_numba``).
"""
import numpy as np

from .. import ops
from ..kernels import for_dtype
from ..tensor import Function
from .conv import Conv2d
from .layers import SiLU
from .module import Module
from .pooling import adaptive_avg_pool2d


class Excite(Function):
    """y = x * gate for x (N, C, H, W) and gate (N, C, 1, 1).

    dL/dx = g * gate;  dL/dgate[n, c] = sum over (h, w) of g[n, c, h, w] * x[n, c, h, w].
    """

    def forward(self, x, gate):
        self.x, self.gate = x, gate
        self.kernels = for_dtype("excite_numba", x.dtype)
        return self.kernels.excite_forward(x, gate) if self.kernels else x * gate

    def backward(self, g):
        if self.kernels:
            return self.kernels.excite_backward(self.x, self.gate, g)
        g_gate = np.einsum("nchw,nchw->nc", g, self.x)[:, :, None, None]
        return g * self.gate, g_gate


def excite(x, gate):
    """x * gate, the gate (N, C, 1, 1) scaling each channel of x (N, C, H, W)."""
    if len(x.shape) != 4 or tuple(gate.shape) != (x.shape[0], x.shape[1], 1, 1):
        raise ValueError(f"excite: x must be (N, C, H, W) and gate (N, C, 1, 1), got x {tuple(x.shape)}, "
                         f"gate {tuple(gate.shape)}")
    return Excite.apply(x, gate)


class SqueezeExcite(Module):
    """y = x * sigmoid(conv_expand(act(conv_reduce(mean_hw(x))))), attributes as in timm."""

    def __init__(self, channels, reduced_channels, activation=SiLU):
        super().__init__()
        self.conv_reduce = Conv2d(channels, reduced_channels, 1, bias=True)
        self.act = activation()
        self.conv_expand = Conv2d(reduced_channels, channels, 1, bias=True)

    def forward(self, x):
        s = adaptive_avg_pool2d(x, 1)
        gate = ops.sigmoid(self.conv_expand(self.act(self.conv_reduce(s))))
        return excite(x, gate)
