"""Reductions over axes: sum, mean, max.

Each takes NumPy's ``axis=`` / ``keepdims=`` (PyTorch's ``dim=`` / ``keepdim=``
are accepted too). Backward re-inserts the reduced axes (size 1) and lets
broadcasting spread the gradient back over them:

    y = sum_i x_i          dL/dx_i = dL/dy
    y = (1/n) sum_i x_i    dL/dx_i = dL/dy / n
    y = max_i x_i          dL/dx_i = dL/dy / k where x_i is one of the k maxima, else 0

(This module defines ``sum`` and ``max``, so it must not call the builtins.)
"""
import numpy as np

from ..tensor import Function, tensor_method


def _normalize_axis(axis, ndim):
    """``axis`` (None, an int or a sequence) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
    normalized = sorted(int(a) % ndim for a in axes)
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"axis {axis} names the same axis twice for a tensor with {ndim} dimensions")
    return tuple(normalized)


def _axis_args(axis, keepdims, dim, keepdim):
    if dim is not None:
        axis = dim
    if keepdim is not None:
        keepdims = keepdim
    return axis, bool(keepdims)


def _expand(g, axes, keepdims):
    """Put the reduced axes back (as size 1) so ``g`` broadcasts against the input."""
    return g if keepdims else np.expand_dims(g, axes)


class Sum(Function):
    def forward(self, x, axis=None, keepdims=False):
        self.axes, self.keepdims, self.shape = _normalize_axis(axis, x.ndim), keepdims, x.shape
        return np.sum(x, axis=self.axes, keepdims=keepdims)

    def backward(self, g):
        return (np.broadcast_to(_expand(g, self.axes, self.keepdims), self.shape),)


class Mean(Function):
    """mean = sum / n, where n is the number of elements reduced."""

    def forward(self, x, axis=None, keepdims=False):
        self.axes, self.keepdims, self.shape = _normalize_axis(axis, x.ndim), keepdims, x.shape
        self.n = int(np.prod([x.shape[a] for a in self.axes]))
        return np.mean(x, axis=self.axes, keepdims=keepdims)

    def backward(self, g):
        g = _expand(g, self.axes, self.keepdims) / self.n
        return (np.broadcast_to(g, self.shape),)


class Max(Function):
    """The gradient goes to the maximal elements; ties share it equally (as ``torch.amax``)."""

    def forward(self, x, axis=None, keepdims=False):
        self.axes, self.keepdims, self.x = _normalize_axis(axis, x.ndim), keepdims, x
        self.out = np.max(x, axis=self.axes, keepdims=True)
        return self.out if keepdims else np.squeeze(self.out, self.axes)

    def backward(self, g):
        is_max = self.x == self.out
        count = is_max.sum(axis=self.axes, keepdims=True).astype(g.dtype)  # int counts would upcast float32
        return (is_max * (_expand(g, self.axes, self.keepdims) / count),)


@tensor_method("sum")
def sum(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    axis, keepdims = _axis_args(axis, keepdims, dim, keepdim)
    return Sum.apply(x, axis=axis, keepdims=keepdims)


@tensor_method("mean")
def mean(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    axis, keepdims = _axis_args(axis, keepdims, dim, keepdim)
    return Mean.apply(x, axis=axis, keepdims=keepdims)


@tensor_method("max", "amax")
def max(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """Maximum values over ``axis`` (values only, like ``torch.amax``; no indices)."""
    axis, keepdims = _axis_args(axis, keepdims, dim, keepdim)
    return Max.apply(x, axis=axis, keepdims=keepdims)
