"""Reductions over axes: sum, mean, max/min (amax/amin), argmax/argmin, var/std.

Each takes NumPy's ``axis=`` / ``keepdims=`` (PyTorch's ``dim=`` / ``keepdim=``
are accepted too). Backward re-inserts the reduced axes (size 1) and lets
broadcasting spread the gradient back over them:

    y = sum_i x_i          dL/dx_i = dL/dy
    y = (1/n) sum_i x_i    dL/dx_i = dL/dy / n
    y = max_i x_i          dL/dx_i = dL/dy / k where x_i is one of the k maxima, else 0 (amax)
    max(x, dim)            dL/dx_i = dL/dy at the returned index i only, else 0
    y = var(x)             dL/dx_i = dL/dy * 2 (x_i - mean) / (n - correction)

(This module defines ``sum``, ``max`` and ``min``, so it must not call the builtins.)
"""
from collections import namedtuple

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


class Amax(Function):
    """The gradient goes to the extreme elements; ties share it equally (as ``torch.amax``/``amin``).

    ``largest=False`` gives the minimum."""

    def forward(self, x, axis=None, keepdims=False, largest=True):
        self.axes, self.keepdims, self.x = _normalize_axis(axis, x.ndim), keepdims, x
        empty = [a for a in self.axes if x.shape[a] == 0]
        if empty or x.size == 0 and not self.axes:
            raise ValueError(f"{'amax' if largest else 'amin'} over axis {empty[0] if empty else None} of shape "
                             f"{x.shape}: no elements to reduce, so no value (reduce over non-empty axes only)")
        self.out = (np.max if largest else np.min)(x, axis=self.axes, keepdims=True)
        return self.out if keepdims else np.squeeze(self.out, self.axes)

    def backward(self, g):
        is_max = self.x == self.out
        count = is_max.sum(axis=self.axes, keepdims=True).astype(g.dtype)  # int counts would upcast float32
        return (is_max * (_expand(g, self.axes, self.keepdims) / count),)


Max = Amax  # the name this Function had before max(dim) returned indices


class MaxDim(Function):
    """Values of the max (or min) along one axis; the gradient goes to the element at the returned
    index only (the first of tied maxima, as ``torch.max(x, dim)``). The indices are computed in forward
    and kept on the Function, so that ``max`` can return them beside the values."""

    def forward(self, x, axis, keepdims=False, largest=True):
        if x.shape[axis] == 0:
            raise ValueError(f"{'max' if largest else 'min'}: dim {axis} of shape {x.shape} is empty, so it "
                             f"has no {'maximum' if largest else 'minimum'}")
        self.axis, self.shape = axis, x.shape
        self.index = np.expand_dims((np.argmax if largest else np.argmin)(x, axis=axis), axis)
        values = np.take_along_axis(x, self.index, axis=axis)
        return values if keepdims else np.squeeze(values, axis)

    def backward(self, g):
        out = np.zeros(self.shape, dtype=g.dtype)
        np.put_along_axis(out, self.index, g.reshape(self.index.shape), axis=self.axis)
        return (out,)


class Var(Function):
    """var = sum_i (x_i - mean)^2 / (n - correction) over the reduced axes (n of them);
    d var / d x_i = 2 (x_i - mean) / (n - correction)."""

    def forward(self, x, axis=None, keepdims=False, correction=1):
        self.axes, self.keepdims = _normalize_axis(axis, x.ndim), keepdims
        n = int(np.prod([x.shape[a] for a in self.axes]))
        self.centred = x - np.mean(x, axis=self.axes, keepdims=True) if n else np.zeros_like(x)
        self.dof = n - correction if n > correction else 0  # no degrees of freedom left: inf or NaN, as in PyTorch
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.divide(np.sum(self.centred * self.centred, axis=self.axes, keepdims=keepdims),
                             x.dtype.type(self.dof))

    def backward(self, g):
        with np.errstate(divide="ignore", invalid="ignore"):
            return (_expand(g, self.axes, self.keepdims) * (2 * self.centred / g.dtype.type(self.dof)),)


MaxResult = namedtuple("max", ["values", "indices"])
MaxResult.__doc__ = "``(values, indices)`` of ``max(x, dim)``, as ``torch.return_types.max``."
MinResult = namedtuple("min", ["values", "indices"])
MinResult.__doc__ = "``(values, indices)`` of ``min(x, dim)``, as ``torch.return_types.min``."


