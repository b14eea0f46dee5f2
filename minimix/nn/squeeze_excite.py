"""Squeeze-and-Excitation (Hu et al. 2018), as used in MixNet's blocks.

Each channel gets a gate in (0, 1) computed from the whole image::

    s = mean over (H, W) of x                    (N, C, 1, 1)   squeeze
    z = act(conv_reduce(s))                      (N, R, 1, 1)   1x1 conv with bias, R < C
    gate = sigmoid(conv_expand(z))               (N, C, 1, 1)   1x1 conv with bias
    y = x * gate                                 (N, C, H, W)   excite: rescale every channel

On the fast path the two full-size passes, the squeeze's mean and the excite's product (with
its backward), run as Numba kernels on every core (``minimix.fast.excite``).
"""
from .. import ops
from ..backends import fast_path
from ..tensor import check_float_dtypes
from .conv import Conv2d
from .layers import SiLU
from .module import Module
from .pooling import adaptive_avg_pool2d


@fast_path("excite")
def excite(x, gate):
    """y = x * gate, the gate (N, C, 1, 1) scaling each channel of x (N, C, H, W): a broadcasting
    multiply, so dL/dx = g * gate and dL/dgate = sum over (H, W) of g * x."""
    if len(x.shape) != 4 or tuple(gate.shape) != (x.shape[0], x.shape[1], 1, 1):
        raise ValueError(f"excite: x must be (N, C, H, W) and gate (N, C, 1, 1), got x {tuple(x.shape)}, "
                         f"gate {tuple(gate.shape)}")
    check_float_dtypes("excite", x=x, gate=gate)
    return x * gate


class SqueezeExcite(Module):
    """y = x * sigmoid(conv_expand(act(conv_reduce(mean_hw(x))))), attributes as in timm."""

    def __init__(self, channels, reduced_channels, activation=SiLU):
        super().__init__()
        self.conv_reduce = Conv2d(channels, reduced_channels, 1, bias=True)
        self.act = activation()
        self.conv_expand = Conv2d(reduced_channels, channels, 1, bias=True)

    def forward(self, x):
        s = adaptive_avg_pool2d(x, 1)                                        # squeeze: (N, C, 1, 1)
        gate = ops.sigmoid(self.conv_expand(self.act(self.conv_reduce(s))))  # (N, C, 1, 1) in (0, 1)
        return excite(x, gate)                                               # x * gate
