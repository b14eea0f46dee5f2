"""A fused MixConv -> BatchNorm -> activation (``nn.fuse``'s ``MixConvBNAct``) in ONE pass over memory.

The reference ``MixConvBNAct.forward`` convolves with the folded weights, adds the shift as a
bias and applies the activation: a pass over the output for each. Here the Numba depthwise
kernel applies shift and activation to each block of its output while that block is still in
cache (``depthwise_forward(epilogue=...)``), so those passes disappear. Forward only: it runs
under ``no_grad`` (inference); with a graph to record the reference forward runs.
"""
import numpy as np

from ..kernels import depthwise_numba
from ..ops.conv import conv_geometry
from ..tensor import Function, is_grad_enabled
from .norm_act import activation_kind



class MixedDepthwiseBatchNormAct(Function):
    """act(mixconv(x) * scale + shift) in one node, forward only."""

    def forward(self, x, *weights, splits, paddings, stride, dilation, coef, activation):
        y = None
        start = 0
        for w, size, padding in zip(weights, splits, paddings):
            part = slice(start, start + size)
            y = depthwise_numba.depthwise_forward(x, w[:, 0], stride, padding, dilation, channels=part, out=y,
                                                  epilogue=(coef[:, part], activation))
            start += size
        return y

    def backward(self, g):
        raise RuntimeError("MixedDepthwiseBatchNormAct is an inference op (no_grad); with gradients "
                           "MixConvBNAct runs its reference forward")

    def profile_label(self):
        return "MixedConv2d depthwise + BN + act (inference)"


def fused_mixconv_bn_act(module, x):
    """``MixConvBNAct.forward`` in one pass: under no_grad, for (N>0, C, H, W) input of the weights'
    dtype and an unhooked ReLU / SiLU / no activation; else NotImplemented (the reference runs)."""
    kind = activation_kind(module.act)
    if (is_grad_enabled() or kind is NotImplemented or len(x.shape) != 4 or x.shape[0] == 0 or x.shape[1] != module.channels
            or x.dtype != module.weights[0].dtype):
        return NotImplemented
    stride, _, dilation = conv_geometry((1, 1), module.stride, 0, module.dilation)
    paddings = tuple(tuple(d * (k - 1) // 2 for d in dilation) for k in module.kernel_sizes)
    shift = np.concatenate([b.data for b in module.biases])
    coef = np.stack([np.ones_like(shift), shift])
    return MixedDepthwiseBatchNormAct.apply(x, *module.weights, splits=tuple(module.splits), paddings=paddings,
                                            stride=stride, dilation=dilation, coef=coef,
                                            activation=kind)
