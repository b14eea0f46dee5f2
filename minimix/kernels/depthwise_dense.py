"""Depthwise convolution on small planes (4x4, 8x8) as one small matrix per channel.

On a tiny plane most of a kernel's taps fall into the padding: on a 4x4 plane a 9x9 kernel has 49 taps that
reach it at all, each reading part of the plane, and ``depthwise_numba``'s sweeps pay for every masked tap; an
output row 4 pixels wide also fills only a quarter of a vector register in ``depthwise_rows``. But a convolution
is linear: flatten channel c's input plane to a vector x_c of P = H*W pixels and its output plane to y_c of
Q = OH*OW pixels, and

    y_c = x_c @ A_c          A_c (P, Q),   A_c[q, p] = w[c, i, j] where tap (i, j) of output pixel p reads
                                           input pixel q (h = r*sh - ph + i*dh, v = s*sw - pw + j*dw), else 0

Each pair (q, p) is linked by at most one tap: with tap[q, p] that tap's index t = i*KW + j (``links``, made
once per geometry), A_c[q, p] = w[c, tap[q, p]], a gather from w (padded with one zero, the entry of the
pairs no tap links): no arithmetic at all. The three kernels of the convolution are then, for each channel c,
with X_c (N, P) and Y_c (N, Q) its planes in the batch, one image per row:

    forward          Y_c  = X_c @ A_c                                      (N, P) @ (P, Q) -> (N, Q)
    input gradient   GX_c = GY_c @ A_c^T                                   (N, Q) @ (Q, P) -> (N, P)
    weight gradient  gw[c, t] = sum of G_c[q, p] over the pairs tap t links,  G_c = X_c^T @ GY_c  (P, N) @ (N, Q)

(the weight gradient: dL/dA_c = G_c, and w[c, t] sits in every entry of A_c that tap t links). Each is one BLAS
product per channel over the whole batch (``np.matmul`` reads X_c, a channel of an NCHW array, in place: rows
C*P apart), P*Q multiply-adds per plane whatever the kernel size: 256 on a 4x4 plane against 49 * 16 = 784 for
a 9x9 kernel's masked sweeps, 4096 on an 8x8 plane against 81 * 64 = 5184 for a 9x9 kernel, and 1024 for a
stride-2 layer from 8x8 to 4x4, where the row kernels do 25 or more taps on rows of 4 pixels (``applies`` says
where; with a 3x3 kernel the other kernels do as well). Threads: ``threads.run_chunks`` gives each thread a
range of channels; each channel is one product, so the numbers do not depend on the thread count. (An earlier
version built A as a matrix product, w (C, T) @ S (T, P*Q) with S the 0/1 matrix of the pairs each tap links,
and the weight gradient as G @ S^T: products whose terms are mostly zero, and on one thread.)

Values. A zero of A_c still multiplies its input: an inf or a NaN in x reaches every output of its plane as
NaN, where the definition reads zero padding. The
forward and input-gradient kernels return whether all their outputs were finite, and the weight gradient
is checked afterwards; ``depthwise_numba``'s public functions then recompute the group exactly, as for its
own kernels. Finite inputs give the definition's values, summed in another order.

Speed: ``python benchmarks/small_planes.py`` times these kernels against the ones they replace on the CIFAR
MixNet's MixConv layers on 4x4 and 8x8 planes and its stride-2 layer from 8x8 to 4x4.
"""
import functools
from typing import NamedTuple

import numpy as np

from . import threads
from .geometry import output_size


MAX_INPUT_PIXELS = 64  # H*W: up to 8x8
MAX_OUTPUT_PIXELS = 16  # OH*OW up to 4x4 (one float32 vector with AVX-512), for kernels with fewer taps than H*W
MIN_KERNEL = 5  # 3x3 kernels stay on the other kernels: about even there, with 9 taps to do
_MIN_CHUNK_VALUES = 1 << 16  # below this many values per thread, threads cost more than they save


def applies(H, W, OH, OW, KH, KW):
    """Whether the dense kernels compute a depthwise convolution from H x W to OH x OW planes with a KH x KW
    kernel (any stride, padding, dilation): kernels of at least MIN_KERNEL a side on planes of at most
    MAX_INPUT_PIXELS, where the kernel has at least as many taps as the plane has pixels (A has fewer entries than
    the taps do multiply-adds) or the output has at most MAX_OUTPUT_PIXELS (where the other kernels fill a
    fraction of each vector)."""
    if min(KH, KW) < MIN_KERNEL or H * W > MAX_INPUT_PIXELS:
        return False
    return H * W <= KH * KW or OH * OW <= MAX_OUTPUT_PIXELS


class Links(NamedTuple):
    """Which tap links which pair of pixels, for one geometry (``links``); arrays read-only.

    tap (P, Q): tap[q, p] = t = i*KW + j where tap t of output pixel p reads input pixel q, else KH*KW (no tap).
    order: the flat indices q*Q + p of the linked pairs, tap by tap (in index order within a tap);
    starts: where each tap in ``present`` begins in ``order``; present: the taps that link at least one pair.
    """
    tap: np.ndarray
    order: np.ndarray
    starts: np.ndarray
    present: np.ndarray


