"""Global average pooling: (N, C, H, W) -> (N, C, 1, 1), the mean of each channel plane."""
from .. import ops
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
