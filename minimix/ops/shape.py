"""Ops that move elements without changing them: reshape, permute, slicing,
concatenation, splitting and padding. Their backward moves the gradient back."""
import numpy as np

from ..tensor import Function, Tensor, tensor_method


class Reshape(Function):
    def forward(self, x, shape):
        self.in_shape = x.shape
        return x.reshape(shape)

    def backward(self, g):
        return (g.reshape(self.in_shape),)


class Permute(Function):
    """Reorder axes; the backward applies the inverse permutation."""

    def forward(self, x, axes):
        n = x.ndim
        if len(axes) != n or not all(-n <= a < n for a in axes) or sorted(a % n for a in axes) != list(range(n)):
            raise ValueError(f"axes {tuple(axes)} are not a permutation of the {n} dimensions")
        self.inverse = np.argsort([a % n for a in axes])
        return np.transpose(x, axes)

    def backward(self, g):
        return (np.transpose(g, self.inverse),)


class GetItem(Function):
    """x[index]; the backward scatters the gradient into zeros (adding where indices repeat)."""

    def forward(self, x, index):
        self.index, self.shape = index, x.shape
        return x[index]

    def backward(self, g):
        out = np.zeros(self.shape, dtype=g.dtype)
        if _is_basic_index(self.index):  # slices never repeat an element: plain assignment
            out[self.index] = g
        else:
            np.add.at(out, self.index, g)
        return (out,)


def _is_basic_index(index):
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (int, np.integer, slice)) or p is None or p is Ellipsis for p in parts)


class Cat(Function):
    """Concatenate along ``axis``; the backward cuts the gradient back into pieces."""

    def forward(self, *xs, axis=0):
        self.axis = axis
        self.bounds = np.cumsum([x.shape[axis] for x in xs])[:-1]
        return np.concatenate(xs, axis=axis)

    def backward(self, g):
        return tuple(np.split(g, self.bounds, axis=self.axis))


class Pad(Function):
    """Constant padding, ``pad_width`` as in ``np.pad``: ((before, after), ...) per axis."""

    def forward(self, x, pad_width, value=0.0):
        self.crop = tuple(slice(lo, lo + n) for (lo, _), n in zip(pad_width, x.shape))
        return np.pad(x, pad_width, constant_values=value)

    def backward(self, g):
        return (g[self.crop],)


