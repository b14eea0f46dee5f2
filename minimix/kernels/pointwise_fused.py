"""A grouped 1x1 convolution with its batch norm, activation and residual add, in one pass (inference).

In a MixNet block every grouped 1x1 convolution is followed by an eval-mode BatchNorm (a fixed
per-channel scale and shift), often an activation, and in the projection also the residual
add. As separate ops each is a pass over the whole output in memory. Here, for a few images at
a time (a *sub-block* small enough to stay in cache, ``_BLOCK_BYTES`` of output), group i is
one product per image into its output channels, and the rest is applied while those values
are still in cache::

    z[n, o, p] = sum_c w_i[o, c] * (gate[n, c] *) x[n, c, p]        group i: o in out_i, c in in_i
    y[n, o, p] = act(z[n, o, p] * scale[o] + shift[o])  (+ residual[n, o, p])

``gate`` (N, C) is squeeze-and-excitation's gate, which multiplies the input channels of the
block's projection: instead of scaling x (a full pass over memory), each image's weight
columns are scaled, ``(w_i * gate[n, in_i]) @ x[n, in_i]``, an (O, C) matrix per image.

Threads as in ``pointwise``: the images are split into one chunk per thread (``run_chunks``),
the products are single-threaded BLAS calls, and the epilogue is a Numba function that
releases the GIL (``nogil=True``), so the threads run it side by side.
"""
import warnings

import numpy as np
from numba import njit, types
from numba.core.errors import NumbaPerformanceWarning

from . import threads
from .norm_act_numba import ACTIVATIONS, affine_act
from .vector_math import exp_constants

_FASTMATH = {"contract", "reassoc"}
_BLOCK_BYTES = 1 << 19  # output per sub-block: stays in the core's cache from the product to the epilogue
_MIN_CHUNK_ELEMENTS = 1 << 16  # below this many values per thread's chunk, threads cost more than they save


def _signatures():
    sigs = []
    for t in (types.float32, types.float64):
        a3, a2, a1 = t[:, :, ::1], t[:, ::1], t[::1]
        sigs.append(types.void(a3, a2, types.int64, a1, a3, types.boolean))
    return sigs


# parallel=True without a prange: this function runs on the calling thread (the Python threads of
# run_chunks call it side by side, nogil), but compiled through Numba's parallel pipeline its loops
# vectorize, SiLU's exp included; the plain pipeline left them scalar, 6-7x slower (measured). The
# signatures are compiled (or loaded from the cache) at import, where the warning that no loop was
# parallelised is silenced without touching the process's warning filters at run time.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", NumbaPerformanceWarning)

    @njit(_signatures(), nogil=True, parallel=True, cache=True, fastmath=_FASTMATH, error_model="numpy")
    def _epilogue(y, coef, kind, consts, residual, has_residual):
        """In place, for y (B, O, P): y[n, o] = act(y[n, o] * coef[0, o] + coef[1, o]), then + residual[n, o]
        when ``has_residual`` (residual (B, O, P); else ignored). kind, consts: as ``norm_act_numba``."""
        B, O, P = y.shape
        for n in range(B):
            for o in range(O):
                row = y[n, o]
                affine_act(row, row, coef[0, o], coef[1, o], kind, consts)
                if has_residual:
                    add = residual[n, o]
                    for p in range(P):
                        row[p] += add[p]


def _bounds(sizes):
    starts = np.cumsum([0] + list(sizes))
    return [slice(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]


def pointwise_bn_act(x, weights, in_splits, coef, activation=None, *, residual=None, gate=None):
    """y (N, O, H, W) = act(grouped_1x1(x) * coef[0] + coef[1]) (+ residual), module docstring.

    x (N, C, H, W); weights: one (O_i, C_i) matrix per group, sum C_i = C (``in_splits``), O = sum O_i;
    coef (2, O): each output channel's scale and shift; activation None, "relu" or "silu";
    residual (N, O, H, W) or None; gate (N, C) or None (squeeze-and-excitation's gate on x's channels).
    """
    n, c, h, w = x.shape
    if sum(in_splits) != c or len(in_splits) != len(weights):
        raise ValueError(f"in_splits {list(in_splits)} must split x's {c} channels into one part per weight "
                         f"({len(weights)} weights)")
    for i, (wi, ci) in enumerate(zip(weights, in_splits)):
        if wi.ndim != 2 or wi.shape[1] != ci:
            raise ValueError(f"weights[{i}] must be ({'O_i'}, {ci}), got shape {wi.shape}")
    out_splits = [wi.shape[0] for wi in weights]
    o, hw, dtype = sum(out_splits), h * w, x.dtype
    if coef.shape != (2, o):
        raise ValueError(f"coef must be (2, {o}) (scale and shift per output channel), got {coef.shape}")
    if residual is not None and residual.shape != (n, o, h, w):
        raise ValueError(f"residual must be {(n, o, h, w)}, got {residual.shape}")
    if gate is not None and gate.shape != (n, c):
        raise ValueError(f"gate must be {(n, c)}, got {gate.shape}")
    x3 = np.ascontiguousarray(x).reshape(n, c, hw)
    y = np.empty((n, o, hw), dtype=dtype)
    r3 = np.ascontiguousarray(residual).reshape(n, o, hw) if residual is not None else np.empty((0, 0, 0), dtype)
    coef = np.ascontiguousarray(coef, dtype=dtype)
    kind, consts = ACTIVATIONS[activation], exp_constants(dtype)
    groups = list(zip(weights, _bounds(in_splits), _bounds(out_splits)))
    step = max(1, _BLOCK_BYTES // max(1, o * hw * dtype.itemsize))

    def chunk(start, stop):
        for a in range(start, stop, step):
            b = min(stop, a + step)
            for wi, part_in, part_out in groups:
                wb = wi if gate is None else wi[None] * gate[a:b, None, part_in]  # (O_i, C_i) or per image
                np.matmul(wb, x3[a:b, part_in], out=y[a:b, part_out])
            _epilogue(y[a:b], coef, kind, consts, r3[a:b] if residual is not None else r3, residual is not None)

    threads.run_chunks(chunk, n, max(1, _MIN_CHUNK_ELEMENTS // max(1, (c + o) * hw)))
    return y.reshape(n, o, h, w)
