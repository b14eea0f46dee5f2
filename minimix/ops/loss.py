"""Softmax, log-softmax and cross-entropy.

log_softmax(x)_i = x_i - log sum_j exp(x_j), computed after subtracting max_j x_j
so exp never overflows. Its backward: g - softmax(x) * sum(g).
"""
import numpy as np

from ..tensor import Function, Tensor, tensor_method


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
    """Mean over the batch of -sum_c q_c log p_c, with p = softmax(logits) and
    q = (1 - eps) * onehot(target) + eps / C (label smoothing eps, as in PyTorch).

    d loss / d logits = (p - q) / N.
    """

    def forward(self, logits, target, label_smoothing=0.0):
        n, c = logits.shape
        logp = _log_softmax(logits, axis=1)
        q = np.full_like(logp, label_smoothing / c)
        q[np.arange(n), target] += 1.0 - label_smoothing
        self.p, self.q, self.n = np.exp(logp), q, n
        return np.asarray(-(q * logp).sum() / n, dtype=logits.dtype)

    def backward(self, g):
        return (g * (self.p - self.q) / self.n, None)


@tensor_method("log_softmax")
def log_softmax(x, axis=-1, *, dim=None):
    return LogSoftmax.apply(x, axis=axis if dim is None else dim)


@tensor_method("softmax")
def softmax(x, axis=-1, *, dim=None):
    return Softmax.apply(x, axis=axis if dim is None else dim)


def cross_entropy(logits, target, label_smoothing=0.0):
    """Cross-entropy of ``logits`` (N, C) against integer class indices ``target`` (N,).

    Mean reduction and label smoothing follow ``torch.nn.functional.cross_entropy``.
    """
    target = np.asarray(target.data if isinstance(target, Tensor) else target)
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: logits must be (N, C), got shape {logits.shape}")
    if target.shape != (logits.shape[0],) or target.dtype.kind not in "iu":
        raise ValueError(
            f"cross_entropy: target must be integer class indices of shape ({logits.shape[0]},), "
            f"got shape {target.shape} and dtype {target.dtype}"
        )
    if target.size and (target.min() < 0 or target.max() >= logits.shape[1]):
        raise ValueError(
            f"cross_entropy: target values must be in [0, {logits.shape[1]}), "
            f"got min {target.min()} and max {target.max()}"
        )
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    return CrossEntropy.apply(logits, Tensor(target), label_smoothing=label_smoothing)
