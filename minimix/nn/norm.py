"""Batch normalisation for images (``torch.nn.BatchNorm2d``), and BatchNorm + activation as one module.

For x (N, C, H, W), per channel c, over the M = N*H*W values of that channel:

    training:  mu = mean(x),  var = mean((x - mu)^2)              (biased, used to normalise)
               x_hat = (x - mu) / sqrt(var + eps)
               y = gamma * x_hat + beta
               running_mean <- (1 - momentum) * running_mean + momentum * mu
               running_var  <- (1 - momentum) * running_var  + momentum * var * M / (M - 1)   (unbiased)
    eval:      y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta

Backward in training (mu and var depend on x, which couples every value of a channel),
with g = dL/dy and sums over the channel's M values:

    dL/dbeta  = sum(g)
    dL/dgamma = sum(g * x_hat)
    dL/dx     = gamma / (M * sqrt(var + eps)) * (M * g - sum(g) - x_hat * sum(g * x_hat))

In eval mode the statistics are constants: dL/dx = g * gamma / sqrt(running_var + eps).
One Function does all of it, so the graph gets one node instead of ten elementwise ones,
and only x_hat (training) or x (eval) is kept for the backward.

``BatchNormAct2d`` is a BatchNorm2d followed by its activation (timm's module of that name):
MixNet's blocks read conv -> BN+act. On the fast path both modules run on one Numba pass per
direction (``minimix.fast.norm_act``); the code below is what they compute.
"""
import numpy as np

from ..backends import fast_path
from ..tensor import Function, check_float_dtypes
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
    if len(x.shape) != 4:
        raise ValueError(f"{op}: x must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    check_float_dtypes(op, x=x, weight=weight, bias=bias)  # float16 x came back float32
    c = x.shape[1]
    for name, a in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                    ("running_var", running_var)):
        if a is not None and tuple(a.shape) != (c,):
            raise ValueError(f"{op}: {name} must have shape ({c},) for x {tuple(x.shape)}, got {tuple(a.shape)}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError(f"{op}: eval mode (training=False) needs running_mean and running_var")


def batch_norm(x, running_mean, running_var, weight, bias, training=False, momentum=0.1, eps=1e-5):
    """``torch.nn.functional.batch_norm`` for NCHW input (weight and bias required).

    ``running_mean`` / ``running_var`` are NumPy arrays (C,), updated in place when
    training (pass None to skip); in eval mode they are required.
    """
    _check_batch_norm(x, running_mean, running_var, weight, bias, training)
    return BatchNorm.apply(x, weight, bias, running_mean=running_mean, running_var=running_var,
                           training=bool(training), momentum=float(momentum), eps=float(eps))


class BatchNorm2d(Module):
    """Batch normalisation over (N, H, W) per channel; see the module docstring for the formulas.

    Parameters ``weight`` (gamma, ones) and ``bias`` (beta, zeros); buffers
    ``running_mean`` (zeros) and ``running_var`` (ones), float32, updated in
    training mode with PyTorch's convention (momentum weights the NEW batch value,
    the running variance is the unbiased one).
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=np.float32):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = Parameter(np.ones(num_features, dtype=dtype))
        self.bias = Parameter(np.zeros(num_features, dtype=dtype))
        self.register_buffer("running_mean", np.zeros(num_features, dtype=np.float32))
        self.register_buffer("running_var", np.ones(num_features, dtype=np.float32))

    @fast_path("batch_norm")
    def forward(self, x):
        return batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                          self.training, self.momentum, self.eps)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNormAct2d(BatchNorm2d):
    """y = act(batch_norm(x)): a BatchNorm2d and the activation that follows it, as one module (as timm).

    ``act_layer``: the activation's class (``nn.ReLU``, ``nn.SiLU``...) or None for none; the
    instance is the child ``act``, so parameter names stay those of a BatchNorm2d
    (``bn1.weight``, ``bn1.running_mean``...).
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, act_layer=ReLU, dtype=np.float32):
        super().__init__(num_features, eps=eps, momentum=momentum, dtype=dtype)
        self.act = Identity() if act_layer is None else act_layer()

    @fast_path("batch_norm_act")
    def forward(self, x):
        x = batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                       self.training, self.momentum, self.eps)
        return self.act(x)