@tensor_method("reshape", "view")
def reshape(x, *shape):
    """``x`` with a new shape of the same number of elements (one size may be -1), as ``torch.reshape``;
    ``view`` is the same here (minimix does not track views)."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return Reshape.apply(x, shape=shape)


@tensor_method("permute")
def permute(x, *axes):
    """``x`` with its axes reordered (``x.permute(0, 2, 3, 1)``, or a tuple), as ``torch.permute``."""
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    return Permute.apply(x, axes=axes)


@tensor_method("transpose")
def transpose(x, dim0=None, dim1=None):
    """Swap two axes (PyTorch style); with no axes given, reverse them all (NumPy's .T)."""
    axes = list(range(x.ndim))
    if dim0 is None and dim1 is None:
        axes.reverse()
    else:
        if dim0 is None or dim1 is None:
            raise ValueError(f"transpose: give both dim0 and dim1 (or neither), got {dim0} and {dim1}")
        d0, d1 = _check_axis("transpose", dim0, x.ndim), _check_axis("transpose", dim1, x.ndim)
        axes[d0], axes[d1] = axes[d1], axes[d0]
    return Permute.apply(x, axes=tuple(axes))


def _all_axes_reversed(self):
    """All axes reversed (NumPy's ``.T``; ``transpose()`` with no axes)."""
    return transpose(self)


Tensor.T = property(_all_axes_reversed)


@tensor_method("flatten")
def flatten(x, start_dim=0, end_dim=-1):
    """Merge axes ``start_dim..end_dim`` (inclusive) into one, as ``torch.flatten``."""
    if x.ndim == 0:
        return Reshape.apply(x, shape=(1,))
    start, end = _check_axis("flatten", start_dim, x.ndim), _check_axis("flatten", end_dim, x.ndim)
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {x.shape}")
    merged = int(np.prod(x.shape[start:end + 1]))
    return Reshape.apply(x, shape=x.shape[:start] + (merged,) + x.shape[end + 1:])


def _check_axis(op, axis, ndim):
    """``axis`` as a non-negative index, or a ValueError naming the op."""
    if not -ndim <= axis < ndim:
        raise ValueError(f"{op}: axis {axis} is out of range for a tensor with {ndim} dimensions")
    return axis % ndim


def _getitem(x, index):
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return GetItem.apply(x, index=index)


Tensor.__getitem__ = _getitem


def cat(tensors, axis=0, *, dim=None):
    """Concatenate along an existing axis (``torch.cat``)."""
    if dim is not None:
        axis = dim
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: needs at least one tensor")
    ref = tensors[0].shape
    axis = _check_axis("cat", axis, len(ref))
    for i, t in enumerate(tensors):
        if t.ndim != len(ref) or any(a != b for j, (a, b) in enumerate(zip(t.shape, ref)) if j != axis):
            raise ValueError(
                f"cat: tensor {i} has shape {t.shape}, but all tensors must match {ref} "
                f"except along axis {axis}"
            )
    return Cat.apply(*tensors, axis=axis)


concatenate = cat


@tensor_method("split")
def split(x, split_size_or_sections, axis=0, *, dim=None):
    """Split along ``axis`` into pieces of the given size(s), as ``torch.split``.

    An int gives equal pieces (the last may be smaller); a list gives each size.
    Each piece is a differentiable slice of ``x``.
    """
    if dim is not None:
        axis = dim
    axis = _check_axis("split", axis, x.ndim)
    n = x.shape[axis]
    if isinstance(split_size_or_sections, (int, np.integer)):
        size = int(split_size_or_sections)
        if size <= 0:
            raise ValueError(f"split: split_size must be a positive int, got {size}")
        sizes = [size] * (n // size) + ([n % size] if n % size else [])
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if sum(sizes) != n or any(s < 0 for s in sizes):
            raise ValueError(
                f"split: sizes {sizes} must be non-negative and sum to {n}, the size of axis {axis} "
                f"of shape {x.shape}"
            )
    pieces, start = [], 0
    for size in sizes:
        index = (slice(None),) * axis + (slice(start, start + size),)
        pieces.append(GetItem.apply(x, index=index))
        start += size
    return tuple(pieces)


def pad(x, pad, value=0.0):
    """Constant padding in PyTorch's convention: ``pad`` lists (before, after) pairs
    starting from the LAST axis, e.g. ``(1, 1, 2, 2)`` pads W by 1 and H by 2."""
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad: expected an even number of values (<= 2 * {x.ndim}), got {pad}")
    if any(p < 0 for p in pad):
        raise ValueError(f"pad: negative padding {pad} is not supported")
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return Pad.apply(x, pad_width=tuple(widths), value=value)


class Expand(Function):
    """Broadcast x to ``shape`` (a read-only view, no copy); the backward sums the gradient back
    over the broadcast axes (the engine's ``unbroadcast``)."""

    def forward(self, x, shape):
        return np.broadcast_to(x, shape)

    def backward(self, g):
        return (g,)


class Stack(Function):
    """Stack n equal-shaped arrays along a new ``axis``; the backward takes each slice back."""

    def forward(self, *xs, axis=0):
        self.axis = axis
        return np.stack(xs, axis=axis)

    def backward(self, g):
        return tuple(np.take(g, i, axis=self.axis) for i in range(g.shape[self.axis]))


@tensor_method("unsqueeze")
def unsqueeze(x, dim):
    """Insert an axis of size 1 at ``dim`` (in ``-ndim-1 .. ndim``), as ``torch.unsqueeze``."""
    if not -x.ndim - 1 <= dim <= x.ndim:
        raise ValueError(f"unsqueeze: dim {dim} is out of range for a tensor of shape {x.shape} "
                         f"(expected -{x.ndim + 1} <= dim <= {x.ndim})")
    dim = dim % (x.ndim + 1)
    return Reshape.apply(x, shape=x.shape[:dim] + (1,) + x.shape[dim:])


@tensor_method("squeeze")
def squeeze(x, dim=None):
    """Remove axes of size 1, as ``torch.squeeze``: all of them when ``dim`` is None, else those among
    ``dim`` (an int or a tuple) that have size 1; a named axis of another size is left alone."""
    if dim is None:
        axes = [a for a, n in enumerate(x.shape) if n == 1]
    else:
        ndim = max(x.ndim, 1)  # like PyTorch, a 0-d tensor accepts dim 0 or -1
        axes = [_check_axis("squeeze", d, ndim) for d in ((dim,) if isinstance(dim, (int, np.integer)) else dim)]
        axes = [a for a in axes if a < x.ndim and x.shape[a] == 1]
    return Reshape.apply(x, shape=tuple(n for a, n in enumerate(x.shape) if a not in axes))


@tensor_method("expand")
def expand(x, *sizes):
    """``x`` broadcast to ``sizes`` without copying, as ``torch.Tensor.expand``: -1 keeps an axis, new
    axes may be added in front, and only axes of size 1 can grow. The result is read-only."""
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    extra = len(sizes) - x.ndim
    if extra < 0:
        raise ValueError(f"expand: {len(sizes)} sizes {tuple(sizes)} for a tensor of shape {x.shape}; give at "
                         f"least {x.ndim}")
    shape = []
    for i, n in enumerate(sizes):
        old = x.shape[i - extra] if i >= extra else None
        if n == -1:
            if old is None:
                raise ValueError(f"expand: size -1 at position {i} of {tuple(sizes)} names a new axis; "
                                 f"new axes need a size")
            n = old
        elif old is not None and old != 1 and old != n:
            raise ValueError(f"expand: axis {i - extra} of shape {x.shape} has size {old}; only axes of size 1 "
                             f"can expand, so size {n} is not possible (sizes {tuple(sizes)})")
        elif n < 0:
            raise ValueError(f"expand: size {n} in {tuple(sizes)} must be non-negative (or -1)")
        shape.append(int(n))
    return Expand.apply(x, shape=tuple(shape))


def stack(tensors, dim=0):
    """Join equal-shaped tensors along a new axis ``dim``, as ``torch.stack``."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: needs at least one tensor")
    ref = tuple(tensors[0].shape)
    for i, t in enumerate(tensors):
        if tuple(t.shape) != ref:
            raise ValueError(f"stack: tensor {i} has shape {tuple(t.shape)}, but all tensors must have the "
                             f"shape of tensor 0, {ref}")
    if not -len(ref) - 1 <= dim <= len(ref):
        raise ValueError(f"stack: dim {dim} is out of range for tensors of shape {ref} "
                         f"(expected -{len(ref) + 1} <= dim <= {len(ref)})")
    return Stack.apply(*tensors, axis=dim % (len(ref) + 1))
