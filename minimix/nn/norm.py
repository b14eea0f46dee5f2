"""Normalisation layers: BatchNorm1d/2d (and BatchNorm + activation as one module), LayerNorm, GroupNorm.

Batch normalisation, for x (N, C, *) per channel c, over the M = N * (product of *) values of
that channel:

    training:  mu = mean(x),  var = mean((x - mu)^2)              (biased, used to normalise)
               x_hat = (x - mu) / sqrt(var + eps)
               y = gamma * x_hat + beta
               running_mean <- (1 - momentum) * running_mean + momentum * mu
               running_var  <- (1 - momentum) * running_var  + momentum * var * M / (M - 1)   (unbiased)
    eval:      y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta

``momentum=None`` makes the running statistics the plain average of every batch seen: batch k
(counted by the ``num_batches_tracked`` buffer) gets weight 1/k, as in PyTorch.

Backward in training (mu and var depend on x, which couples every value of a channel),
with g = dL/dy and sums over the channel's M values:

    dL/dbeta  = sum(g)
    dL/dgamma = sum(g * x_hat)
    dL/dx     = gamma / (M * sqrt(var + eps)) * (M * g - sum(g) - x_hat * sum(g * x_hat))

In eval mode the statistics are constants: dL/dx = g * gamma / sqrt(running_var + eps).
One Function does all of it, so the graph gets one node instead of ten elementwise ones,
and only x_hat (training) or x (eval) is kept for the backward. It works on (N, C, H, W);
other shapes (N, C) and (N, C, L) are viewed as (N, C, L, 1).

``BatchNormAct2d`` is a BatchNorm2d followed by its activation (timm's module of that name):
MixNet's blocks read conv -> BN+act. On the fast path both modules run on one Numba pass per
direction (``minimix.fast.norm_act``); the code below is what they compute.

``LayerNorm`` and ``GroupNorm`` normalise each sample on its own (no running statistics, the
same in training and eval); their formulas are in ``minimix.ops.normalization``.
"""
import math

import numpy as np

from ..backends import fast_path
from ..ops.normalization import group_norm, layer_norm
from ..tensor import Function, Tensor, check_float_dtypes
from .layers import Identity, ReLU
from .module import Module, Parameter


def _per_channel(a):
    """(C,) vector -> (1, C, 1, 1), to broadcast against NCHW."""
    return a.reshape(1, -1, 1, 1)


def _channel_sum(a, b=None):
    """sum over (N, H, W) of a (or of a * b without materialising the product)."""
    if b is None:
        return a.sum(axis=0).sum(axis=(1, 2))  # batch axis first: contiguous adds, twice as fast
    return np.einsum("nchw,nchw->c", a, b)


def _update_running_stats(running_mean, running_var, mean, var, m, momentum):
    """running <- (1 - momentum) * running + momentum * batch value (the variance unbiased), in place."""
    if running_mean is not None:
        running_mean *= 1 - momentum
        running_mean += (momentum * mean).astype(running_mean.dtype)
    if running_var is not None:
        running_var *= 1 - momentum
        running_var += (momentum * var * (m / (m - 1))).astype(running_var.dtype)


class BatchNorm(Function):
    """Batch normalisation of x (N, C, H, W) with per-channel weight and bias (module docstring)."""

    def forward(self, x, weight, bias, *, running_mean, running_var, training, momentum, eps):
        self.training, self.weight, self.empty = training, weight, x.size == 0
        if self.empty:  # an empty batch, as in PyTorch: empty output, zero gradients, running statistics unchanged
            return np.empty_like(x)
        if training:
            m = x.shape[0] * x.shape[2] * x.shape[3]
            if m == 1:
                raise ValueError(f"batch_norm: training needs more than one value per channel, got x {x.shape}")
            mean = _channel_sum(x) / m
            x_centered = x - _per_channel(mean)
            var = _channel_sum(x_centered, x_centered) / m
            inv_std = 1.0 / np.sqrt(var + eps)
            _update_running_stats(running_mean, running_var, mean, var, m, momentum)
            # x_hat = x_centered * inv_std is never stored: the scale folds into weight (one pass less)
            self.x_centered, self.inv_std, self.m = x_centered, inv_std, m
            y = x_centered * _per_channel(weight * inv_std)
        else:
            inv_std = (1.0 / np.sqrt(running_var.astype(x.dtype) + eps)).astype(x.dtype)
            shift = running_mean.astype(x.dtype)
            self.x, self.inv_std, self.shift = x, inv_std, shift
            y = x * _per_channel(weight * inv_std)
            bias = bias - shift * weight * inv_std
        y += _per_channel(bias)
        return y

    def backward(self, g):
        if self.empty:
            return np.zeros_like(g), np.zeros_like(self.weight), np.zeros_like(self.weight)
        sum_g = _channel_sum(g)
        if self.training:
            x_centered, inv_std, m = self.x_centered, self.inv_std, self.m
            sum_g_xhat = _channel_sum(g, x_centered) * inv_std
            gx = None
            if self.parents[0].requires_grad:
                gx = x_centered * _per_channel(-inv_std * sum_g_xhat / m)  # = -x_hat * sum(g x_hat) / M
                gx += g
                gx -= _per_channel(sum_g / m)
                gx *= _per_channel(self.weight * self.inv_std)
            return gx, sum_g_xhat, sum_g
        # eval: x_hat = (x - running_mean) * inv_std
        sum_g_xhat = (_channel_sum(g, self.x) - self.shift * sum_g) * self.inv_std
        gx = g * _per_channel(self.weight * self.inv_std) if self.parents[0].requires_grad else None
        return gx, sum_g_xhat, sum_g


