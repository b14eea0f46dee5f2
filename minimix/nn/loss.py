"""Loss modules (``torch.nn.CrossEntropyLoss`` ...): the functional losses with their options stored.

``loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1); loss = loss_fn(logits, target)`` is
``F.cross_entropy(logits, target, label_smoothing=0.1)``; the formulas are in ``minimix.ops.loss``
(classification) and ``minimix.ops.elementwise_loss`` (mse, l1, binary cross-entropy). As in
PyTorch, ``weight`` and ``pos_weight`` are buffers (saved in ``state_dict``) when given, and the
options after ``weight`` are keyword-only here (PyTorch's deprecated ``size_average``/``reduce`` sit
between them).
"""
import numpy as np

from ..ops.elementwise_loss import binary_cross_entropy_with_logits, l1_loss, mse_loss
from ..ops.loss import REDUCTIONS, cross_entropy, nll_loss
from ..tensor import Tensor
from .module import Module


class _Loss(Module):
    """What every loss module has: ``reduction`` ("mean", "sum" or "none"), checked when built."""

    def __init__(self, reduction="mean"):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def _buffer(self, name, value):
        """Register ``value`` (array or Tensor) as buffer ``name``, or set the attribute to None."""
        if value is None:
            setattr(self, name, None)
        else:
            self.register_buffer(name, np.array(value.data if isinstance(value, Tensor) else value))


class CrossEntropyLoss(_Loss):
    """``torch.nn.CrossEntropyLoss``: ``F.cross_entropy(input, target, weight, ignore_index=...,
    reduction=..., label_smoothing=...)``; logits (N, C) or (N, C, d1, ...) against class indices."""

    def __init__(self, weight=None, *, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        self._buffer("weight", weight)
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing

    def forward(self, input, target):
        """The loss of logits ``input`` against integer class indices ``target``."""
        return cross_entropy(input, target, self.weight, ignore_index=self.ignore_index,
                             reduction=self.reduction, label_smoothing=self.label_smoothing)


class NLLLoss(_Loss):
    """``torch.nn.NLLLoss``: ``F.nll_loss(input, target, weight, ignore_index=..., reduction=...)``;
    ``input`` holds log-probabilities (``nn.functional.log_softmax(logits, dim=1)``)."""

    def __init__(self, weight=None, *, ignore_index=-100, reduction="mean"):
        super().__init__(reduction)
        self._buffer("weight", weight)
        self.ignore_index = ignore_index

    def forward(self, input, target):
        """The negative log-likelihood of log-probabilities ``input`` at the classes ``target``."""
        return nll_loss(input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction)


class MSELoss(_Loss):
    """``torch.nn.MSELoss``: ``F.mse_loss(input, target, reduction=...)``, (input - target)^2."""

    def forward(self, input, target):
        """The squared error of ``input`` against ``target`` (same shape), reduced."""
        return mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """``torch.nn.L1Loss``: ``F.l1_loss(input, target, reduction=...)``, ``|input - target|``."""

    def forward(self, input, target):
        """The absolute error of ``input`` against ``target`` (same shape), reduced."""
        return l1_loss(input, target, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """``torch.nn.BCEWithLogitsLoss``: ``F.binary_cross_entropy_with_logits(input, target, weight,
    reduction=..., pos_weight=...)``; logits against targets in [0, 1], sigmoid included (stable)."""

    def __init__(self, weight=None, *, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        self._buffer("weight", weight)
        self._buffer("pos_weight", pos_weight)

    def forward(self, input, target):
        """The binary cross-entropy of sigmoid(``input``) against ``target`` (same shape), reduced."""
        return binary_cross_entropy_with_logits(input, target, self.weight, reduction=self.reduction,
                                                pos_weight=self.pos_weight)
