"""Pooling layers: global average pooling, (N, C, H, W) -> (N, C, 1, 1), the mean of each channel plane;
and the modules of max, average and adaptive max pooling (their ops: ``minimix.ops.pooling``)."""
from .. import ops
from ..ops import pooling as P
from ..backends import fast_path
from .module import Module


@fast_path("adaptive_avg_pool2d")
def adaptive_avg_pool2d(x, output_size=1):
    """``torch.nn.functional.adaptive_avg_pool2d`` for output size 1 (global average pooling).

    y[n, c] = mean over (h, w) of x[n, c, h, w]; the gradient spreads dL/dy evenly: dL/dx = g / (H*W).
    """
    if output_size not in (1, (1, 1), [1, 1]):
        raise ValueError(f"adaptive_avg_pool2d: only output_size=1 is implemented, got {output_size!r}")
    if len(x.shape) != 4:
        raise ValueError(f"adaptive_avg_pool2d: x must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    return ops.mean(x, axis=(2, 3), keepdims=True)


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


class MaxPool2d(Module):
    """``torch.nn.MaxPool2d``: the maximum of each window (``minimix.ops.pooling.max_pool2d``).

    ``stride`` defaults to ``kernel_size``; ``return_indices=True`` makes forward return (values, indices).
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, x):
        return P.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                            self.return_indices)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """``torch.nn.AvgPool2d``: the mean of each window (``minimix.ops.pooling.avg_pool2d``).

    ``stride`` defaults to ``kernel_size``.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def forward(self, x):
        return P.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveMaxPool2d(Module):
    """``torch.nn.AdaptiveMaxPool2d``: the maximum over each of ``output_size`` bins
    (``minimix.ops.pooling.adaptive_max_pool2d``)."""

    def __init__(self, output_size, return_indices=False):
        super().__init__()
        self.output_size, self.return_indices = output_size, return_indices

    def forward(self, x):
        return P.adaptive_max_pool2d(x, self.output_size, self.return_indices)

    def extra_repr(self):
        return f"output_size={self.output_size}"
