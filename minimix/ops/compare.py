"""Ops that choose between values: ``maximum``/``minimum``, ``clamp`` (``clip``) and ``where``.

Each output element is one of its inputs' elements, so the gradient is routed, not scaled:
it goes to the input that was chosen. Ties follow PyTorch:

    maximum(a, b)         dL/da = g where a > b, g/2 where a == b, 0 where a < b (dL/db likewise)
    clamp(x, lo, hi)      dL/dx = g where lo <= x <= hi; dL/dlo = g where x < lo < hi;
                          dL/dhi = g where x > hi or lo > hi (then every output is hi)
    where(c, x, y)        dL/dx = g where c, dL/dy = g where not c
"""
import numpy as np

from ..tensor import Function, Tensor, tensor_method


class Maximum(Function):
    """Element-wise max(a, b) with broadcasting (``largest=False``: min); equal elements share the gradient.

    Where a or b is NaN (the output is NaN) neither loses, so both get the gradient, as in PyTorch."""

    def forward(self, a, b, largest=True):
        self.tie = a == b
        self.a_loses, self.b_loses = (a < b, a > b) if largest else (a > b, a < b)
        return np.maximum(a, b) if largest else np.minimum(a, b)

    def backward(self, g):
        shared = np.where(self.tie, g * g.dtype.type(0.5), g)
        ga = shared * ~self.a_loses if self.parents[0].requires_grad else None
        gb = shared * ~self.b_loses if self.parents[1].requires_grad else None
        return ga, gb


class Clamp(Function):
    """min(max(x, lo), hi) element-wise, with broadcasting; a missing bound is -inf or +inf."""

    def forward(self, x, lo, hi):
        self.to_x = (x >= lo) & (x <= hi)
        self.to_lo = (x < lo) & (lo < hi)
        self.to_hi = (x > hi) | (lo > hi)
        return np.minimum(np.maximum(x, lo), hi)

    def backward(self, g):
        return tuple(g * mask if parent.requires_grad else None
                     for mask, parent in zip((self.to_x, self.to_lo, self.to_hi), self.parents))


class Where(Function):
    """x where condition else y, with broadcasting (``condition`` is a bool array, not an input)."""

    def forward(self, x, y, condition):
        self.condition = condition
        return np.where(condition, x, y)

    def backward(self, g):
        gx = np.where(self.condition, g, 0) if self.parents[0].requires_grad else None
        gy = np.where(self.condition, 0, g) if self.parents[1].requires_grad else None
        return gx, gy


@tensor_method("maximum")
def maximum(input, other):
    """Element-wise maximum of two tensors (broadcasting), as ``torch.maximum``; NaN propagates."""
    return Maximum.apply(input, other, largest=True)


@tensor_method("minimum")
def minimum(input, other):
    """Element-wise minimum of two tensors (broadcasting), as ``torch.minimum``; NaN propagates."""
    return Maximum.apply(input, other, largest=False)


@tensor_method("clamp", "clip")
def clamp(input, min=None, max=None):
    """Limit every element to [min, max], as ``torch.clamp`` (alias ``clip``).

    ``min`` and ``max`` are numbers or tensors (broadcast against ``input``); either may be None,
    not both. If min > max, every element becomes max, as in PyTorch.
    """
    if min is None and max is None:
        raise ValueError("clamp: give min or max (or both); both are None")
    lo = -np.inf if min is None else min
    hi = np.inf if max is None else max
    return Clamp.apply(input, lo, hi)


clip = clamp


def where(condition, input, other):
    """``input`` where ``condition`` is true, else ``other``, element-wise with broadcasting
    (``torch.where(condition, input, other)``). ``condition`` is a bool tensor or array; ``input``
    and ``other`` are tensors or numbers. Only the three-argument form exists here."""
    cond = condition.data if isinstance(condition, Tensor) else np.asarray(condition)
    if cond.dtype != np.bool_:
        raise TypeError(f"where: condition must be a bool tensor or array, got dtype {cond.dtype} "
                        f"(compare first, e.g. x > 0)")
    return Where.apply(input, other, condition=cond)


Tensor.where = lambda self, condition, other: where(condition, self, other)
Tensor.where.__doc__ = "``x.where(condition, y)``: ``where(condition, x, y)``, as ``torch.Tensor.where``."


def _comparison(name, op):
    def compare(self, other):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor(op(self.data, other))

    compare.__name__ = name
    compare.__doc__ = (f"Element-wise ``{name}`` as a bool tensor (no gradient), broadcasting. ``==`` is not "
                       f"element-wise on minimix tensors (it is identity, so tensors can be dict keys).")
    return compare


for _name, _op in (("gt", np.greater), ("lt", np.less), ("ge", np.greater_equal), ("le", np.less_equal)):
    setattr(Tensor, _name, _comparison(_name, _op))
    setattr(Tensor, f"__{_name}__", getattr(Tensor, _name))
