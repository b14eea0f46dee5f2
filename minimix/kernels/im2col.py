"""Convolution as matrix multiplication (im2col / col2im), in NumPy.

The naive loop (``minimix.kernels.naive``) computes every output as a dot product
between a weight ``w[o]`` and one window of the padded input. im2col copies
every window into one column of a matrix, so that all those dot products become
ONE matrix product that BLAS runs at full speed::

    cols[c, p, q, n, i, j] = xp[n, c, i*sh + p*dh, j*sw + q*dw]      (C, KH, KW, N, OH, OW)

    as matrices:  w (O, C*KH*KW)  @  cols (C*KH*KW, N*OH*OW)  =  y (O, N*OH*OW)

and y, read as (O, N, OH, OW), is transposed to NCHW. Putting the image index n
among the *columns* makes one large product for many images instead of one
small product per image (BLAS threads pay a start-up cost per call).

``cols`` is made without a Python loop over pixels: ``as_strided`` builds the
6-D array of windows as a *view* of the padded input (every axis is a stride:
output rows are ``sh`` input rows apart, kernel taps ``dh`` rows apart), and one
copy lays it out contiguously. (A 1x1 convolution without padding needs no
windows at all: its cols are the input itself. The fast path uses that:
``minimix.kernels.pointwise`` computes it as one product per image, no copies.)

Backward, with g = dL/dy as the matrix (O, N*OH*OW)::

    dL/dw    = g @ cols^T                        (O, C*KH*KW)
    dL/dcols = w^T @ g     -> col2im ->  dL/dx

col2im is the adjoint of im2col: every column entry is *added* back to the input
pixel it was copied from (pixels shared by overlapping windows get several
contributions). It loops over the KH*KW kernel taps only; each tap adds one
strided slab covering the whole chunk of images.

At stride 1 there is a faster road to dL/dx: it is itself a convolution, of
dL/dy with the kernel rotated by 180 degrees and its in/out channels swapped,
padded by dilation*(k-1) - padding. (Substitute p -> k-1-p in the sum defining
y.) That reuses the forward's im2col and its well-shaped matrix product
(inner dimension O*KH*KW instead of O), and needs no col2im.

Groups (G): the channels form G independent convolutions. With Cg = C/G and
Og = O/G the matrices get a leading group axis, w -> (G, Og, Cg*KH*KW) and
cols -> (G, Cg*KH*KW, N*OH*OW), and ``np.matmul`` runs one product per group.

Memory: cols is KH*KW times the input (150 MB for a 3x3 convolution
of 128 images of 32 channels at 32x32), so the batch is processed a few images
at a time through a reused buffer, and the backward recomputes cols rather than
keeping it. The chunks are small (about ``CHUNK_BYTES`` of cols, one image for
a 3x3 convolution of 32 channels at 32x32): timed against 32 MB chunks, they were
as fast (``python benchmarks/bench_conv.py --only conv3x3`` times such
convolutions), and every thread's buffer stays small. All buffers keep the
input's dtype (float32 stays float32).

Threads: BLAS runs single-threaded (after ``minimix.perf.configure()``, which says why);
the images are split into one contiguous share per thread (``threads.run_chunks``),
and every thread works through its own chunks with its own buffers.
"""
import threading

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import threads
from .geometry import output_size

# Images per chunk are chosen so that one chunk's cols (or output) is about this many bytes
# (at least one image; see the module docstring).
CHUNK_BYTES = 2 * 2**20
_scratch_buffers = {}


def _scratch(purpose, shape, dtype):
    """A work array for ``purpose`` ("cols", "padded"), reused across calls (fresh memory costs page faults).

    One buffer per purpose, dtype and thread: ``run_chunks`` threads each fill their own.
    """
    size = int(np.prod(shape))
    key = (purpose, np.dtype(dtype), threading.get_ident())
    buffer = _scratch_buffers.get(key)
    if buffer is None or buffer.size < size:
        buffer = _scratch_buffers[key] = np.empty(size, dtype=dtype)
    return buffer[:size].reshape(shape)


