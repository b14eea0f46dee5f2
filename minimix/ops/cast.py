"""Differentiable dtype casts: ``to(dtype)``, ``float()``, ``double()`` and ``astype``.

A cast between float32 and float64 is an op like any other: y = x (in another dtype), so
dL/dx = dL/dy cast back to x's dtype, and the gradient reaches the original tensor.
A cast to a dtype minimix does not compute in (integers, bools, float16) gives plain data
without a gradient, as ``torch`` does for integer casts (torch keeps float16 differentiable:
an intended difference, minimix computes in float32 and float64 only).
"""
import numpy as np

from ..tensor import FLOAT_DTYPES, Function, Tensor, is_grad_enabled, tensor_method


class Cast(Function):
    """y = x in ``dtype``; the backward casts the gradient back to x's dtype."""

    def forward(self, x, dtype):
        self.in_dtype = x.dtype
        return x.astype(dtype)

    def backward(self, g):
        return (g.astype(self.in_dtype),)


def _cast(x, dtype, copy):
    """``x`` in ``dtype``: differentiable between float32 and float64; ``x`` itself when the dtype
    already matches and ``copy`` is false."""
    dtype = _dtype_of(dtype)
    if dtype == x.dtype and not copy:
        return x
    if x.requires_grad and is_grad_enabled() and dtype in FLOAT_DTYPES:
        return Cast.apply(x, dtype=dtype)
    return Tensor(x.data.astype(dtype))


def _dtype_of(dtype):
    """A NumPy dtype from what ``to`` accepts: a NumPy dtype or type, its name, or a Tensor."""
    if isinstance(dtype, Tensor):
        return dtype.dtype
    try:
        return np.dtype(dtype)
    except TypeError:
        raise TypeError(f"to: dtype must be a NumPy dtype (np.float32), its name ('float64') or a Tensor, "
                        f"got {dtype!r}") from None


@tensor_method("to")
def to(x, dtype=None, *, copy=False):
    """``x`` in ``dtype`` (a NumPy dtype, its name, or a Tensor whose dtype to take), as ``torch.Tensor.to``:
    ``x`` itself if it already has that dtype (unless ``copy``); differentiable between float32 and float64.
    ``"cpu"`` is accepted and changes nothing (minimix runs on the CPU only)."""
    if isinstance(dtype, str) and dtype == "cpu":
        return Tensor(x.data.copy()) if copy else x
    if dtype is None:
        raise ValueError("to: give a dtype, e.g. x.to(np.float64)")
    return _cast(x, dtype, copy)


@tensor_method("float")
def float(x):
    """``x.to(np.float32)`` (``torch.Tensor.float``)."""
    return _cast(x, np.float32, copy=False)


@tensor_method("double")
def double(x):
    """``x.to(np.float64)`` (``torch.Tensor.double``)."""
    return _cast(x, np.float64, copy=False)


@tensor_method("astype")
def astype(x, dtype):
    """NumPy's spelling of a cast, always a new tensor: differentiable between float32 and float64
    (the gradient flows back to ``x`` in its own dtype), plain data for other dtypes."""
    return _cast(x, dtype, copy=True)
