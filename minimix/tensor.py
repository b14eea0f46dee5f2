"""The autograd engine: ``Tensor``, ``Function`` and reverse-mode ``backward``.

A ``Tensor`` wraps a NumPy array. When an op runs on tensors that require
gradients, it records a ``Function`` node on its output (``out._ctx``) that
remembers the parent tensors and whatever the backward pass needs. The graph
is therefore a DAG that points from outputs back to inputs.

``backward`` walks that DAG once in reverse topological order (computed with
an explicit stack, so a 100,000-op chain needs no recursion) and applies the
chain rule: every node receives dL/d(out), and its ``Function.backward``
returns dL/d(input) for each parent. Leaf tensors accumulate into ``.grad``.
"""
from __future__ import annotations

import contextlib
import numbers
import time

import numpy as np

_GRAD_ENABLED = True
_PROFILE = None  # while profile_ops() runs: {label: [calls, forward seconds, backward seconds]}


class no_grad:
    """Context manager (and decorator) that disables graph recording.

    Inside ``with minimix.no_grad():`` ops compute values only: outputs have
    ``requires_grad=False`` and no ``Function`` node, which saves memory in
    evaluation loops.
    """

    def __enter__(self):
        global _GRAD_ENABLED
        self._previous = _GRAD_ENABLED
        _GRAD_ENABLED = False
        return self

    def __exit__(self, *exc):
        global _GRAD_ENABLED
        _GRAD_ENABLED = self._previous
        return False

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with no_grad():
                return fn(*args, **kwargs)

        return wrapper


def is_grad_enabled() -> bool:
    return _GRAD_ENABLED


@contextlib.contextmanager
def profile_ops():
    """Time every op's forward and backward inside the block (a teaching profiler).

    Yields a dict filled as ops run: ``{label: [calls, forward_seconds, backward_seconds]}``
    with ``label = fn.profile_label()`` (the Function's class name unless it says more, e.g.
    "Conv2d 1x1"). Outside the block the engine only checks one global per op.
    """
    global _PROFILE
    previous, _PROFILE = _PROFILE, {}
    try:
        yield _PROFILE
    finally:
        _PROFILE = previous


def _record(fn, slot, seconds):
    """Add one forward (slot 1) or backward (slot 2) time of ``fn`` to the running profile."""
    entry = _PROFILE.setdefault(fn.__dict__.setdefault("_label", fn.profile_label()), [0, 0.0, 0.0])
    entry[0] += slot == 1
    entry[slot] += seconds


def _to_array(data, dtype=None) -> np.ndarray:
    """NumPy arrays keep their dtype; Python scalars and lists become float32."""
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, np.ndarray):
        return data if dtype is None else data.astype(dtype, copy=False)
    if isinstance(data, np.generic):
        return np.asarray(data, dtype=dtype)
    array = np.asarray(data)
    if dtype is not None:
        return array.astype(dtype, copy=False)
    if array.dtype.kind in "fc" or array.dtype == object:
        return array.astype(np.float32)
    if array.dtype.kind in "iub" and isinstance(data, (numbers.Number, list, tuple)):
        return array.astype(np.float32)
    return array


