"""Inference fusion as an explicit step: ``fuse(model)`` returns an eval-mode copy in which each
MixConv -> BatchNorm (-> activation) runs as one module.

In eval mode a BatchNorm is a fixed per-channel affine map (its running statistics are
constants), so after a convolution it folds into the convolution itself::

    bn(conv(x)) = gamma * (conv(x) - running_mean) / sqrt(running_var + eps) + beta
                = conv(x) * scale + shift,      scale = gamma / sqrt(running_var + eps)
                = conv_{w * scale}(x) + shift           shift = beta - running_mean * scale

(each output channel's kernel is multiplied by its channel's scale; the shift becomes a bias).
``MixConvBNAct`` holds the folded weights and the activation: one convolution and one
activation instead of a convolution, a batch norm and an activation. On the fast path its
forward is a single pass: the Numba depthwise kernel adds the shift and applies the activation
to each block of output while it is in cache (``minimix.fast.inference``).

Which pairs fuse: every module that lists them in a ``fusable`` attribute, as
``(("conv_dw", "bn2"),)`` in MixNet's inverted-residual block (the conv's and the norm's
attribute names; the norm is a ``BatchNorm2d`` or a ``BatchNormAct2d``). The fused copy is for
inference only: the model it came from is left unchanged, and later training of that model is
not seen by the copy (fuse again).
"""
import copy

import numpy as np

from ..backends import fast_path
from ..ops.conv import mixed_conv2d
from ..tensor import Tensor
from .layers import Identity
from .mixconv import MixConv2d
from .module import Module
from .norm import BatchNorm2d


class MixConvBNAct(Module):
    """act(bn(mixconv(x))) with the eval-mode batch norm folded into the MixConv's weights (module docstring)."""

    def __init__(self, conv: MixConv2d, bn: BatchNorm2d):
        super().__init__()
        if not isinstance(conv, MixConv2d) or not isinstance(bn, BatchNorm2d) or bn.num_features != conv.channels:
            raise ValueError(f"MixConvBNAct: needs a MixConv2d and a BatchNorm2d of its {getattr(conv, 'channels', '?')} "
                             f"channels, got {type(conv).__name__} and {type(bn).__name__}")
        scale = bn.weight.data.astype(np.float64) / np.sqrt(bn.running_var.astype(np.float64) + bn.eps)
        shift = bn.bias.data.astype(np.float64) - bn.running_mean.astype(np.float64) * scale
        dtype = conv.convs[0].weight.dtype
        self.channels, self.kernel_sizes, self.splits = conv.channels, conv.kernel_sizes, conv.splits
        self.stride, self.dilation = conv.stride, conv.dilation
        bounds = np.cumsum([0] + list(conv.splits))
        self.weights = [Tensor((c.weight.data * scale[a:b, None, None, None]).astype(dtype))
                        for c, a, b in zip(conv.convs, bounds[:-1], bounds[1:])]
        self.biases = [Tensor(shift[a:b].astype(dtype)) for a, b in zip(bounds[:-1], bounds[1:])]
        self.act = getattr(bn, "act", None) or Identity()
        self.train(False)

    @fast_path("fused_mixconv_bn_act")
    def forward(self, x):
        y = mixed_conv2d(x, self.weights, self.splits, self.stride, self.dilation, biases=self.biases)
        return self.act(y)

    def extra_repr(self):
        return f"{self.channels}, kernel_sizes={self.kernel_sizes}, splits={self.splits}, stride={self.stride}"


def fuse(model: Module) -> Module:
    """An eval-mode copy of ``model`` with every pair listed in a module's ``fusable`` attribute
    replaced: the conv by a ``MixConvBNAct``, the batch norm by ``Identity`` (module docstring)."""
    fused = copy.deepcopy(model).eval()
    for module in list(fused.modules()):
        for conv_name, bn_name in getattr(module, "fusable", ()):
            conv, bn = getattr(module, conv_name), getattr(module, bn_name)
            if isinstance(conv, MixConvBNAct):  # fused already
                continue
            setattr(module, conv_name, MixConvBNAct(conv, bn))
            setattr(module, bn_name, Identity())
    return fused


__all__ = ["fuse", "MixConvBNAct"]
