"""The autograd engine: ``Tensor``, ``Function`` and reverse-mode ``backward``.

A ``Tensor`` wraps a NumPy array. When an op runs on tensors that require
gradients, it records a ``Function`` node on its output (``out._ctx``) that
remembers the parent tensors and whatever the backward pass needs. The graph
is therefore a DAG that points from outputs back to inputs.

``backward`` walks that DAG once in reverse topological order (computed with
an explicit stack, so a 100,000-op chain needs no recursion) and applies the
chain rule: every node receives dL/d(out), and its ``Function.backward``
returns dL/d(input) for each parent. Leaf tensors accumulate into ``.grad``.

Dtypes: what minimix supports, and where it says so
----------------------------------------------------
minimix computes in **float32 and float64**: every op, kernel and parity test against
PyTorch is written for those two, and only they can require gradients. A float64
tensor stays float64 end to end (gradcheck needs it); float32 is the training dtype.

* Python data gets ``torch.tensor``'s dtypes: floats (and lists mixing ints and floats) become
  float32, ints int64, bools bool; NumPy arrays and NumPy scalars keep theirs.
* A ``Tensor`` holds numbers: float16, float32, float64, signed and unsigned integers,
  bools. Integers and bools are data (class labels, masks, indices); float16 is storage
  only (e.g. a dataset kept small), to be converted with ``.astype(np.float32)``.
  Strings, Python objects, complex numbers, dates and records are refused with a
  TypeError at creation (``Tensor("abc")`` used to make a string tensor); an array in
  non-native byte order is converted to native order.
* Every op (``Function.apply``) refuses a floating input that is not float32 or float64
  (float16, longdouble) with a TypeError naming the op and the input: NumPy would compute
  some of them in another precision, or silently return another dtype (batch norm of
  float16 came back float32).
* Element-wise ops and ``matmul`` follow NumPy's type promotion, as PyTorch's element-wise
  ops do (float32 with float64 gives float64; a Python scalar keeps the tensor's dtype).
  Layers with parameters (``linear``, ``conv2d``, ``mixed_conv2d``, ``batch_norm``,
  squeeze-excite's ``excite``) need x and their parameters in ONE dtype, as in PyTorch:
  mixing is a TypeError (``check_float_dtypes``), not a silent float64 (or float32) result.
"""
from __future__ import annotations

import contextlib
import numbers
import time

import numpy as np

_GRAD_ENABLED = True
_PROFILE = None  # while profile_ops() runs: {label: [calls, forward seconds, backward seconds]}
_PROFILE_BY_SHAPE = False  # profile_ops(by_shape=True): labels also name the op's first input shape


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
    """Whether ops record the graph now (False inside ``no_grad``), as ``torch.is_grad_enabled``."""
    return _GRAD_ENABLED


@contextlib.contextmanager
def profile_ops(by_shape: bool = False):
    """Time every op's forward and backward inside the block (a teaching profiler).

    Yields a dict filled as ops run: ``{label: [calls, forward_seconds, backward_seconds]}``
    with ``label = fn.profile_label()`` (the Function's class name unless it says more, e.g.
    "Conv2d 1x1"). With ``by_shape=True`` the label also names the op's first input shape,
    e.g. "Conv2d 1x1 (128, 24, 16, 16)": one row per layer shape instead of per kind of op.
    Outside the block the engine only checks one global per op.
    """
    global _PROFILE, _PROFILE_BY_SHAPE
    previous = _PROFILE, _PROFILE_BY_SHAPE
    _PROFILE, _PROFILE_BY_SHAPE = {}, bool(by_shape)
    try:
        yield _PROFILE
    finally:
        _PROFILE, _PROFILE_BY_SHAPE = previous


def _profile_label(fn) -> str:
    """``fn``'s row in the running profile: its ``profile_label()``, and with ``by_shape`` its first input's shape."""
    label = fn.profile_label()
    if _PROFILE_BY_SHAPE and fn.parents:
        label += f" {tuple(fn.parents[0].shape)}"
    return label


def _record(fn, slot, seconds):
    """Add one forward (slot 1) or backward (slot 2) time of ``fn`` to the running profile."""
    label = fn.__dict__.get("_label")
    if label is None:  # named once per node (its forward), not again for its backward
        label = fn.__dict__["_label"] = _profile_label(fn)
    entry = _PROFILE.setdefault(label, [0, 0.0, 0.0])
    entry[0] += slot == 1
    entry[slot] += seconds


FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))  # the dtypes minimix computes in
_F32, _F64 = FLOAT_DTYPES
_SUPPORTED = "float32 or float64 (float16 as storage only), integers or bools"


def _to_array(data, dtype=None) -> np.ndarray:
    """The array a Tensor holds, with PyTorch's dtype rules for Python data: NumPy arrays and NumPy
    scalars keep their dtype; Python floats (and lists mixing ints and floats, or empty lists) become
    float32, torch's default dtype; Python ints become int64 and Python bools bool. Only numbers (module
    docstring): anything else is a TypeError."""
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, np.ndarray):
        array = data if dtype is None else data.astype(dtype, copy=False)
    elif isinstance(data, np.generic):
        array = np.asarray(data, dtype=dtype)
    else:
        array = np.asarray(data)
        if dtype is not None:
            array = array.astype(dtype, copy=False)
        elif array.dtype.kind == "f":
            array = array.astype(np.float32)
        elif array.dtype.kind == "i" and isinstance(data, (numbers.Number, list, tuple)):
            array = array.astype(np.int64)  # NumPy's default int is int32 on some platforms
    return _numeric(array, data)


def _numeric(array, data):
    """``array`` if its dtype is one a Tensor holds (module docstring), in native byte order; else a TypeError."""
    dt = array.dtype
    if dt is _F32 or dt is _F64:  # the common case, checked first: every op's output passes here
        return array
    if dt.kind not in "fiub" or dt.kind == "f" and dt.itemsize > 8:
        what = type(data).__name__ if not isinstance(data, np.ndarray) else "array"
        raise TypeError(f"Tensor: cannot hold {what} of dtype {dt} ({_KINDS.get(dt.kind, 'not numbers')}); a "
                        f"Tensor holds {_SUPPORTED}: convert the data first, e.g. np.asarray(data, np.float32)")
    if not dt.isnative:
        return array.astype(dt.newbyteorder("="))
    return array


_KINDS = {"U": "text", "S": "bytes", "O": "Python objects", "c": "complex numbers", "M": "dates",
          "m": "time deltas", "V": "records or raw bytes", "f": "extended precision floats"}


def check_float_dtypes(op, **arrays):
    """For ops whose inputs must share one float dtype (x and a layer's parameters, as in PyTorch):
    a TypeError naming ``op`` unless every array given (None skipped) is float32 or float64, all alike.
    ``check_float_dtypes("conv2d", x=x, weight=weight, bias=bias)``."""
    named = [(name, a.dtype) for name, a in arrays.items() if a is not None]
    for name, dt in named:
        if dt not in FLOAT_DTYPES:
            raise TypeError(f"{op}: {name} has dtype {dt}, but minimix computes in float32 or float64 "
                            f"(convert it with .astype(np.float32))")
    first, dt0 = named[0]
    for name, dt in named[1:]:
        if dt != dt0:
            raise TypeError(f"{op}: {first} has dtype {dt0} but {name} has {dt}: they must share one dtype "
                            f"(float32 or float64), as in PyTorch; convert one with .astype")


