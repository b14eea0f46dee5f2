"""minimix: a NumPy-from-scratch deep-learning library that teaches MixConv and MixNet.

    import minimix as mm
    x = mm.Tensor([[1.0, 2.0]], requires_grad=True)
    (x * x).sum().backward()
    x.grad  # -> [[2., 4.]]

Heavy pieces (Numba kernels, matplotlib) load lazily, so ``import minimix`` is quick, and
importing any part of minimix changes no process-wide state (threads, allocator): that is one
explicit call, ``minimix.perf.configure()``.

Two paths run the same ops: the reference NumPy code (what the source reads as) and fast
implementations registered in ``minimix.backends`` (the default where they apply)::

    with mm.use_backend("reference"):   # or MINIMIX_BACKEND=reference
        ...
    mm.backends.print_table()           # every fast implementation and what it replaces
"""
from . import backends, ops
from .backends import use_backend
from .gradcheck import GradcheckError, gradcheck
from .ops import (abs, amax, amin, argmax, argmin, cat, clamp, clip, concatenate, flatten, gather, max, maximum,
                  min, minimum, split, squeeze, stack, std, unsqueeze, var, where)
from .random import manual_seed
from .serialization import load, save
from .tensor import Function, Tensor, is_grad_enabled, no_grad

__version__ = "0.1.0"


def tensor(data, requires_grad=False, dtype=None) -> Tensor:
    """Build a Tensor (``torch.tensor`` spelling)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def zeros(*shape, dtype="float32", requires_grad=False) -> Tensor:
    """A tensor of zeros (``torch.zeros``): ``zeros(2, 3)`` or ``zeros((2, 3))``; ``dtype`` a NumPy dtype."""
    import numpy as np

    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Tensor(np.zeros(shape, dtype=dtype), requires_grad=requires_grad)


def ones(*shape, dtype="float32", requires_grad=False) -> Tensor:
    """A tensor of ones (``torch.ones``): ``ones(2, 3)`` or ``ones((2, 3))``; ``dtype`` a NumPy dtype."""
    import numpy as np

    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Tensor(np.ones(shape, dtype=dtype), requires_grad=requires_grad)


def randn(*shape, dtype="float32", requires_grad=False) -> Tensor:
    """Standard-normal tensor drawn from minimix's seeded generator."""
    from .random import generator

    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Tensor(generator().standard_normal(shape).astype(dtype), requires_grad=requires_grad)


def __getattr__(name):  # lazy subpackages: minimix.nn, minimix.optim, ...
    import importlib

    if name in {"nn", "optim", "models", "data", "viz", "kernels", "fast", "perf", "lessons", "train", "training", "cli"}:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'minimix' has no attribute {name!r}")


__all__ = [
    "Tensor", "Function", "no_grad", "is_grad_enabled", "gradcheck", "GradcheckError",
    "manual_seed", "use_backend", "backends", "tensor", "zeros", "ones", "randn", "cat", "concatenate", "split",
    "save", "load",
    "abs", "clamp", "clip", "maximum", "minimum", "where", "argmax", "argmin", "max", "min", "amax", "amin",
    "unsqueeze", "squeeze", "stack", "flatten", "gather", "var", "std",
]
