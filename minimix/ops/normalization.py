"""Layer and group normalisation: standardise x over some of its axes, then scale and shift.

For the M values of x that share one mean (the normalised axes; every other index is a separate set):

    mu = mean(x),  var = mean((x - mu)^2)          (biased, as in PyTorch)
    x_hat = (x - mu) / sqrt(var + eps)

and, with g = dL/dx_hat and means over the same M values (the statistics depend on x, so every
value of a set feeds every output of that set):

    dL/dx = (g - mean(g) - x_hat * mean(g * x_hat)) / sqrt(var + eps)

``layer_norm`` normalises each sample over its last dimensions (``normalized_shape``) and applies
an elementwise weight and bias of that shape; ``group_norm`` splits the C channels of (N, C, *)
into ``num_groups`` groups, normalises each (sample, group) over its channels and positions, and
applies a per-channel weight and bias. The scale and shift are ordinary Tensor ops (their
gradients come from the broadcasting multiply and add).
"""
import math

import numpy as np

from ..tensor import Function, Tensor, check_float_dtypes


class Standardize(Function):
    """x_hat = (x - mean) / sqrt(var + eps) over ``axes`` (module docstring); keeps x_hat and 1/std."""

    def forward(self, x, axes, eps):
        mean = x.mean(axis=axes, keepdims=True)
        centered = x - mean
        var = np.mean(centered * centered, axis=axes, keepdims=True)
        self.axes, self.inv_std = axes, 1.0 / np.sqrt(var + eps)
        self.x_hat = centered * self.inv_std
        return self.x_hat

    def backward(self, g):
        x_hat, axes = self.x_hat, self.axes
        mean_g = g.mean(axis=axes, keepdims=True)
        mean_g_xhat = np.mean(g * x_hat, axis=axes, keepdims=True)
        return ((g - mean_g - x_hat * mean_g_xhat) * self.inv_std,)


def _tensor(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """``torch.nn.functional.layer_norm``: standardise ``input`` over its last ``len(normalized_shape)``
    dimensions, then ``* weight + bias`` (both of shape ``normalized_shape``; None: no scale / no shift).

    ``input`` ``(*, *normalized_shape)`` -> same shape.
    """
    normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    x = _tensor(input)
    k = len(normalized_shape)
    if k == 0 or x.ndim < k or tuple(x.shape[x.ndim - k:]) != normalized_shape:
        raise ValueError(f"layer_norm: input of shape {tuple(x.shape)} must end with normalized_shape "
                         f"{normalized_shape}")
    for name, a in (("weight", weight), ("bias", bias)):
        if a is not None and tuple(a.shape) != normalized_shape:
            raise ValueError(f"layer_norm: {name} must have shape normalized_shape {normalized_shape}, "
                             f"got {tuple(a.shape)}")
    check_float_dtypes("layer_norm", input=x, weight=weight, bias=bias)
    y = Standardize.apply(x, axes=tuple(range(x.ndim - k, x.ndim)), eps=float(eps))
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """``torch.nn.functional.group_norm``: the C channels of ``input`` ``(N, C, *)`` in ``num_groups``
    groups of C / num_groups consecutive channels; each (sample, group) is standardised over its
    channels and positions, then ``* weight + bias`` per channel (both (C,); None: none).
    """
    x = _tensor(input)
    if x.ndim < 2:
        raise ValueError(f"group_norm: input must be (N, C, *), got shape {tuple(x.shape)}")
    n, c = x.shape[0], x.shape[1]
    if num_groups < 1 or c % num_groups:
        raise ValueError(f"group_norm: num_channels {c} (input {tuple(x.shape)}) must be divisible by "
                         f"num_groups {num_groups}")
    for name, a in (("weight", weight), ("bias", bias)):
        if a is not None and tuple(a.shape) != (c,):
            raise ValueError(f"group_norm: {name} must have shape ({c},) for input {tuple(x.shape)}, "
                             f"got {tuple(a.shape)}")
    check_float_dtypes("group_norm", input=x, weight=weight, bias=bias)
    per_group = (c // num_groups) * math.prod(x.shape[2:])  # explicit, not -1: N may be 0
    y = Standardize.apply(x.reshape(n, num_groups, per_group), axes=(2,), eps=float(eps)).reshape(*x.shape)
    channel = (c,) + (1,) * (x.ndim - 2)  # (C, 1, 1...) broadcasts against (N, C, *)
    if weight is not None:
        y = y * _tensor(weight).reshape(*channel)
    if bias is not None:
        y = y + _tensor(bias).reshape(*channel)
    return y