@tensor_method("sum")
def sum(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """Sum over ``axis`` (all axes when None). ``dim``/``keepdim`` are PyTorch's spellings."""
    axis, keepdims = _axis_args(axis, keepdims, dim, keepdim)
    return Sum.apply(x, axis=axis, keepdims=keepdims)


@tensor_method("mean")
def mean(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """Mean over ``axis`` (all axes when None). ``dim``/``keepdim`` are PyTorch's spellings."""
    axis, keepdims = _axis_args(axis, keepdims, dim, keepdim)
    return Mean.apply(x, axis=axis, keepdims=keepdims)


@tensor_method("amax")
def amax(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """Maximum values over ``dim`` (an int, a tuple, or None for all), as ``torch.amax``: values only;
    tied maxima share the gradient equally. (torch.amax's default dim=() also means all axes.)"""
    dim, keepdim = _axis_args(dim, keepdim, axis, keepdims)
    return Amax.apply(x, axis=None if dim == () else dim, keepdims=keepdim)


@tensor_method("amin")
def amin(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """Minimum values over ``dim`` (an int, a tuple, or None for all), as ``torch.amin``: values only;
    tied minima share the gradient equally."""
    dim, keepdim = _axis_args(dim, keepdim, axis, keepdims)
    return Amax.apply(x, axis=None if dim == () else dim, keepdims=keepdim, largest=False)


def _max_or_min(name, x, dim, keepdim, axis, keepdims, largest):
    """``max``/``min``: the value over all elements, (values, indices) along one dim, or the
    element-wise maximum/minimum of two tensors."""
    from ..tensor import Tensor

    dim, keepdim = _axis_args(dim, keepdim, axis, keepdims)
    if isinstance(dim, (Tensor, np.ndarray)):  # torch.max(a, b) is torch.maximum(a, b)
        from .compare import maximum, minimum

        return (maximum if largest else minimum)(x, dim)
    if dim is None:
        return Amax.apply(x, axis=None, keepdims=keepdim, largest=largest)
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise TypeError(f"{name}: dim must be an int (one axis), got {dim!r}; for the {name}imum over several "
                        f"axes use a{name}(x, dim=...)")
    axis = _normalize_axis(dim, x.ndim)[0] if x.ndim else _check_0d(name, dim)
    values = MaxDim.apply(x, axis=axis, keepdims=keepdim, largest=largest) if x.ndim else \
        Amax.apply(x, axis=None, largest=largest)
    index = _indices(x, values, axis, keepdim, largest)
    return (MaxResult if largest else MinResult)(values, index)


def _check_0d(name, dim):
    """A 0-d tensor has one element; like PyTorch, dim 0 or -1 names it."""
    if dim not in (0, -1):
        raise ValueError(f"{name}: dim {dim} is out of range for a 0-d tensor (use 0 or -1)")
    return None


def _indices(x, values, axis, keepdim, largest):
    """The int64 index tensor beside ``values`` (the ones MaxDim chose, or 0 for a 0-d tensor)."""
    from ..tensor import Tensor

    if axis is None:
        return Tensor(np.zeros((), np.int64))
    fn = values._ctx
    if fn is not None:
        index = fn.index
    else:  # no graph recorded (no_grad, or x needs no gradient): the same choice, recomputed
        index = np.expand_dims((np.argmax if largest else np.argmin)(x.data, axis=axis), axis)
    return Tensor((index if keepdim else np.squeeze(index, axis)).astype(np.int64))


@tensor_method("max")
def max(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """As ``torch.max``: with no ``dim``, the largest value (a 0-d tensor; tied maxima share the gradient);
    with an int ``dim``, the named tuple ``(values, indices)`` along it (the gradient goes to the returned
    index, the first of tied maxima); with a tensor, the element-wise ``maximum``. ``axis``/``keepdims``
    are accepted as aliases, as torch does. For values only over several axes, use ``amax``."""
    return _max_or_min("max", x, dim, keepdim, axis, keepdims, largest=True)


@tensor_method("min")
def min(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """As ``torch.min``: the smallest value, or ``(values, indices)`` along an int ``dim``, or the
    element-wise ``minimum`` with a tensor (see ``max``). For values only, use ``amin``."""
    return _max_or_min("min", x, dim, keepdim, axis, keepdims, largest=False)


def _arg(name, x, dim, keepdim, largest):
    """The int64 index tensor of ``argmax``/``argmin``."""
    from ..tensor import Tensor

    data = x.data if isinstance(x, Tensor) else np.asarray(x)
    pick = np.argmax if largest else np.argmin
    axis = None
    if dim is not None:
        axis = _normalize_axis(dim, data.ndim)[0] if data.ndim else _check_0d(name, dim)
    if data.size == 0 and (axis is None or data.shape[axis] == 0):
        raise ValueError(f"{name}: the tensor has no elements{'' if dim is None else f' along dim {dim}'} "
                         f"(shape {data.shape})")
    if axis is None:  # dim None: an index into the flattened tensor (0 for a 0-d tensor)
        index = np.asarray(pick(data)).reshape((1,) * data.ndim if keepdim and dim is None else ())
        return Tensor(index.astype(np.int64))
    index = pick(data, axis=axis)
    return Tensor((np.expand_dims(index, axis) if keepdim else index).astype(np.int64))


@tensor_method("argmax")
def argmax(x, dim=None, keepdim=False):
    """Index of the largest value (first of ties), int64, as ``torch.argmax``: over the flattened tensor
    when ``dim`` is None, else along ``dim``. Not differentiable (indices)."""
    return _arg("argmax", x, dim, keepdim, largest=True)


@tensor_method("argmin")
def argmin(x, dim=None, keepdim=False):
    """Index of the smallest value (first of ties), int64, as ``torch.argmin`` (see ``argmax``)."""
    return _arg("argmin", x, dim, keepdim, largest=False)


def _correction(name, unbiased, correction):
    if correction is not None:
        if unbiased is not None:
            raise ValueError(f"{name}: give unbiased or correction, not both")
        return correction
    return 1 if unbiased is None or unbiased else 0


@tensor_method("var")
def var(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Variance over ``dim`` (all when None), as ``torch.var``:
    sum (x - mean)^2 / (n - correction), with correction 1 (Bessel's, ``unbiased=True``, the default)
    or 0 (``unbiased=False``). n - correction <= 0 gives inf or NaN, as in PyTorch."""
    if isinstance(dim, bool):  # torch.var(x, False): the old positional unbiased
        dim, unbiased = None, dim
    return Var.apply(x, axis=dim, keepdims=keepdim, correction=_correction("var", unbiased, correction))


@tensor_method("std")
def std(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Standard deviation: ``sqrt(var(x, dim, unbiased, keepdim, correction=...))``, as ``torch.std``."""
    return var(x, dim, unbiased, keepdim, correction=correction).sqrt()
