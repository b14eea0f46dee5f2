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

from ..kernels import optional
from ..tensor import Function, is_grad_enabled
from .layers import ReLU, SiLU
from .norm import batch_norm_act

_ACTIVATIONS = {type(None): None, ReLU: "relu", SiLU: "silu"}


class MixedDepthwiseBatchNormAct(Function):
    """act(batch_norm_eval(mixconv(x))) in one node, forward only (used under ``no_grad``)."""

    def forward(self, x, *weights, splits, stride, dilation, coef, activation):
        kernels = optional("depthwise_numba")
        self.weights = weights
        y = None
        start = 0
        for w, size in zip(weights, splits):
            k = w.shape[2:]
            padding = tuple(d * (kk - 1) // 2 for d, kk in zip(dilation, k))
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


def _hooked(*modules):
    """True if a module's ``forward`` was replaced on the instance (a summary or tracing hook)."""
    return any(m is not None and "forward" in vars(m) for m in modules)


def mixconv_bn_act(conv, x, bn, activation=None):
    """``activation(bn(conv(x)))`` for a ``MixConv2d`` conv and a ``BatchNorm2d`` bn.

    Fused (``MixedDepthwiseBatchNormAct``) when nothing needs the separate ops: both modules
    in eval mode, gradients off, activation None / ReLU / SiLU, Numba present and no hooks;
    otherwise ``batch_norm_act(conv(x), bn, activation)``, the training path.
    """
    fusable = (not conv.training and not bn.training and not is_grad_enabled()
               and len(x.shape) == 4 and x.shape[1] == conv.channels
               and type(activation) in _ACTIVATIONS and not _hooked(conv, bn, activation, *conv.convs)
               and optional("depthwise_numba") is not None and x.dtype in (np.float32, np.float64))
    if not fusable:
        return batch_norm_act(conv(x), bn, activation)
    scale = bn.weight.data.astype(np.float64) / np.sqrt(bn.running_var.astype(np.float64) + bn.eps)
    shift = bn.bias.data.astype(np.float64) - bn.running_mean.astype(np.float64) * scale
    first = conv.convs[0]
    return MixedDepthwiseBatchNormAct.apply(
        x, *[c.weight for c in conv.convs], splits=tuple(conv.splits), stride=first.stride,
        dilation=first.dilation, coef=np.stack([scale, shift]).astype(x.dtype), activation=_ACTIVATIONS[type(activation)])
