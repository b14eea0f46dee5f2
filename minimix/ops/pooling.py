"""2-D max and average pooling, as ``torch.nn.functional.max_pool2d``, ``avg_pool2d`` and
``adaptive_max_pool2d``, on (N, C, H, W) or unbatched (C, H, W) inputs.

Every output pixel (i, j) summarises one window of the input. The window's kernel taps (p, q),
p < kh and q < kw, sit at input row and column

    r = i*sh - ph + p*dh,      c = j*sw - pw + q*dw            (stride s, padding p, dilation d)

and the output size is floor((H + 2 ph - dh (kh - 1) - 1) / sh) + 1 (ceil with ``ceil_mode``,
dropping a last window that would start in the bottom padding). The code loops over the kh*kw
taps, each step one strided slice ("slab") of the padded input holding tap (p, q) of EVERY window,
so there is no Python loop over pixels.

Max pooling keeps, per window, the running maximum and where it came from, with PyTorch's rule
``take the tap if value > best or value is NaN``, visiting the taps in row-major order: of tied
maxima the FIRST wins, and a NaN beats everything (the last NaN wins). The backward adds each
output's gradient to that one input element; overlapping windows (stride < kernel) can pick the
same element, whose gradients then add up. Padding is -inf, so it never wins.

Average pooling divides each window's sum by its size: kh*kw counting padded zeros
(``count_include_pad=True``, torch's default), or only the input elements in the window; the
part of a ``ceil_mode`` window beyond the padding never counts. Its backward spreads
gradient / size evenly over the window.
"""
import numbers

import numpy as np

from ..tensor import Function, Tensor


# -- arguments --------------------------------------------------------------------------------------
def _pair(op, arg, value, minimum):
    """``value`` (an int or a pair of ints, as torch accepts) as a pair, each at least ``minimum``."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) == 1:
        pair = pair * 2
    if len(pair) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in pair):
        raise TypeError(f"{op}: {arg} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{op}: {arg} must be at least {minimum}, got {value!r}")
    return tuple(int(v) for v in pair)


def _spatial_shape(op, x):
    """(H, W) of an (N, C, H, W) or (C, H, W) input; a ValueError for any other shape or an empty plane."""
    shape = tuple(x.shape)
    if len(shape) not in (3, 4) or 0 in shape[-3:]:
        raise ValueError(f"{op}: input must be (N, C, H, W) or (C, H, W) with C, H, W > 0 (N may be 0), "
                         f"got shape {shape}")
    return shape[-2:]


def _output_size(op, size, k, s, p, d, ceil_mode, axis):
    """Windows along one axis (torch's ``pooling_output_shape``); a ValueError if there are none."""
    span = size + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:  # the last window would start in the padding
        out -= 1
    if out < 1:
        raise ValueError(f"{op}: the input's {axis} {size} is too small for kernel_size {k} (dilation {d}, "
                         f"padding {p}): no window fits")
    return out


def _pool_args(op, x, kernel_size, stride, padding, dilation, ceil_mode):
    """Checked (kernel, stride, padding, dilation, output size) pairs, with torch's rules."""
    kernel = _pair(op, "kernel_size", kernel_size, 1)
    stride = kernel if stride is None else _pair(op, "stride", stride, 1)
    padding = _pair(op, "padding", padding, 0)
    dilation = _pair(op, "dilation", dilation, 1)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{op}: padding must be at most half of kernel_size (as in torch), got "
                         f"padding={padding} for kernel_size={kernel}")
    if not isinstance(ceil_mode, bool):
        raise TypeError(f"{op}: ceil_mode must be a bool, got {ceil_mode!r}")
    h, w = _spatial_shape(op, x)
    out = (_output_size(op, h, kernel[0], stride[0], padding[0], dilation[0], ceil_mode, "height"),
           _output_size(op, w, kernel[1], stride[1], padding[1], dilation[1], ceil_mode, "width"))
    return kernel, stride, padding, dilation, out


