"""Softmax, log-softmax and the classification losses: cross-entropy and negative log-likelihood.

log_softmax(x)_i = x_i - log sum_j exp(x_j), computed after subtracting max_j x_j
so exp never overflows. Its backward: g - softmax(x) * sum(g).

Both losses take logits (or log-probabilities) (N, C) and integer class indices (N,); N-d inputs
(N, C, d1, ...) with targets (N, d1, ...) (one class per position, e.g. per pixel) are rows too:
C moved last and the rest flattened. PyTorch's weighting, with class weights w (ones by default)
and m_i = 0 where target_i == ignore_index, else 1:

    loss_i = m_i * w[t_i] * (-log p_i[t_i])          reduction="none": (N,) (ignored rows 0)
    "sum":  sum_i loss_i
    "mean": sum_i loss_i / sum_i m_i * w[t_i]        (a weighted mean; nan for an empty batch, as torch)
"""
import math

import numpy as np

from ..tensor import Function, Tensor, tensor_method

REDUCTIONS = ("mean", "sum", "none")


def _log_softmax(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


class LogSoftmax(Function):
    def forward(self, x, axis=-1):
        self.axis = axis
        self.out = _log_softmax(x, axis)
        return self.out

    def backward(self, g):
        return (g - np.exp(self.out) * g.sum(axis=self.axis, keepdims=True),)


class Softmax(Function):
    """s = exp(log_softmax(x)); ds backward: s * (g - sum(g * s))."""

    def forward(self, x, axis=-1):
        self.axis = axis
        self.s = np.exp(_log_softmax(x, axis))
        return self.s

    def backward(self, g):
        s = self.s
        return (s * (g - (g * s).sum(axis=self.axis, keepdims=True)),)


class CrossEntropy(Function):
    """-sum_c q_c log p_c per row, with p = softmax(logits) and the target distribution

        q = (1 - eps) * w[t] * onehot(t) + eps / C * w         (label smoothing eps, class weights w)

    zero on ignored rows; reduced as in the module docstring ("mean" divides by the sum of w[t] over
    the rows kept, so smoothing does not change the divisor, as in PyTorch). Without weights
    d loss_i / d logits_i = p_i - q_i; with them (sum_c q_ic) * p_i - q_i; ignored rows get 0.
    """

    def forward(self, logits, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        n, c = logits.shape
        logp = _log_softmax(logits, axis=1)
        kept = target != ignore_index
        self.ignored = None if kept.all() else ~kept
        rows, t = np.arange(n), target if self.ignored is None else np.where(kept, target, 0)
        if weight is None:  # the training path: the plain one-hot mixture
            q = np.full_like(logp, label_smoothing / c)
            q[rows, t] += 1.0 - label_smoothing
            total_weight = np.count_nonzero(kept)
        else:
            q = np.empty_like(logp)
            q[...] = (label_smoothing / c) * weight
            q[rows, t] += (1.0 - label_smoothing) * weight[t]
            total_weight = weight[t][kept].sum()
        if self.ignored is not None:
            q[self.ignored] = 0.0
        self.p, self.q, self.reduction = np.exp(logp), q, reduction
        if weight is not None:  # sum_c q_ic: how much of row i's probabilities the gradient takes
            self.p *= q.sum(axis=1, keepdims=True)
        if reduction == "none":
            return -(q * logp).sum(axis=1)
        # "mean" of no row (empty batch, everything ignored) is 0/0 = nan, as in PyTorch
        self.divisor = 1 if reduction == "sum" else total_weight if total_weight else np.nan
        return np.asarray(-(q * logp).sum() / self.divisor, dtype=logits.dtype)

    def backward(self, g):
        if self.reduction == "none":
            grad = (self.p - self.q) * g[:, None]
        else:
            grad = g * (self.p - self.q) / self.divisor
        if self.ignored is not None:
            grad[self.ignored] = 0.0
        return (grad, None)


class NLLLoss(Function):
    """-w[t_i] * logp_i[t_i] per kept row (module docstring); d loss_i / d logp_i = -w[t_i] onehot(t_i) / divisor."""

    def forward(self, logp, target, weight=None, ignore_index=-100, reduction="mean"):
        n = logp.shape[0]
        kept = target != ignore_index
        rows, t = np.arange(n), np.where(kept, target, 0)
        row_weight = (np.ones(n, logp.dtype) if weight is None else weight[t]) * kept
        losses = -row_weight * logp[rows, t]
        self.shape, self.rows, self.t, self.kept, self.reduction = logp.shape, rows, t, kept, reduction
        self.row_weight, self.divisor = row_weight, 1
        if reduction == "none":
            return losses
        if reduction == "mean":
            total_weight = row_weight.sum()
            self.divisor = total_weight if total_weight else np.nan
        return np.asarray(losses.sum() / self.divisor, dtype=logp.dtype)

    def backward(self, g):
        grad = np.zeros(self.shape, dtype=self.row_weight.dtype)
        grad[self.rows, self.t] = np.where(self.kept, -self.row_weight * g / self.divisor, 0.0)
        return (grad, None)


@tensor_method("log_softmax")
def log_softmax(x, axis=-1, *, dim=None):
    """``torch.nn.functional.log_softmax``: x_i - log sum_j exp(x_j) along ``dim`` (or NumPy's ``axis``)."""
    return LogSoftmax.apply(x, axis=axis if dim is None else dim)


@tensor_method("softmax")
def softmax(x, axis=-1, *, dim=None):
    """``torch.nn.functional.softmax``: exp(x_i) / sum_j exp(x_j) along ``dim`` (or NumPy's ``axis``)."""
    return Softmax.apply(x, axis=axis if dim is None else dim)


def _check_reduction(op, reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _class_rows(op, input, target, weight, ignore_index):
    """(input as rows (M, C), target as integer array (M,), weight as an array or None, output shape
    for reduction "none"): checks every argument and moves the class axis of N-d input last."""
    input = input if isinstance(input, Tensor) else Tensor(input)
    target = np.asarray(target.data if isinstance(target, Tensor) else target)
    if input.ndim == 0:
        raise ValueError(f"{op}: input must be (N, C), (N, C, d1, ...) or (C,), got a scalar")
    expected = () if input.ndim == 1 else (input.shape[0],) + tuple(input.shape[2:])
    if target.shape != expected or target.dtype.kind not in "iu":
        raise ValueError(
            f"{op}: target must be integer class indices of shape {expected} for input (N, C) or "
            f"(N, C, d1, ...) of shape {tuple(input.shape)}, got shape {target.shape} and dtype {target.dtype}"
        )
    c = input.shape[0] if input.ndim == 1 else input.shape[1]
    kept = target[target != ignore_index]
    if kept.size and (kept.min() < 0 or kept.max() >= c):
        raise ValueError(f"{op}: target values must be in [0, {c}) (or ignore_index {ignore_index}), "
                         f"got min {kept.min()} and max {kept.max()}")
    if weight is not None:
        if isinstance(weight, (int, float)):
            raise TypeError(f"{op}: weight (the third argument, as in PyTorch) must be None or an array of "
                            f"shape ({c},), got {type(weight).__name__} {weight}; expected label smoothing? "
                            f"pass it as label_smoothing={weight}")
        weight = np.asarray(weight.data if isinstance(weight, Tensor) else weight)
        if weight.shape != (c,) or weight.dtype.kind != "f":
            raise ValueError(f"{op}: weight must be a float array of shape ({c},) (one per class), got shape "
                             f"{weight.shape} and dtype {weight.dtype}")
        weight = weight.astype(input.dtype, copy=False)
    if input.ndim == 1:
        return input.reshape(1, c), target.reshape(1), weight, ()
    if input.ndim > 2:  # (N, C, d1, ...) -> (N, d1, ..., C) -> (N * d1 * ..., C)
        rows = input.shape[0] * math.prod(input.shape[2:])
        input = input.permute(0, *range(2, input.ndim), 1).reshape(rows, c)
        target = target.reshape(rows)
    return input, target, weight, expected


def cross_entropy(input, target, weight=None, *, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """``torch.nn.functional.cross_entropy`` of logits ``input`` against integer class indices ``target``.

    ``input`` (N, C), (N, C, d1, ...) or (C,); ``target`` (N,), (N, d1, ...) or (). ``weight``: (C,) class
    weights (constants: no gradient; cast to ``input``'s dtype); ``ignore_index``: target value whose rows
    count for nothing; ``reduction``: "mean" (weighted mean, module docstring), "sum" or "none" (the
    target's shape); ``label_smoothing`` eps in [0, 1]: the target becomes (1 - eps) one-hot + eps / C.
    Intended differences: the arguments after ``weight`` are keyword-only (PyTorch's deprecated
    ``size_average``/``reduce`` sit between them), and class-probability targets are not supported.
    """
    _check_reduction("cross_entropy", reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    logits, target, weight, shape = _class_rows("cross_entropy", input, target, weight, ignore_index)
    loss = CrossEntropy.apply(logits, Tensor(target), weight=weight, ignore_index=ignore_index,
                              reduction=reduction, label_smoothing=float(label_smoothing))
    return loss.reshape(*shape) if reduction == "none" else loss


def nll_loss(input, target, weight=None, *, ignore_index=-100, reduction="mean"):
    """``torch.nn.functional.nll_loss``: ``input`` holds log-probabilities (``log_softmax`` of logits), shapes,
    ``weight``, ``ignore_index`` and ``reduction`` as in ``cross_entropy`` (module docstring for the
    formula). ``cross_entropy(x, t) == nll_loss(log_softmax(x, dim=1), t)``.
    """
    _check_reduction("nll_loss", reduction)
    logp, target, weight, shape = _class_rows("nll_loss", input, target, weight, ignore_index)
    loss = NLLLoss.apply(logp, Tensor(target), weight=weight, ignore_index=ignore_index, reduction=reduction)
    return loss.reshape(*shape) if reduction == "none" else loss