def _padded(x, ph, pw):
    """x zero-padded by (ph, pw) on each side, in a reused buffer (what np.pad does, without allocating)."""
    n, c, h, w = x.shape
    xp = _scratch("padded", (n, c, h + 2 * ph, w + 2 * pw), x.dtype)
    xp[:, :, :ph] = 0
    xp[:, :, h + ph:] = 0
    xp[:, :, ph:h + ph, :pw] = 0
    xp[:, :, ph:h + ph, w + pw:] = 0
    xp[:, :, ph:h + ph, pw:w + pw] = x
    return xp


def im2col(x, kernel_hw, stride, padding, dilation, out=None):
    """x (N, C, H, W) -> cols (C, KH, KW, N, OH, OW), every window copied out (into ``out`` if given)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_hw, stride, padding, dilation
    n, c, h, w = x.shape
    oh = output_size(h, kh, sh, ph, dh)
    ow = output_size(w, kw, sw, pw, dw)
    xp = _padded(x, ph, pw) if ph or pw else x
    s_n, s_c, s_h, s_w = xp.strides
    windows = as_strided(
        xp,
        shape=(c, kh, kw, n, oh, ow),
        strides=(s_c, s_h * dh, s_w * dw, s_n, s_h * sh, s_w * sw),
        writeable=False,
    )
    if out is None:
        return np.ascontiguousarray(windows)
    np.copyto(out, windows)
    return out


def col2im(cols, input_hw, stride, padding, dilation):
    """The adjoint of im2col: cols (C, KH, KW, N, OH, OW) -> x (N, C, H, W), summing overlaps."""
    c, kh, kw, n, oh, ow = cols.shape
    (h, w), (sh, sw), (ph, pw), (dh, dw) = input_hw, stride, padding, dilation
    xp = np.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)  # channel-major like cols
    for p in range(kh):
        rows = slice(p * dh, p * dh + sh * (oh - 1) + 1, sh)
        for q in range(kw):
            columns = slice(q * dw, q * dw + sw * (ow - 1) + 1, sw)
            xp[:, :, rows, columns] += cols[:, p, q]
    return xp[:, :, ph:ph + h, pw:pw + w].transpose(1, 0, 2, 3)


class _Geometry:
    """Sizes of one convolution, and the batch chunks it is computed in."""

    def __init__(self, x_shape, w_shape, stride, padding, dilation, groups, itemsize):
        n, c, h, w = x_shape
        o, cg, kh, kw = w_shape
        self.n, self.c, self.o, self.groups = n, c, o, groups
        self.kernel_hw, self.stride, self.padding, self.dilation = (kh, kw), stride, padding, dilation
        self.oh = output_size(h, kh, stride[0], padding[0], dilation[0])
        self.ow = output_size(w, kw, stride[1], padding[1], dilation[1])
        self.rows = cg * kh * kw  # rows of cols per group
        per_image = itemsize * self.oh * self.ow * max(c * kh * kw, o)
        self.step = max(1, CHUNK_BYTES // per_image)

    def map_chunks(self, fn):
        """[fn(batch) for every chunk ``batch`` (a slice of images)], the images shared out over the threads."""

        def share(start, stop):
            return [fn(slice(s, min(s + self.step, stop))) for s in range(start, stop, self.step)]

        return [r for results in threads.run_chunks(share, self.n, self.step) for r in results]

    def cols(self, x, batch):
        """im2col of the images ``batch`` as (G, Cg*KH*KW, m*OH*OW), written into a reused buffer."""
        m = batch.stop - batch.start
        out = _scratch("cols", (self.c,) + self.kernel_hw + (m, self.oh, self.ow), x.dtype)
        im2col(x[batch], self.kernel_hw, self.stride, self.padding, self.dilation, out=out)
        return out.reshape(self.groups, self.rows, m * self.oh * self.ow)

    def grad_matrix(self, gy, batch):
        """dL/dy of the images ``batch`` as (G, Og, m*OH*OW) (channels first, then images)."""
        m = batch.stop - batch.start
        g = np.ascontiguousarray(gy[batch].transpose(1, 0, 2, 3))
        return g.reshape(self.groups, self.o // self.groups, m * self.oh * self.ow)


def conv2d_forward(x, w, stride, padding, dilation, groups):
    """y (N, O, OH, OW) = conv(x (N, C, H, W), w (O, C/G, KH, KW)): per chunk, w @ cols.

    Computed as its transpose, cols^T @ w^T (one row per output pixel): the same
    numbers, but OpenBLAS ran this orientation (long pixel axis as the rows) faster.
    """
    geo = _Geometry(x.shape, w.shape, stride, padding, dilation, groups, x.itemsize)
    og = geo.o // groups
    w_t = w.reshape(groups, og, geo.rows).transpose(0, 2, 1)  # (G, Kg, Og)
    y = np.empty((geo.n, geo.o, geo.oh, geo.ow), dtype=np.result_type(x, w))

    def chunk(batch):
        m = batch.stop - batch.start
        y_rows = np.matmul(geo.cols(x, batch).transpose(0, 2, 1), w_t)  # (G, m*OH*OW, Og)
        # (G, m, OH, OW, Og) -> (m, G, Og, OH, OW), written straight into y
        y[batch].reshape(m, groups, og, geo.oh, geo.ow)[...] = (
            y_rows.reshape(groups, m, geo.oh, geo.ow, og).transpose(1, 0, 4, 2, 3))

    geo.map_chunks(chunk)
    return y


def conv2d_backward_input(gy, w, input_hw, stride, padding, dilation, groups):
    """dL/dx: at stride 1 a convolution of dL/dy with the flipped kernel, else col2im(w^T @ dL/dy)."""
    o, cg, kh, kw = w.shape
    flipped_padding = tuple(d * (k - 1) - p for d, k, p in zip(dilation, (kh, kw), padding))
    if tuple(stride) == (1, 1) and min(flipped_padding) >= 0:
        # w (G, Og, Cg, KH, KW) -> (G, Cg, Og, KH, KW), rotated 180 degrees: a (C, Og, KH, KW) kernel
        w_flipped = w.reshape(groups, o // groups, cg, kh, kw).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
        w_flipped = np.ascontiguousarray(w_flipped).reshape(groups * cg, o // groups, kh, kw)
        return conv2d_forward(gy, w_flipped, stride, flipped_padding, dilation, groups)
    n = gy.shape[0]
    geo = _Geometry((n, cg * groups) + tuple(input_hw), w.shape, stride, padding, dilation, groups, gy.itemsize)
    wt = w.reshape(groups, o // groups, geo.rows).transpose(0, 2, 1)  # (G, Kg, Og)
    gx = np.empty((n, geo.c) + tuple(input_hw), dtype=np.result_type(gy, w))

    def chunk(batch):
        m = batch.stop - batch.start
        gcols = np.matmul(wt, geo.grad_matrix(gy, batch))  # (G, Kg, m*OH*OW)
        gx[batch] = col2im(gcols.reshape(geo.c, kh, kw, m, geo.oh, geo.ow), input_hw, stride, padding, dilation)

    geo.map_chunks(chunk)
    return gx


def conv2d_backward_weight(x, gy, kernel_hw, stride, padding, dilation, groups):
    """dL/dw = sum over chunks of dL/dy @ cols^T, computed as its transpose cols @ dL/dy^T.

    Same numbers; but with the long image axis as the inner dimension, OpenBLAS ran the
    (C*KH*KW, O) orientation faster and far more steadily.
    """
    o = gy.shape[1]
    w_shape = (o, x.shape[1] // groups) + tuple(kernel_hw)
    geo = _Geometry(x.shape, w_shape, stride, padding, dilation, groups, x.itemsize)

    def chunk(batch):  # (G, Kg, Og): this chunk's share of the sum
        return np.matmul(geo.cols(x, batch), geo.grad_matrix(gy, batch).transpose(0, 2, 1))

    gw_t = sum(geo.map_chunks(chunk))
    return gw_t.transpose(0, 2, 1).reshape(w_shape)