# -- shared machinery -------------------------------------------------------------------------------
def _padded(x, padding, need, fill):
    """x (N, C, H, W) inside a border of ``fill``: ``padding`` on every side, more at the bottom and
    right where ``need`` (the rows and columns the windows reach) asks for it (ceil_mode)."""
    (ph, pw), (n, c, h, w) = padding, x.shape
    if padding == (0, 0) and need[0] <= h and need[1] <= w:
        return x  # nothing to add: the windows read x itself (no copy)
    rows, cols = max(need[0], h + 2 * ph), max(need[1], w + 2 * pw)
    xp = np.full((n, c, rows, cols), fill, dtype=x.dtype)
    xp[:, :, ph:ph + h, pw:pw + w] = x
    return xp


def _slab(a, p, q, stride, dilation, out):
    """Tap (p, q) of every window: the strided slice of the padded array, shape (N, C, OH, OW)."""
    r0, c0 = p * dilation[0], q * dilation[1]
    return a[:, :, r0:r0 + (out[0] - 1) * stride[0] + 1:stride[0], c0:c0 + (out[1] - 1) * stride[1] + 1:stride[1]]


def _reach(kernel, stride, dilation, out):
    """Rows and columns of the padded input that the windows cover."""
    return tuple((o - 1) * s + d * (k - 1) + 1 for k, s, d, o in zip(kernel, stride, dilation, out))


def _batched(x):
    """x as (N, C, H, W): an unbatched (C, H, W) input gets a batch axis of 1."""
    return x if x.ndim == 4 else x[None]


def _scatter_max(g, index, shape):
    """The max-pooling backward: dL/dx[n, c].flat[index[n, c, i, j]] += g[n, c, i, j], zeros elsewhere.

    ``np.add.at`` adds every contribution, also several to one element (overlapping windows);
    a plain ``grad[index] += g`` would keep only one of them.
    """
    n, c, h, w = shape
    grad = np.zeros((n * c, h * w), dtype=g.dtype)
    rows, per_plane = np.arange(n * c)[:, None], index.shape[2] * index.shape[3]
    np.add.at(grad, (rows, index.reshape(n * c, per_plane)), g.reshape(n * c, per_plane))
    return grad.reshape(shape)


class _MaxPoolBase(Function):
    """Shared by both max poolings: forward stores ``self.index`` (flat position within the H*W plane of
    each output's maximum, as ``return_indices`` gives it) and also appends it to the list ``kept``
    (the node itself is dropped when no gradient is needed); backward scatters the gradient there."""

    def backward(self, g):
        grad = _scatter_max(_batched(g), _batched(self.index), self.in_shape)
        return (grad if len(self.x_shape) == 4 else grad[0],)


