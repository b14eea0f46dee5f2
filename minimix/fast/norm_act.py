"""BatchNorm2d and BatchNormAct2d on one Numba pass per direction (``minimix.kernels.norm_act_numba``).

The reference (``minimix.nn.norm``) runs the batch norm as NumPy passes over the whole activation
(sum, centring, sum of squares, scaling) and the activation as another op with its own passes;
the kernel makes two passes (statistics, then the normalised output with the activation applied
on the way out), and two backward. Same formulas (the kernel module's docstring has them).
"""
import numpy as np

from ..kernels import norm_act_numba
from ..nn.layers import Identity, ReLU, SiLU
from ..nn.norm import _update_running_stats
from ..tensor import Function

_KINDS = {Identity: None, ReLU: "relu", SiLU: "silu"}


def activation_kind(act):
    """The fused kernels' name for activation module ``act`` (None, "relu", "silu"), or NotImplemented
    when they cannot stand in for it: another activation, or one a forward hook watches (it must run)."""
    if type(act) not in _KINDS or act._forward_hooks or act._forward_pre_hooks:
        return NotImplemented
    return _KINDS[type(act)]


class BatchNormAct(Function):
    """y = act(batch_norm(x)) in one node, act in (None, "relu", "silu"). Saves x by reference
    (no copy) and a few (C,) vectors: the backward recomputes act'(z) from x."""

    def forward(self, x, weight, bias, *, running_mean, running_var, training, momentum, eps, activation):
        self.training, self.activation = training, activation
        if training:
            y, mean, var, self.coef = norm_act_numba.batch_norm_act_forward(x, weight, bias, eps, activation, True)
            m = x.shape[0] * x.shape[2] * x.shape[3]
            _update_running_stats(running_mean, running_var, mean, var, m, momentum)
        else:
            y, mean, var, self.coef = norm_act_numba.batch_norm_act_forward(
                x, weight, bias, eps, activation, False, running_mean, running_var)
        self.x, self.weight = x, weight
        self.mean, self.inv_std = mean, 1.0 / np.sqrt(var + eps)
        return y

    def backward(self, g):
        gx, g_weight, g_bias = norm_act_numba.batch_norm_act_backward(
            self.x, g, self.coef, self.mean, self.inv_std, self.activation, self.training)
        return gx, g_weight.astype(self.weight.dtype), g_bias.astype(self.weight.dtype)


def _run(bn, x, activation):
    """The fused op for module ``bn``, or NotImplemented where the reference must run (its errors
    name the problem): x not (N, C, H, W) with the module's C, or fewer than 2 values per channel
    in training."""
    if len(x.shape) != 4 or x.shape[1] != bn.num_features or x.dtype != bn.weight.dtype:
        return NotImplemented
    if x.shape[0] * x.shape[2] * x.shape[3] < (2 if bn.training else 1):
        return NotImplemented
    return BatchNormAct.apply(x, bn.weight, bn.bias, running_mean=bn.running_mean, running_var=bn.running_var,
                              training=bool(bn.training), momentum=float(bn.momentum), eps=float(bn.eps),
                              activation=activation)


def batch_norm(bn, x):
    """``nn.BatchNorm2d.forward`` fused (no activation)."""
    return _run(bn, x, None)


def batch_norm_act(bn, x):
    """``nn.BatchNormAct2d.forward`` fused: activation ReLU, SiLU or none; anything else, or an
    activation watched by a forward hook, runs the reference (which calls the activation module)."""
    kind = activation_kind(bn.act)
    return NotImplemented if kind is NotImplemented else _run(bn, x, kind)