def _check_batch_norm(x, running_mean, running_var, weight, bias, training, op="batch_norm"):
    if len(x.shape) < 2:
        raise ValueError(f"{op}: x must be (N, C, *), got shape {tuple(x.shape)}")
    check_float_dtypes(op, x=x, weight=weight, bias=bias)  # float16 x came back float32
    c = x.shape[1]
    for name, a in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                    ("running_var", running_var)):
        if a is not None and tuple(a.shape) != (c,):
            raise ValueError(f"{op}: {name} must have shape ({c},) for x {tuple(x.shape)}, got {tuple(a.shape)}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError(f"{op}: eval mode (training=False) needs running_mean and running_var")
    if training and x.shape[0] * math.prod(x.shape[2:]) == 1:
        raise ValueError(f"{op}: training needs more than one value per channel, got x {tuple(x.shape)}")


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """``torch.nn.functional.batch_norm``: ``input`` ``(N, C, *)`` normalised per channel (module docstring).

    ``running_mean`` / ``running_var`` are NumPy arrays (C,), updated in place when
    training (pass None to skip); in eval mode they are required. ``weight`` / ``bias``
    (C,) default to no scale / no shift. Returns a Tensor of ``input``'s shape.
    """
    _check_batch_norm(input, running_mean, running_var, weight, bias, training)
    x = input if isinstance(input, Tensor) else Tensor(input)
    c, dtype = x.shape[1], x.dtype
    weight = Tensor(np.ones(c, dtype)) if weight is None else weight  # constants: no gradient
    bias = Tensor(np.zeros(c, dtype)) if bias is None else bias
    if x.ndim != 4:  # (N, C) and (N, C, L...) as (N, C, L, 1): the same statistics per channel
        x = x.reshape(x.shape[0], c, math.prod(x.shape[2:]), 1)
    y = BatchNorm.apply(x, weight, bias, running_mean=running_mean, running_var=running_var,
                        training=bool(training), momentum=float(momentum), eps=float(eps))
    return y if y.shape == tuple(input.shape) else y.reshape(*input.shape)


class _BatchNorm(Module):
    """What BatchNorm1d and BatchNorm2d share (``torch.nn.modules.batchnorm._BatchNorm``); they differ
    only in the input shapes they accept."""

    _optional_buffers = ("num_batches_tracked",)  # Module.load_state_dict accepts a state dict without it

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, *,
                 bias=True, dtype=np.float32):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = Parameter(np.ones(num_features, dtype=dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_features, dtype=dtype)) if affine and bias else None
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def _check_input_dim(self, x):
        raise NotImplementedError  # pragma: no cover - each subclass checks its shapes

    def _count_batch(self):
        """Count a training batch; return the momentum that weights it (1/count when momentum is None)."""
        if not (self.training and self.track_running_stats):
            return 0.0 if self.momentum is None else self.momentum  # the statistics are not updated
        self.num_batches_tracked += 1  # in place: the buffer stays the same 0-d array
        return 1.0 / int(self.num_batches_tracked) if self.momentum is None else self.momentum

    def _batch_norm(self, x, momentum):
        """F.batch_norm with this layer's state: batch statistics in training, or always without running ones."""
        return batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                          self.training or self.running_mean is None, momentum, self.eps)

    def forward(self, x):
        """Normalise x ``(N, C, *)`` per channel; see the module docstring."""
        self._check_input_dim(x)
        return self._batch_norm(x, self._count_batch())

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