class MaxPool2d(_MaxPoolBase):
    """y[n, c, i, j] = max over the window's taps (p, q) of x_pad[n, c, i*sh + p*dh, j*sw + q*dw].

    ``self.index`` holds r*W + c of the chosen element (the first maximum in row-major window order).
    """

    def forward(self, x, kernel, stride, padding, dilation, out, kept):
        self.x_shape = x.shape
        xb = _batched(x)
        self.in_shape = xb.shape
        n, c, h, w = xb.shape
        xp = _padded(xb, padding, _reach(kernel, stride, dilation, out), -np.inf)
        # the first tap inside the input (torch starts each window's search there: an all -inf window
        # reports it); later taps replace the best only when strictly greater, or NaN
        first = [np.maximum(0, -((np.arange(o) * s - pad) // d)) for o, s, pad, d in zip(out, stride, padding, dilation)]
        tap = np.broadcast_to(first[0][:, None] * kernel[1] + first[1][None, :], (n, c) + out).copy()
        best = np.full((n, c) + out, -np.inf, dtype=x.dtype)
        for p in range(kernel[0]):
            for q in range(kernel[1]):
                value = _slab(xp, p, q, stride, dilation, out)
                take = (value > best) | np.isnan(value)
                best = np.where(take, value, best)
                tap[take] = p * kernel[1] + q
        rows = np.arange(out[0])[:, None] * stride[0] - padding[0] + (tap // kernel[1]) * dilation[0]
        cols = np.arange(out[1])[None, :] * stride[1] - padding[1] + (tap % kernel[1]) * dilation[1]
        index = rows * w + cols
        self.index = index if x.ndim == 4 else index[0]
        kept.append(self.index)
        return best if x.ndim == 4 else best[0]


class AdaptiveMaxPool2d(_MaxPoolBase):
    """y[n, c, i, j] = max of x[n, c, r0(i):r1(i), c0(j):c1(j)], with torch's bins
    r0(i) = floor(i H / OH), r1(i) = ceil((i+1) H / OH) (the same for columns): bins of unequal size,
    neighbours may share a row when OH does not divide H.
    """

    def forward(self, x, out, kept):
        self.x_shape = x.shape
        xb = _batched(x)
        self.in_shape = xb.shape
        n, c, h, w = xb.shape
        bins = []
        for size, o in zip((h, w), out):
            i = np.arange(o)
            start, end = (i * size) // o, -((-(i + 1) * size) // o)
            bins.append((start, end, int(np.max(end - start, initial=0))))
        (r0, r1, kh), (c0, c1, kw) = bins
        index = np.broadcast_to(r0[:, None] * w + c0[None, :], (n, c) + tuple(out)).copy()
        best = np.full((n, c) + tuple(out), -np.inf, dtype=x.dtype)
        # tap (p, q) of every bin: row r0 + p, column c0 + q, where inside the bin
        for p in range(kh):
            rows = np.minimum(r0 + p, h - 1)
            for q in range(kw):
                cols = np.minimum(c0 + q, w - 1)
                value = xb[:, :, rows[:, None], cols[None, :]]
                inside = ((r0 + p < r1)[:, None] & (c0 + q < c1)[None, :])
                take = inside & ((value > best) | np.isnan(value))
                best = np.where(take, value, best)
                index = np.where(take, rows[:, None] * w + cols[None, :], index)
        self.index = index if x.ndim == 4 else index[0]
        kept.append(self.index)
        return best if x.ndim == 4 else best[0]


class AvgPool2d(Function):
    """y[n, c, i, j] = (sum over the window's taps of x_pad[n, c, i*sh + p, j*sw + q]) / divisor[i, j];
    dL/dx_pad at each tap += g / divisor (then the padding is cut off)."""

    def forward(self, x, kernel, stride, padding, out, divisor):
        self.x_shape, self.kernel, self.stride, self.padding, self.out = x.shape, kernel, stride, padding, out
        self.divisor = divisor.astype(x.dtype)
        xb = _batched(x)
        xp = _padded(xb, padding, _reach(kernel, stride, (1, 1), out), 0)
        self.padded_shape = xp.shape
        total = np.zeros(xb.shape[:2] + out, dtype=x.dtype)
        for p in range(kernel[0]):
            for q in range(kernel[1]):
                total += _slab(xp, p, q, stride, (1, 1), out)
        y = total / self.divisor
        return y if x.ndim == 4 else y[0]

    def backward(self, g):
        share = _batched(g) / self.divisor
        gp = np.zeros(self.padded_shape, dtype=g.dtype)
        for p in range(self.kernel[0]):
            for q in range(self.kernel[1]):
                _slab(gp, p, q, self.stride, (1, 1), self.out)[...] += share
        (ph, pw), (h, w) = self.padding, self.x_shape[-2:]
        grad = gp[:, :, ph:ph + h, pw:pw + w]
        return (grad if len(self.x_shape) == 4 else grad[0],)


def _window_sizes(size, out, k, s, p, count_include_pad):
    """Elements in each window along one axis (torch's rule: padding counts when count_include_pad,
    the part of a ceil_mode window beyond the padding never does)."""
    start = np.arange(out) * s - p
    end = np.minimum(start + k, size + p)
    if count_include_pad:
        return end - start
    return np.minimum(end, size) - np.maximum(start, 0)


# -- the functional API -----------------------------------------------------------------------------
def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """``torch.nn.functional.max_pool2d``: the maximum of each kernel_size window.

    input (N, C, H, W) or (C, H, W) -> (N, C, OH, OW), OH = floor((H + 2 padding - dilation (k - 1) - 1)
    / stride) + 1 (``ceil_mode=True``: rounded up). ``stride`` defaults to ``kernel_size``; padding is
    -inf and at most kernel_size // 2; every size argument is an int or an (h, w) pair.
    ``return_indices=True`` also returns, as int64, each maximum's flat position ``r * W + c`` in its input
    plane (torch's ``indices``). Ties go to the first maximum in row-major window order, as in torch,
    and so does the gradient (see the module docstring).
    """
    kernel, stride, padding, dilation, out = _pool_args("max_pool2d", input, kernel_size, stride, padding,
                                                        dilation, ceil_mode)
    kept = []
    y = MaxPool2d.apply(input, kernel=kernel, stride=stride, padding=padding, dilation=dilation, out=out, kept=kept)
    return _with_indices(y, kept, return_indices)


def _with_indices(y, kept, return_indices):
    """``y`` or, for ``return_indices=True``, ``(y, indices)``: the positions forward put in ``kept``, as int64."""
    return (y, Tensor(kept[0].astype(np.int64))) if return_indices else y


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """``torch.nn.functional.avg_pool2d``: the mean of each kernel_size window.

    input (N, C, H, W) or (C, H, W) -> (N, C, OH, OW), OH = floor((H + 2 padding - k) / stride) + 1
    (``ceil_mode=True``: rounded up). ``stride`` defaults to ``kernel_size``; padding (zeros) is at
    most kernel_size // 2. Each window's sum is divided by ``kh * kw`` (``count_include_pad=True``), by the
    number of input elements in it (False), or by ``divisor_override``.
    """
    op = "avg_pool2d"
    kernel, stride, padding, _, out = _pool_args(op, input, kernel_size, stride, padding, 1, ceil_mode)
    if not isinstance(count_include_pad, bool):
        raise TypeError(f"{op}: count_include_pad must be a bool, got {count_include_pad!r}")
    if divisor_override is not None:
        if isinstance(divisor_override, bool) or not isinstance(divisor_override, numbers.Integral):
            raise TypeError(f"{op}: divisor_override must be an int or None, got {divisor_override!r}")
        if divisor_override == 0:
            raise ValueError(f"{op}: divisor_override must not be 0")
        divisor = np.full(out, float(divisor_override))
    else:
        h, w = input.shape[-2:]
        sizes = [_window_sizes(n, o, k, s, p, count_include_pad)
                 for n, o, k, s, p in zip((h, w), out, kernel, stride, padding)]
        divisor = (sizes[0][:, None] * sizes[1][None, :]).astype(np.float64)
    return AvgPool2d.apply(input, kernel=kernel, stride=stride, padding=padding, out=out, divisor=divisor)


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """``torch.nn.functional.adaptive_max_pool2d``: the maximum over each of output_size bins.

    input (N, C, H, W) or (C, H, W) -> (N, C, OH, OW) for ``output_size`` = OH (square) or (OH, OW);
    None in the pair keeps that input size. Bin i covers rows floor(i H / OH) to ceil((i+1) H / OH)
    (exclusive), as in torch. ``return_indices`` and ties as in :func:`max_pool2d`.
    """
    op = "adaptive_max_pool2d"
    h, w = _spatial_shape(op, input)
    sizes = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    if len(sizes) != 2:
        raise TypeError(f"{op}: output_size must be an int or a pair (int or None each), got {output_size!r}")
    sizes = tuple(size if s is None else s for s, size in zip(sizes, (h, w)))
    if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 0 for s in sizes):
        raise ValueError(f"{op}: output_size must be non-negative ints (or None), got {output_size!r}")
    kept = []
    y = AdaptiveMaxPool2d.apply(input, out=tuple(int(s) for s in sizes), kept=kept)
    return _with_indices(y, kept, return_indices)
