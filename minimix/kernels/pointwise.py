"""1x1 ("pointwise") convolution as one matrix product per image.

A 1x1 convolution with stride 1 and no padding mixes channels at every pixel
independently. In NCHW each image ``x[n]`` already IS a (C, H*W) matrix, so::

    y[n]  = w @ x[n]            (O, C) @ (C, HW) -> (O, HW)     forward
    gx[n] = w^T @ gy[n]         (C, O) @ (O, HW) -> (C, HW)     dL/dx
    gw    = sum_n gy[n] @ x[n]^T  (O, HW) @ (HW, C) -> (O, C)  dL/dw

No im2col copy and no transposes: ``np.matmul`` of w against the stack
(N, C, HW) runs one BLAS product per image and writes the result straight in
NCHW order. The inputs may be channel slices of a larger NCHW array (MixNet's
grouped 1x1 convolutions): each image's slice is still a matrix with row
stride H*W, which BLAS reads in place. So may the outputs (``out=``): a group
writes its channels of the layer's output directly, no copy afterwards.

Why not one big product over all images, ``w @ x_cm`` with x_cm = (C, N*HW)?
It needs x transposed to channel-major and y transposed back: two full copies
of memory-bound data for products that are themselves memory-bound (MixNet's
1x1 convolutions have 4 to 600 channels). Per image, the products are large
enough (HW = 1024 at 32x32) and the copies are gone.

Threads: BLAS runs single-threaded (after ``minimix.perf.configure()``, which says why); instead
the images are split into one chunk per core, each chunk's products run on their own
Python thread (``threads.run_chunks``), writing disjoint slices of the output.
"""
import numpy as np

from . import threads


_MIN_CHUNK_ELEMENTS = 1 << 16  # below this many input+output values per chunk, threads cost more than they save


def _min_chunk(per_image):
    return max(1, _MIN_CHUNK_ELEMENTS // max(1, per_image))


def _out_planes(out, shape):
    """``out`` (N, O, H, W), e.g. a channel slice of a bigger array, viewed as (N, O, H*W) without a copy."""
    if out is None:
        return None
    if not isinstance(out, np.ndarray) or out.shape != shape:
        raise ValueError(f"out must be an array of shape {shape}, got {type(out).__name__} {getattr(out, 'shape', '')}")
    view = out.view()
    try:
        view.shape = (shape[0], shape[1], shape[2] * shape[3])  # raises where a reshape would have to copy
    except AttributeError:
        raise ValueError(f"out (strides {out.strides}) must keep each (H, W) plane contiguous") from None
    return view


def _apply(w, a, out=None):
    """out[n] = w @ a[n] for a (N, K, HW), the images split across threads; returns out (N, rows of w, HW),
    allocated when None."""
    n, k, hw = a.shape
    if out is None:
        out = np.empty((n, w.shape[0], hw), dtype=np.result_type(w, a))

    def chunk(start, stop):
        np.matmul(w, a[start:stop], out=out[start:stop])

    threads.run_chunks(chunk, n, _min_chunk((k + w.shape[0]) * hw))
    return out


def pointwise_forward(x, w, out=None):
    """y (N, O, H, W) = 1x1 convolution of x (N, C, H, W) with w (O, C); written into ``out`` if given."""
    n, c, h, width = x.shape
    y = _apply(w, x.reshape(n, c, h * width), _out_planes(out, (n, w.shape[0], h, width)))
    return y.reshape(n, w.shape[0], h, width) if out is None else out


def pointwise_backward_input(gy, w, out=None):
    """dL/dx (N, C, H, W) = w^T @ gy[n] for every image; gy (N, O, H, W), w (O, C); into ``out`` if given."""
    n, o, h, width = gy.shape
    gx = _apply(w.T, gy.reshape(n, o, h * width), _out_planes(out, (n, w.shape[1], h, width)))
    return gx.reshape(n, w.shape[1], h, width) if out is None else out


_PARTIAL_ELEMENTS = 1 << 18  # (O, C) partial products made at once by pointwise_backward_weight: 1 MB of float32
_GATHER_PIXELS = 16  # on planes of at most this many pixels, pointwise_backward_weight gathers images side by side
_GATHER_DEPTH = 256  # ... this many columns (images x pixels) per product


def pointwise_backward_weight(x, gy):
    """dL/dw (O, C) = sum over images of gy[n] (O, HW) @ x[n]^T (HW, C).

    Each thread sums its own chunk of images; the chunks' sums are added at the end.
    Within a chunk, a batched product makes the (O, C) products of a few images at once
    (as many as fit in _PARTIAL_ELEMENTS, at most 32), which are then summed: one NumPy
    call per image instead kept the threads waiting for each other's Python loop (the 1x1
    convolutions' share of a step: ``python benchmarks/train_step.py --profile``).

    On small planes (HW <= _GATHER_PIXELS: 4x4) each product has only HW terms per element
    while its (O, C) result is large, so writing and summing the partial products costs
    more than the products: there the images of a group are copied side by side, gy's as
    (O, g*HW) and x's as (C, g*HW), and ONE product with g*HW terms per element
    (_GATHER_DEPTH) makes the group's sum. (On 8x8 planes and larger the copies cost about
    what they save: ``python benchmarks/small_planes.py``.)
    """
    n, c, h, width = x.shape
    o = gy.shape[1]
    if h * width == 1:  # 1x1 maps (squeeze-excite): the images are the inner dimension of ONE product
        return gy.reshape(n, o).T @ x.reshape(n, c)
    x3, g3 = x.reshape(n, c, h * width), gy.reshape(n, o, h * width)
    dtype = np.result_type(x, gy)
    gather = h * width <= _GATHER_PIXELS
    if gather:
        group = max(1, _GATHER_DEPTH // (h * width))
    else:
        group = max(1, min(32, _PARTIAL_ELEMENTS // (o * c)))

    def group_sum(first, last):
        """sum over images first .. last - 1 of gy[i] @ x[i]^T."""
        if gather:  # the group's images side by side: (O, g*HW) @ (g*HW, C), ONE product
            g_cols = g3[first:last].transpose(1, 0, 2).reshape(o, -1)
            x_cols = x3[first:last].transpose(1, 0, 2).reshape(c, -1)
            return g_cols @ x_cols.T
        return np.matmul(g3[first:last], x3[first:last].transpose(0, 2, 1)).sum(axis=0)

    def chunk(start, stop):
        gw = np.zeros((o, c), dtype=dtype)
        for first in range(start, stop, group):
            gw += group_sum(first, min(stop, first + group))
        return gw

    return sum(threads.run_chunks(chunk, n, _min_chunk((c + o) * h * width)))