_ARGUMENTS = """
    Arguments as PyTorch's: ``num_features`` (C), ``eps``, ``momentum`` (weight of the new batch in the
    running statistics; None: their plain average over every batch), ``affine`` (learned ``weight``,
    ones, and ``bias``, zeros; ``bias=False``: no bias), ``track_running_stats`` (buffers
    ``running_mean``, zeros, and ``running_var``, ones, of the layer's dtype, and ``num_batches_tracked``,
    int64, counting training batches; without them eval mode uses the batch's statistics too).
    ``dtype`` (keyword-only): float32 or float64. A state dict without ``num_batches_tracked`` (older
    minimix checkpoints) loads and leaves the counter as it is, as in PyTorch. Formulas: the docstring
    of ``minimix.nn.norm``.
"""


class BatchNorm1d(_BatchNorm):
    __doc__ = """``torch.nn.BatchNorm1d``: batch normalisation of (N, C) or (N, C, L), per channel over N (and L).
""" + _ARGUMENTS

    def _check_input_dim(self, x):
        if len(x.shape) not in (2, 3):
            raise ValueError(f"BatchNorm1d: x must be 2-D (N, C) or 3-D (N, C, L), got shape {tuple(x.shape)}")


class BatchNorm2d(_BatchNorm):
    __doc__ = """``torch.nn.BatchNorm2d``: batch normalisation of (N, C, H, W), per channel over (N, H, W).
""" + _ARGUMENTS + """
    With weight, bias, running statistics and a momentum number (the defaults) the fast path runs the
    fused Numba kernels (``minimix.fast.norm_act``); other settings run the NumPy code.
"""

    def _check_input_dim(self, x):
        if len(x.shape) != 4:
            raise ValueError(f"{type(self).__name__}: x must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")

    def forward(self, x):
        """Normalise x (N, C, H, W) per channel; see the module docstring."""
        self._check_input_dim(x)
        momentum = self._count_batch()
        if self.bias is not None and self.track_running_stats and self.momentum is not None:
            return self._forward_default(x)  # the settings the fused kernels are written for
        return self._reference(x, momentum)

    def _reference(self, x, momentum):
        return self._batch_norm(x, momentum)

    @fast_path("batch_norm")
    def _forward_default(self, x):
        return self._reference(x, self.momentum)


class BatchNormAct2d(BatchNorm2d):
    """y = act(batch_norm(x)): a BatchNorm2d and the activation that follows it, as one module (as timm).

    ``act_layer``: the activation's class (``nn.ReLU``, ``nn.SiLU``...) or None for none; the
    instance is the child ``act``, so parameter names stay those of a BatchNorm2d
    (``bn1.weight``, ``bn1.running_mean``...).
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, act_layer=ReLU, dtype=np.float32):
        super().__init__(num_features, eps=eps, momentum=momentum, dtype=dtype)
        self.act = Identity() if act_layer is None else act_layer()

    def _reference(self, x, momentum):
        return self.act(self._batch_norm(x, momentum))

    @fast_path("batch_norm_act")
    def _forward_default(self, x):
        return self._reference(x, self.momentum)


class LayerNorm(Module):
    """``torch.nn.LayerNorm``: each sample standardised over its last dimensions ``normalized_shape``,
    then scaled and shifted elementwise (``F.layer_norm``; formulas in ``minimix.ops.normalization``).

    Parameters ``weight`` (ones) and ``bias`` (zeros) of shape ``normalized_shape`` when
    ``elementwise_affine`` (``bias=False``: no bias). No running statistics: training and eval agree.
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, *, dtype=np.float32):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.normalized_shape, self.eps, self.elementwise_affine = shape, eps, elementwise_affine
        self.weight = Parameter(np.ones(shape, dtype=dtype)) if elementwise_affine else None
        self.bias = Parameter(np.zeros(shape, dtype=dtype)) if elementwise_affine and bias else None

    def forward(self, x):
        """``F.layer_norm(x, normalized_shape, weight, bias, eps)``: x ``(*, *normalized_shape)``."""
        return layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")


class GroupNorm(Module):
    """``torch.nn.GroupNorm``: the channels of ``(N, C, *)`` in ``num_groups`` groups, each (sample, group)
    standardised over its channels and positions, then a per-channel scale and shift
    (``F.group_norm``; formulas in ``minimix.ops.normalization``).

    Parameters ``weight`` (ones) and ``bias`` (zeros; ``bias=False``: none), (C,), when ``affine``.
    ``num_channels`` must be divisible by ``num_groups``. No running statistics: training and eval agree.
    """

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, *, bias=True, dtype=np.float32):
        super().__init__()
        if num_groups < 1 or num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels {num_channels} must be divisible by num_groups {num_groups}")
        self.num_groups, self.num_channels, self.eps, self.affine = num_groups, num_channels, eps, affine
        self.weight = Parameter(np.ones(num_channels, dtype=dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_channels, dtype=dtype)) if affine and bias else None

    def forward(self, x):
        """``F.group_norm(x, num_groups, weight, bias, eps)``: x ``(N, C, *)``."""
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, bias={self.bias is not None}"
