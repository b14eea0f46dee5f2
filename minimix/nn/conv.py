"""``Conv2d``: a convolution layer holding its weight and bias (``torch.nn.Conv2d``)."""
import math

import numpy as np

from ..kernels.geometry import as_pair
from ..ops.conv import conv2d, conv_geometry
from ..random import generator
from .module import Module, Parameter


class Conv2d(Module):
    """y = conv2d(x, weight, bias) with weight (out_channels, in_channels/groups, kH, kW).

    ``kernel_size``, ``stride``, ``dilation`` are stored as (h, w) pairs and
    ``padding`` as a pair or the string "same"/"valid", as PyTorch does.

    Initialisation as PyTorch: kaiming-uniform with a = sqrt(5), i.e. weight and
    bias uniform in +-1/sqrt(fan_in), fan_in = in_channels/groups * kH * kW
    (the gain sqrt(2 / (1 + a^2)) = sqrt(1/3) times sqrt(3 / fan_in)).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, dtype=np.float32):
        super().__init__()
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: groups={groups} must divide in_channels={in_channels} and "
                             f"out_channels={out_channels}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = as_pair(kernel_size, "kernel_size")
        self.stride, self.dilation = as_pair(stride, "stride"), as_pair(dilation, "dilation")
        conv_geometry(self.kernel_size, self.stride, padding, self.dilation)  # fail early on bad padding
        self.padding = padding if isinstance(padding, str) else as_pair(padding, "padding")
        fan_in = in_channels // groups * self.kernel_size[0] * self.kernel_size[1]
        bound = 1.0 / math.sqrt(fan_in)
        rng = generator()
        shape = (out_channels, in_channels // groups) + self.kernel_size
        self.weight = Parameter(rng.uniform(-bound, bound, shape).astype(dtype))
        self.bias = Parameter(rng.uniform(-bound, bound, out_channels).astype(dtype)) if bias else None

    def forward(self, x):
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self):
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        return text + ("" if self.bias is not None else ", bias=False")
