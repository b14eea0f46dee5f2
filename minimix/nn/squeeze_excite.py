"""Squeeze-and-Excitation (Hu et al. 2018), as used in MixNet's blocks.

Each channel gets a gate in (0, 1) computed from the whole image::

    s = mean over (H, W) of x                    (N, C, 1, 1)   squeeze
    z = act(conv_reduce(s))                      (N, R, 1, 1)   1x1 conv with bias, R < C
    gate = sigmoid(conv_expand(z))               (N, C, 1, 1)   1x1 conv with bias
    y = x * gate                                 (N, C, H, W)   excite: rescale every channel
"""
from .. import ops
from .conv import Conv2d
from .layers import SiLU
from .module import Module
from .pooling import adaptive_avg_pool2d


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
        return x * gate
