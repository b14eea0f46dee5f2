"""Global average pooling: (N, C, H, W) -> (N, C, 1, 1), the mean of each channel plane."""
import numpy as np

from ..kernels import for_dtype
from ..tensor import Function
from .module import Module


class GlobalAvgPool(Function):
    """y[n, c, 0, 0] = mean over (h, w) of x[n, c, h, w];  dL/dx[n, c, h, w] = g[n, c] / (H*W).

    Same result as ``ops.mean(x, axis=(2, 3), keepdims=True)``; with Numba the planes are
    averaged on every core. The gradient is a broadcast view: no full-size array is made.
    """

    def forward(self, x):
        self.shape = x.shape
        kernels = for_dtype("excite_numba", x.dtype)
        return kernels.plane_means(x) if kernels else x.mean(axis=(2, 3), keepdims=True)

    def backward(self, g):
        return np.broadcast_to(g / (self.shape[2] * self.shape[3]), self.shape)


def adaptive_avg_pool2d(x, output_size=1):
    """``torch.nn.functional.adaptive_avg_pool2d`` for output size 1 (global average pooling).

    y[n, c] = mean over (h, w) of x[n, c, h, w]; the gradient spreads dL/dy evenly: dL/dx = g / (H*W).
    """
    if output_size not in (1, (1, 1), [1, 1]):
        raise ValueError(f"adaptive_avg_pool2d: only output_size=1 is implemented, got {output_size!r}")
    if len(x.shape) != 4:
        raise ValueError(f"adaptive_avg_pool2d: x must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    return GlobalAvgPool.apply(x)


class AdaptiveAvgPool2d(Module):
    """Global average pooling to (N, C, 1, 1) (only ``output_size=1``)."""

    def __init__(self, output_size=1):
        super().__init__()
        if output_size not in (1, (1, 1), [1, 1]):
            raise ValueError(f"AdaptiveAvgPool2d: only output_size=1 is implemented, got {output_size!r}")
        self.output_size = output_size

    def forward(self, x):
        return adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"