def _read_only(*arrays):
    """The arrays, marked read-only (``links`` shares them between calls)."""
    for a in arrays:
        a.flags.writeable = False
    return arrays


@functools.lru_cache(maxsize=256)
def links(H, W, KH, KW, stride, padding, dilation):
    """The ``Links`` of a KH x KW kernel on H x W planes; stride, padding, dilation: (h, w) pairs."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    OH, OW = output_size(H, KH, sh, ph, dh), output_size(W, KW, sw, pw, dw)
    i, j, r, s = np.meshgrid(np.arange(KH), np.arange(KW), np.arange(OH), np.arange(OW), indexing="ij")
    h, v = r * sh - ph + i * dh, s * sw - pw + j * dw  # the input pixel each (tap, output pixel) reads
    inside = (0 <= h) & (h < H) & (0 <= v) & (v < W)
    tap = np.full((H * W, OH * OW), KH * KW, dtype=np.int64)
    tap[(h * W + v)[inside], (r * OW + s)[inside]] = (i * KW + j)[inside]
    flat = tap.ravel()
    order = np.argsort(flat, kind="stable")[:np.count_nonzero(flat < KH * KW)]  # stable: index order within a tap
    present, starts = np.unique(flat[order], return_index=True)
    return Links(*_read_only(tap, order, starts, present))


def _matrices(w, tap):
    """A (C, P, Q) with A[c, q, p] = w[c, tap[q, p]] (0 where tap[q, p] = KH*KW: no tap), for w (C, KH, KW)."""
    C = w.shape[0]
    padded = np.concatenate([w.reshape(C, -1), np.zeros((C, 1), dtype=w.dtype)], axis=1)
    return padded[:, tap]


def _products(a, b, out):
    """out[c] = a[c] @ b[c] for every c (3-d arrays, any strides BLAS reads in place), the channels split over
    threads (``threads.run_chunks``); returns whether every result is finite. (NumPy's error state is per
    thread: each chunk sets its own.)"""
    per_channel = out.shape[1] * out.shape[2] + a.shape[1] * a.shape[2]

    def chunk(first, last):
        part = out[first:last]
        with np.errstate(invalid="ignore", over="ignore"):  # quietly, as the other kernels: the callers check
            np.matmul(a[first:last], b[first:last], out=part)
            return bool(np.isfinite(np.add.reduce(part, axis=None)))  # inf and NaN survive the sum

    return all(threads.run_chunks(chunk, out.shape[0], max(1, _MIN_CHUNK_VALUES // per_channel)))


def _by_channel(a, c0, C):
    """Channels c0 .. c0 + C - 1 of a (N, channels, H, W) as (C, N, H*W), no copy."""
    return a.reshape(a.shape[0], a.shape[1], -1)[:, c0:c0 + C].transpose(1, 0, 2)


def forward(x, y, c0, w, geometry):
    """y[:, c0 + c] = convolution of x[:, c0 + c] with w[c] (C, KH, KW) for c < C; x (N, channels, H, W) and y
    (N, channels, OH, OW) C-contiguous; geometry = (stride, padding, dilation), (h, w) pairs. Returns whether every
    output was finite (when not, some may be NaN where the definition's are not: module docstring)."""
    C = w.shape[0]
    A = _matrices(w, links(*x.shape[2:], *w.shape[1:], *geometry).tap)
    return _products(_by_channel(x, c0, C), A, _by_channel(y, c0, C))


def backward_input(gy, gx, c0, w, geometry):
    """gx[:, c0 + c] = dL/dx of that convolution given gy = dL/dy, for c < C; gy (N, channels, OH, OW) and gx
    (N, channels, H, W) C-contiguous. Returns whether every value was finite (see ``forward``)."""
    C = w.shape[0]
    A_transposed = _matrices(w, links(*gx.shape[2:], *w.shape[1:], *geometry).tap.T)  # (C, Q, P), contiguous
    return _products(_by_channel(gy, c0, C), A_transposed, _by_channel(gx, c0, C))


def backward_weight(x, gy, c0, C, kernel_hw, geometry):
    """gw (C, KH, KW) = dL/dw of that convolution for channels c0 .. c0 + C - 1 of x and gy = dL/dy (C-contiguous).
    Where x or gy holds an inf or a NaN, gw may be NaN where the definition's is not: the caller checks."""
    L = links(*x.shape[2:], *kernel_hw, *geometry)
    G = np.empty((C, *L.tap.shape), dtype=x.dtype)  # G[c] = sum over n of outer(x[n, c], gy[n, c])
    _products(_by_channel(x, c0, C).transpose(0, 2, 1), _by_channel(gy, c0, C), G)
    gw = np.zeros((C, kernel_hw[0] * kernel_hw[1]), dtype=x.dtype)
    with np.errstate(invalid="ignore", over="ignore"):  # quietly: the caller checks
        gw[:, L.present] = np.add.reduceat(G.reshape(C, -1)[:, L.order], L.starts, axis=1)  # taps linking no pair: 0
    return gw.reshape(C, *kernel_hw)