class Tensor:
    """An n-dimensional array with an optional gradient.

    ``Tensor(np.ones((2, 3)))`` keeps float64; ``Tensor([1, 2])`` and
    ``Tensor(3.0)`` are float32 (as in PyTorch). Only floating tensors can
    require gradients.
    """

    __slots__ = ("data", "grad", "requires_grad", "_ctx", "name", "__weakref__")
    # NumPy ufuncs must not swallow a Tensor (they would drop the graph): with this,
    # ``ndarray * tensor`` calls ``Tensor.__rmul__`` and ``np.exp(tensor)`` is a TypeError.
    __array_ufunc__ = None

    def __init__(self, data, requires_grad: bool = False, dtype=None, name: str | None = None):
        self.data = _to_array(data, dtype)
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(
                f"only floating-point tensors can require gradients, got dtype {self.data.dtype}"
            )
        self.grad: np.ndarray | None = None
        self.requires_grad = bool(requires_grad)
        self._ctx: Function | None = None
        self.name = name

    # -- NumPy-like attributes -------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    def __len__(self) -> int:
        return len(self.data)

    def numpy(self) -> np.ndarray:
        """The underlying array (shared, not copied)."""
        return self.data

    def __array__(self, dtype=None, copy=None):  # np.asarray(tensor) gives the values
        if copy:
            return np.array(self.data, dtype=dtype, copy=True)
        return self.data if dtype is None else self.data.astype(dtype, copy=False)

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.item()

    def detach(self) -> "Tensor":
        """A tensor sharing the same data but cut from the graph."""
        return Tensor(self.data)

    def astype(self, dtype) -> "Tensor":
        """A copy in another dtype (not differentiable: use it on inputs)."""
        return Tensor(self.data.astype(dtype), requires_grad=self.requires_grad)

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    def zero_grad(self):
        self.grad = None

    def __repr__(self):
        extra = ", requires_grad=True" if self.requires_grad else ""
        if self._ctx is not None:
            extra = f", grad_fn={type(self._ctx).__name__}"
        body = np.array2string(self.data, separator=", ", precision=4, threshold=20)
        return f"Tensor({body}, dtype={self.dtype}{extra})"

    # -- reverse mode ------------------------------------------------------------
    def backward(self, grad=None, retain_graph: bool = False):
        """Accumulate d(self)/d(leaf) * grad into every leaf's ``.grad``.

        ``grad`` is dL/d(self); it may be omitted only for a one-element
        tensor (it is then 1). Unless ``retain_graph`` is true, the saved
        arrays of the graph are freed afterwards, so a second ``backward``
        through the same graph raises an error (as in PyTorch).
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward: this tensor does not require grad and has no graph "
                "(was it created under minimix.no_grad(), detached, or from inputs "
                "with requires_grad=False?)"
            )
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward: grad can be implicit only for a one-element output, "
                    f"but this tensor has shape {self.shape}; pass grad= of that shape"
                )
            grad = np.ones_like(self.data)
        else:
            grad = _to_array(grad, self.dtype)
            if grad.shape != self.shape:
                raise ValueError(
                    f"backward: grad has shape {grad.shape}, expected the tensor's shape {self.shape}"
                )

        order = _topological_order(self)
        grads = {id(self): grad}
        for node in reversed(order):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            fn = node._ctx
            if fn is None:  # a leaf: accumulate
                if node.grad is None:  # copy: g may be shared with another input's gradient
                    node.grad = np.array(g, dtype=node.dtype, copy=True)
                else:  # gradients add up across backward calls until zero_grad()
                    node.grad = np.add(node.grad, g, dtype=node.dtype)
                continue
            if fn.freed:
                raise RuntimeError(
                    f"backward: trying to backward through {type(fn).__name__} a second time; "
                    "its saved values were freed. Pass retain_graph=True to the first backward."
                )
            if _PROFILE is None:
                parent_grads = fn.backward(g)
            else:
                start = time.perf_counter()
                parent_grads = fn.backward(g)
                _record(fn, 2, time.perf_counter() - start)
            if not isinstance(parent_grads, tuple):
                parent_grads = (parent_grads,)
            parents = fn.parents
            if not retain_graph:
                fn.release()
            for parent, pg in zip(parents, parent_grads):
                if pg is None or not parent.requires_grad:
                    continue
                if pg.shape != parent.shape:
                    pg = unbroadcast(pg, parent.shape)
                key = id(parent)
                if key in grads:
                    grads[key] = grads[key] + pg
                else:
                    grads[key] = pg


def _topological_order(root: Tensor) -> list:
    """Tensors that ``root`` depends on, each after all of its parents (iterative DFS)."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node._ctx is not None:
            for parent in node._ctx.parents:
                if parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    return order


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum ``grad`` over the axes that broadcasting added or stretched, to get back ``shape``."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad.reshape(shape)


