"""MixConv -> BatchNorm -> activation as one pass over memory, for inference.

In eval mode a BatchNorm is a fixed per-channel affine map (its running statistics are
constants), so after a depthwise convolution

    y = act(gamma * (conv(x) - running_mean) / sqrt(running_var + eps) + beta)
      = act(conv(x) * scale + shift),    scale = gamma / sqrt(running_var + eps),
                                         shift = beta - running_mean * scale

The depthwise kernel applies ``scale``, ``shift`` and ``act`` to each block of its output
while that block is still in cache (``depthwise_forward(epilogue=...)``): the batch norm's
separate read and write of the whole activation disappear. (Folding ``scale`` into the
weights instead would still leave ``shift`` and ``act`` to a pass of their own.)

Only inference uses it: in training the statistics come from the batch, and with a graph
to record the separate ops give the gradients. ``mixconv_bn_act`` decides, so a model
calls it unconditionally.
"""
import numpy as np

from ..kernels import for_dtype, optional
from ..tensor import Function, is_grad_enabled
from .norm import activation_kind, batch_norm_act, hooked


class MixedDepthwiseBatchNormAct(Function):
    """act(batch_norm_eval(mixconv(x))) in one node, forward only (used under ``no_grad``)."""

    def forward(self, x, *weights, splits, paddings, stride, dilation, coef, activation):
        kernels = optional("depthwise_numba")
        y = None
        start = 0
        for w, size, padding in zip(weights, splits, paddings):
            part = slice(start, start + size)
            y = kernels.depthwise_forward(x, w[:, 0], stride, padding, dilation, channels=part, out=y,
                                          epilogue=(coef[:, part], activation))
            start += size
        return y

    def backward(self, g):
        raise RuntimeError("MixedDepthwiseBatchNormAct is an inference op (no_grad, eval mode); "
                           "training runs the MixConv, BatchNorm and activation ops separately")

    def profile_label(self):
        return "MixedConv2d depthwise + BN + act (inference)"


def mixconv_bn_act(conv, x, bn, activation=None):
    """``activation(bn(conv(x)))`` for a ``MixConv2d`` conv and a ``BatchNorm2d`` bn.

    Fused (``MixedDepthwiseBatchNormAct``) when nothing needs the separate ops: both modules
    in eval mode, gradients off, activation None / ReLU / SiLU, Numba present and no hooks;
    otherwise ``batch_norm_act(conv(x), bn, activation)``, the training path.
    """
    fusable = (not conv.training and not bn.training and not is_grad_enabled()
               and len(x.shape) == 4 and x.shape[1] == conv.channels
               and activation_kind(activation) != "other" and not hooked(conv, bn, activation, *conv.convs)
               and for_dtype("depthwise_numba", x.dtype) is not None)
    if not fusable:
        return batch_norm_act(conv(x), bn, activation)
    scale = bn.weight.data.astype(np.float64) / np.sqrt(bn.running_var.astype(np.float64) + bn.eps)
    shift = bn.bias.data.astype(np.float64) - bn.running_mean.astype(np.float64) * scale
    first = conv.convs[0]  # every group has the MixConv's stride and dilation
    return MixedDepthwiseBatchNormAct.apply(
        x, *[c.weight for c in conv.convs], splits=tuple(conv.splits), paddings=tuple(c.padding for c in conv.convs),
        stride=first.stride, dilation=first.dilation, coef=np.stack([scale, shift]).astype(x.dtype),
        activation=activation_kind(activation))