class Tensor:
    """An n-dimensional array with an optional gradient.

    ``Tensor(np.ones((2, 3)))`` keeps float64; ``Tensor([1.0, 2.0])`` and
    ``Tensor(3.0)`` are float32, ``Tensor([1, 2])`` is int64 and ``Tensor([True])``
    is bool, as in PyTorch. Only float32 and float64 tensors can require gradients;
    a Tensor holds numbers only (dtypes: module docstring).

    Intended differences from ``torch.Tensor``: ``.data`` and ``.grad`` are NumPy arrays,
    a NumPy array passed in keeps its dtype (float64 stays float64), and arithmetic on integer
    tensors follows NumPy's promotion (``Tensor([1, 2]) * 0.5`` and ``Tensor([1, 2]) / 2`` are
    float64, float32 in PyTorch): convert with ``.float()`` first.
    """

    __slots__ = ("data", "grad", "requires_grad", "_ctx", "name", "__weakref__")
    # NumPy ufuncs must not swallow a Tensor (they would drop the graph): with this,
    # ``ndarray * tensor`` calls ``Tensor.__rmul__`` and ``np.exp(tensor)`` is a TypeError.
    __array_ufunc__ = None

    def __init__(self, data, requires_grad: bool = False, dtype=None, name: str | None = None):
        self.data = _to_array(data, dtype)
        if requires_grad and self.data.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"only floating-point tensors of dtype float32 or float64 can require gradients (minimix "
                f"computes in those), got dtype {self.data.dtype}"
            )
        self.grad: np.ndarray | None = None
        self.requires_grad = bool(requires_grad)
        self._ctx: Function | None = None
        self.name = name

    # -- NumPy-like attributes -------------------------------------------------
    @property
    def shape(self) -> tuple:
        """The shape, a tuple (also ``size()``)."""
        return self.data.shape

    @property
    def dtype(self):
        """The NumPy dtype of ``data``."""
        return self.data.dtype

    @property
    def ndim(self) -> int:
        """The number of dimensions (``torch.Tensor.dim()``)."""
        return self.data.ndim

    def size(self, dim=None):
        """The shape as a tuple (``torch.Tensor.size``), or the length of axis ``dim``.

        Unlike NumPy's ``ndarray.size`` this is a method returning the shape; the number
        of elements is ``numel()``.
        """
        if dim is None:
            return self.data.shape
        if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
            raise TypeError(f"size: dim must be an int, got {type(dim).__name__}")
        if not -self.data.ndim <= dim < self.data.ndim:
            raise ValueError(f"size: dim {dim} is out of range for a tensor of shape {self.shape} "
                             f"({self.data.ndim} dimensions)")
        return self.data.shape[dim]

    def numel(self) -> int:
        """The number of elements (the product of the shape; 1 for a 0-d tensor)."""
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
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.item()

    def detach(self) -> "Tensor":
        """A tensor sharing the same data but cut from the graph."""
        return Tensor(self.data)

    @property
    def is_leaf(self) -> bool:
        """True for a tensor made by the user (no ``Function`` made it); leaves accumulate ``.grad``."""
        return self._ctx is None

    def zero_grad(self):
        """Forget the accumulated gradient (``.grad = None``)."""
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
            if not isinstance(parent_grads, (tuple, list)):
                parent_grads = (parent_grads,)
            parents = fn.parents
            if len(parent_grads) != len(parents) and not (  # extra Nones are fine, as in PyTorch
                    len(parent_grads) > len(parents) and all(pg is None for pg in parent_grads[len(parents):])):
                raise RuntimeError(
                    f"backward: {type(fn).__name__}.backward returned {len(parent_grads)} gradient"
                    f"{'s' if len(parent_grads) != 1 else ''}, but {type(fn).__name__} has {len(parents)} "
                    f"input{'s' if len(parents) != 1 else ''}: return one per input, in the order of "
                    f"forward's arguments (None for an input that needs no gradient; extra ones may only be None)"
                )
            if not retain_graph:
                fn.release()
            for i, (parent, pg) in enumerate(zip(parents, parent_grads)):
                if pg is None or not parent.requires_grad:
                    continue
                if not isinstance(pg, np.ndarray):
                    if not isinstance(pg, np.generic):  # a NumPy scalar (say g.sum()) is fine as a 0-d array
                        raise TypeError(
                            f"backward: {type(fn).__name__}.backward returned a {type(pg).__name__} for input {i}; "
                            f"gradients are NumPy arrays (or None)"
                        )
                    pg = np.asarray(pg)
                if pg.shape != parent.shape:
                    if not _reducible(pg.shape, parent.shape):
                        raise RuntimeError(
                            f"backward: {type(fn).__name__}.backward returned a gradient of shape {pg.shape} for "
                            f"input {i}, which has shape {parent.shape}: a gradient must have its input's shape "
                            f"(or a shape that input broadcasts to, which is summed back to it)"
                        )
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


def _reducible(grad_shape: tuple, shape: tuple) -> bool:
    """Whether an array of ``shape`` broadcasts to ``grad_shape``, i.e. ``unbroadcast`` can sum back to it."""
    if len(grad_shape) < len(shape):
        return False
    return all(n == 1 or n == m for n, m in zip(shape[::-1], grad_shape[::-1]))


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
        """Run the op: ``forward`` on the inputs' arrays (non-Tensor inputs are wrapped; keyword arguments go
        to ``forward`` as they are), and record the node when any input requires a gradient."""
        tensors = _lift_inputs(inputs)
        for i, t in enumerate(tensors):
            dt = t.data.dtype
            if dt is not _F32 and dt is not _F64 and dt.kind == "f":
                raise TypeError(f"{cls.__name__}: input {i} has dtype {dt}, but minimix computes in float32 or "
                                f"float64 (convert it with .astype(np.float32))")
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
        """The output array from the input arrays; save on ``self`` what ``backward`` needs."""
        raise NotImplementedError

    def backward(self, grad_out):  # pragma: no cover - abstract
        """dL/d(input) for each input, in forward's order (None where not needed), from dL/d(output)."""
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
