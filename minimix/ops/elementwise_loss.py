"""Losses that compare input and target value by value: mean squared error, L1, binary cross-entropy.

Each is an elementwise Function (the loss of every value, same shape as ``input``) followed by the
reduction as ordinary Tensor ops: "mean" (nan for an empty input, as in PyTorch), "sum" or "none".

    mse:   (x - y)^2                     d/dx = 2 (x - y),  d/dy = -2 (x - y)
    l1:    |x - y|                       d/dx = sign(x - y) (0 at x = y, as PyTorch), d/dy = -d/dx
    binary cross-entropy of logits x against targets y in [0, 1], class weight w, positive weight pw:
           l = w * ((1 - y) x + L * softplus(-x)),   L = 1 + (pw - 1) y
           softplus(-x) = log(1 + e^-x) = max(-x, 0) + log1p(e^-|x|)   (never overflows)
           d/dx = w * ((1 - y) - L * sigmoid(-x)),   d/dy = w * (-x + (pw - 1) softplus(-x))

Intended difference from PyTorch: ``input`` and ``target`` must have the same shape (PyTorch
broadcasts them for mse/l1 with a warning; a (N, 1) output against (N,) targets is nearly always a bug).
"""
import numpy as np

from ..tensor import Function, Tensor, check_float_dtypes
from .loss import REDUCTIONS


class SquaredError(Function):
    """(x - y)^2 elementwise."""

    def forward(self, x, y):
        self.diff = x - y
        return self.diff * self.diff

    def backward(self, g):
        gx = 2.0 * self.diff * g
        return gx, -gx


class AbsoluteError(Function):
    """``|x - y|`` elementwise; its gradient is sign(x - y), 0 where x == y."""

    def forward(self, x, y):
        diff = x - y
        self.sign = np.sign(diff)
        return np.abs(diff)

    def backward(self, g):
        gx = self.sign * g
        return gx, -gx


class BinaryCrossEntropyWithLogits(Function):
    """w * ((1 - y) x + L softplus(-x)) elementwise (module docstring); w and pw are constants."""

    def forward(self, x, y, weight=None, pos_weight=None):
        softplus_neg = np.maximum(-x, 0) + np.log1p(np.exp(-np.abs(x)))  # log(1 + e^-x), stable
        log_weight = 1.0 if pos_weight is None else 1.0 + (pos_weight - 1.0) * y
        self.x, self.y, self.weight, self.pos_weight = x, y, weight, pos_weight
        self.softplus_neg, self.log_weight = softplus_neg, log_weight
        loss = (1.0 - y) * x + log_weight * softplus_neg
        return loss if weight is None else loss * weight

    def backward(self, g):
        g = g if self.weight is None else g * self.weight
        # sigmoid(-x) = e^-x / (1 + e^-x) = exp(-x - softplus(-x)): the exponent is <= 0, no overflow
        sigmoid_neg = np.exp(-self.x - self.softplus_neg)
        gx = ((1.0 - self.y) - self.log_weight * sigmoid_neg) * g
        gy = -self.x if self.pos_weight is None else -self.x + (self.pos_weight - 1.0) * self.softplus_neg
        return gx, gy * g


def _reduce(loss, reduction):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if loss.numel() == 0:  # PyTorch: the mean of nothing is nan (np.mean would warn as well)
        return loss.sum() * float("nan")
    return loss.mean()


def _check(op, input, target, reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    input = input if isinstance(input, Tensor) else Tensor(input)
    target = target if isinstance(target, Tensor) else Tensor(target)
    if tuple(input.shape) != tuple(target.shape):
        raise ValueError(f"{op}: input {tuple(input.shape)} and target {tuple(target.shape)} must have the same "
                         f"shape (PyTorch would broadcast them; reshape one if that is what you mean)")
    check_float_dtypes(op, input=input, target=target)
    return input, target


def mse_loss(input, target, *, reduction="mean"):
    """``torch.nn.functional.mse_loss``: (input - target)^2, averaged ("mean"), summed ("sum") or not ("none").

    ``input`` and ``target`` of one shape (module docstring); both get gradients.
    """
    input, target = _check("mse_loss", input, target, reduction)
    return _reduce(SquaredError.apply(input, target), reduction)


def l1_loss(input, target, *, reduction="mean"):
    """``torch.nn.functional.l1_loss``: ``|input - target|``, averaged ("mean"), summed ("sum") or not ("none")."""
    input, target = _check("l1_loss", input, target, reduction)
    return _reduce(AbsoluteError.apply(input, target), reduction)


def _constant(op, name, value, like, shape_ok, expected):
    """``value`` (array or Tensor) as an array of ``like``'s dtype, after checking its shape broadcasts."""
    if value is None:
        return None
    value = np.asarray(value.data if isinstance(value, Tensor) else value)
    if not shape_ok(value.shape):
        raise ValueError(f"{op}: {name} of shape {value.shape} must broadcast to {expected}")
    return value.astype(like.dtype, copy=False)


def binary_cross_entropy_with_logits(input, target, weight=None, *, reduction="mean", pos_weight=None):
    """``torch.nn.functional.binary_cross_entropy_with_logits``: sigmoid and binary cross-entropy in one
    numerically stable op (module docstring), for logits ``input`` and targets in [0, 1] of the same shape.

    ``weight``: per-element weights broadcast to ``input``; ``pos_weight``: the weight of the positive
    term, broadcast along the last dimension (one per class, (C,)). Both are constants (no gradient) cast
    to ``input``'s dtype. Arguments after ``weight`` are keyword-only (PyTorch's deprecated ``size_average``
    and ``reduce`` sit between).
    """
    op = "binary_cross_entropy_with_logits"
    input, target = _check(op, input, target, reduction)
    shape = tuple(input.shape)

    def broadcasts(s):
        try:
            return np.broadcast_shapes(s, shape) == shape
        except ValueError:
            return False

    weight = _constant(op, "weight", weight, input, broadcasts, f"input {shape}")
    pos_weight = _constant(op, "pos_weight", pos_weight, input, broadcasts, f"input {shape} (one per class, last axis)")
    loss = BinaryCrossEntropyWithLogits.apply(input, target, weight=weight, pos_weight=pos_weight)
    return _reduce(loss, reduction)