class Function:
    """One differentiable op: a ``forward`` on arrays and its ``backward``.

    Subclasses implement::

        def forward(self, *arrays, **params) -> np.ndarray
        def backward(self, grad_out) -> tuple of np.ndarray (or None), one per input

    and save what backward needs on ``self`` during forward. ``apply`` wraps
    inputs, runs forward, and records the node only when a gradient is needed.
    ``backward`` may return gradients in the broadcast shape; the engine sums
    them back to each input's shape. A ``ValueError`` raised in ``forward``
    (yours, or NumPy's) reaches the user prefixed with the op's class name and
    suffixed with every input's shape, so write just what is wrong.
    """

    __slots__ = ("parents", "freed", "__dict__")

    def __init__(self, parents):
        self.parents = parents
        self.freed = False

    @classmethod
    def apply(cls, *inputs, **params) -> Tensor:
        tensors = _lift_inputs(inputs)
        fn = cls(tensors)
        start = time.perf_counter() if _PROFILE is not None else None
        try:
            data = fn.forward(*[t.data for t in tensors], **params)
        except ValueError as error:  # e.g. NumPy's broadcasting error: say which op and which shapes
            raise ValueError(_describe_failure(cls.__name__, tensors, error)) from error
        if start is not None:
            _record(fn, 1, time.perf_counter() - start)
        out = Tensor(data)
        if _GRAD_ENABLED and any(t.requires_grad for t in tensors):
            out.requires_grad = True
            out._ctx = fn
        return out

    def forward(self, *arrays, **params):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad_out):  # pragma: no cover - abstract
        raise NotImplementedError

    def profile_label(self) -> str:
        """How ``profile_ops`` names this op (called after forward; override to say more)."""
        return type(self).__name__

    def release(self):
        """Drop saved arrays and the links to the inputs once backward has used them.

        Cutting ``parents`` matters as much as the saved arrays: while the loss tensor
        lives (say until the next step's ``loss = ...``), every tensor it links back to
        keeps its ``.data``, i.e. all of the step's activations: a second copy of them would
        stay alive during the next forward pass, slowing it and doubling the memory.
        """
        self.__dict__.clear()
        self.parents = ()
        self.freed = True


def _describe_failure(op: str, tensors, error: ValueError) -> str:
    """The message for an op whose forward rejected its inputs: op name, every input shape, the cause."""
    shapes = ", ".join(str(t.shape) for t in tensors)
    if "broadcast" in str(error):
        return (
            f"{op}: input shapes {shapes} cannot be broadcast together (aligned from the last axis, "
            f"each pair of sizes must be equal or one of them 1); NumPy said: {error}"
        )
    return f"{op}: {error} (input shape{'s' if len(tensors) > 1 else ''} {shapes})"


def _lift_inputs(inputs) -> tuple:
    """Wrap non-Tensor inputs; Python scalars take the dtype of the tensors beside them.

    This is why ``x * 2`` keeps a float32 ``x`` in float32.
    """
    like = None
    for x in inputs:
        if isinstance(x, Tensor):
            like = x.dtype
            break
    out = []
    for x in inputs:
        if isinstance(x, Tensor):
            out.append(x)
        elif isinstance(x, (numbers.Number, np.generic)) and like is not None and like.kind == "f":
            out.append(Tensor(np.asarray(x, dtype=like)))
        else:
            out.append(Tensor(x))
    return tuple(out)


def tensor_method(*names):
    """Decorator: also expose an op as ``Tensor.<name>`` for each name given.

    Keeps each op in one place: the op's module defines it and registers its
    method spellings (``add`` and ``__add__``...).
    """

    def register(fn):
        for name in names:
            setattr(Tensor, name, fn)
        return fn

    return register
