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
block's projection. It is applied to whichever is smaller: each image's weight columns,
``(w_i * gate[n, in_i]) @ x[n, in_i]``, O_i x C_i products per image, when O_i <= H*W; else the
sub-block's input, ``w_i @ (x[n, in_i] * gate[n, in_i])``, C_i x H*W products (the 4x4 maps of the
last stages, with hundreds of output channels).

Threads as in ``pointwise``: the images are split into one chunk per thread (``run_chunks``),
the products are single-threaded BLAS calls, and the epilogue is a Numba function that
releases the GIL (``nogil=True``), so the threads run it side by side.
"""
import functools
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


# parallel=True without a prange: these functions run on the calling thread (the Python threads of
# run_chunks call them side by side, nogil), but compiled through Numba's parallel pipeline their loops
# vectorize, SiLU's exp included; the plain pipeline left them scalar, 6-7x slower (measured). They are
# compiled for their signatures (or loaded from the cache) on first use, not at import: compiling a
# parallel function starts Numba's thread pool, and importing minimix must change no process-wide state
# (minimix.perf.configure chooses the pool). The warning that no loop was parallelised is silenced
# there, without touching the process's warning filters at run time.
def _epilogue_py(y, coef, kind, consts, residual, has_residual):
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


def _gate_input_py(u, gate, extra):
    """For u = dL/d(x * gate) (B, C, P), in place: u[n, c] = u[n, c] * gate[n, c] + extra[n, c] (u becomes dL/dx:
    the product's path, plus ``extra``, a constant per plane, e.g. the gate's own path through a mean of x)."""
    B, C, P = u.shape
    for n in range(B):
        for c in range(C):
            row, scale, add = u[n, c], gate[n, c], extra[n, c]
            for p in range(P):
                row[p] = row[p] * scale + add


@functools.cache
def _compiled():
    """(epilogue, gate_input): the two kernels above, compiled for float32 and float64 on first use."""
    options = dict(nogil=True, parallel=True, cache=True, fastmath=_FASTMATH, error_model="numpy")
    gate_sigs = [types.void(t[:, :, ::1], t[:, ::1], t[:, ::1]) for t in (types.float32, types.float64)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumbaPerformanceWarning)
        return njit(_signatures(), **options)(_epilogue_py), njit(gate_sigs, **options)(_gate_input_py)


def _bounds(sizes):
    starts = np.cumsum([0] + list(sizes))
    return [slice(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]


def pointwise_bn_act(x, weights, in_splits, coef, activation=None, *, residual=None, gate=None):
    """y (N, O, H, W) = act(grouped_1x1(x) * coef[0] + coef[1]) (+ residual), module docstring.

    x (N, C, H, W); weights: one (O_i, C_i) matrix per group, sum C_i = C (``in_splits``), O = sum O_i;
    coef (2, O): each output channel's scale and shift, or None: no epilogue at all (then no activation
    or residual), y = grouped_1x1(x [* gate]); activation None, "relu" or "silu"; residual (N, O, H, W)
    or None; gate (N, C) or None (squeeze-and-excitation's gate on x's channels).
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
    if coef is None and (activation is not None or residual is not None):
        raise ValueError("coef=None (no epilogue) takes no activation and no residual")
    if coef is not None and coef.shape != (2, o):
        raise ValueError(f"coef must be (2, {o}) (scale and shift per output channel), got {coef.shape}")
    if residual is not None and residual.shape != (n, o, h, w):
        raise ValueError(f"residual must be {(n, o, h, w)}, got {residual.shape}")
    if gate is not None and gate.shape != (n, c):
        raise ValueError(f"gate must be {(n, c)}, got {gate.shape}")
    x3 = np.ascontiguousarray(x).reshape(n, c, hw)
    y = np.empty((n, o, hw), dtype=dtype)
    r3 = np.ascontiguousarray(residual).reshape(n, o, hw) if residual is not None else np.empty((0, 0, 0), dtype)
    coef = None if coef is None else np.ascontiguousarray(coef, dtype=dtype)
    kind, consts = ACTIVATIONS[activation], exp_constants(dtype)
    groups = list(zip(weights, _bounds(in_splits), _bounds(out_splits)))
    step = max(1, _BLOCK_BYTES // max(1, o * hw * dtype.itemsize))
    epilogue = _compiled()[0]  # compiled here, on the calling thread, not by two chunk threads at once

    def chunk(start, stop):
        for a in range(start, stop, step):
            b = min(stop, a + step)
            for wi, part_in, part_out in groups:
                xb = x3[a:b, part_in]
                if gate is None:
                    np.matmul(wi, xb, out=y[a:b, part_out])
                elif wi.shape[0] <= hw:  # scale each image's weight columns: O_i x C_i products per image
                    np.matmul(wi[None] * gate[a:b, None, part_in], xb, out=y[a:b, part_out])
                else:  # small maps (4x4): scaling the sub-block's input, C_i x H*W products, is the cheaper one
                    np.matmul(wi, xb * gate[a:b, part_in, None], out=y[a:b, part_out])
            if coef is not None:
                epilogue(y[a:b], coef, kind, consts, r3[a:b] if residual is not None else r3, residual is not None)

    threads.run_chunks(chunk, n, max(1, _MIN_CHUNK_ELEMENTS // max(1, (c + o) * hw)))
    return y.reshape(n, o, h, w)


def excite_pointwise_backward(gy, x, gate, weights, in_splits, need=(True, True, True), gate_to_input=None):
    """Gradients of y = grouped_1x1(x * gate) (``pointwise_bn_act(x, weights, in_splits, None, gate=gate)``)
    given gy = dL/dy (N, O, H, W): (dL/dx (N, C, H, W), dL/dgate (N, C), [dL/dw_i (O_i, C_i)]), each None
    where ``need`` (x, gate, weights) says so. With M[n] = gy[n, out_i] @ x[n, in_i]^T (O_i, C_i) per
    image and group, and u[n] = w^T gy[n]::

        dL/dw_i = sum_n M[n] * gate[n, in_i]              (the gate scales columns)
        dL/dgate[n, c] = sum_o w_i[o, c] * M[n][o, c]     (= sum_p u[n, c, p] * x[n, c, p])
        dL/dx[n, c] = u[n, c] * gate[n, c]

    so x * gate is never formed. Two passes over each thread's images: the products M, a few images at a
    time (both dL/dw and dL/dgate come from them); then u, a few images at a time, turned into dL/dx while
    in cache (the second pass reads gy only).

    When the gate is itself a function of x (squeeze-and-excitation: gate = f(mean over (H, W) of x)),
    dL/dx has a second term, a constant per plane: ``gate_to_input(start, stop, g_gate_rows)`` returns it,
    (stop - start, C), for images [start, stop), given their rows of dL/dgate. It is called between the
    two passes, so that term is added while dL/dx is in cache, not in another pass over memory.
    """
    n, o, h, w = gy.shape
    c, hw, dtype = x.shape[1], h * w, x.dtype
    gy3, x3 = np.ascontiguousarray(gy).reshape(n, o, hw), np.ascontiguousarray(x).reshape(n, c, hw)
    gate = np.ascontiguousarray(gate, dtype=dtype)
    out_splits = [wi.shape[0] for wi in weights]
    groups = list(zip(weights, _bounds(in_splits), _bounds(out_splits)))
    want_x, want_gate, want_w = need
    gx = np.empty((n, c, hw), dtype=dtype) if want_x else None
    g_gate = np.empty((n, c), dtype=dtype) if want_gate or gate_to_input is not None else None
    step = max(1, _BLOCK_BYTES // max(1, c * hw * dtype.itemsize))
    partial = max(1, min(32, (1 << 18) // max(1, max(wi.size for wi in weights))))  # images per batched product
    gate_input = _compiled()[1]  # compiled here, on the calling thread (see pointwise_bn_act)

    def chunk(start, stop):
        sums = [np.zeros(wi.shape, dtype=dtype) for wi in weights] if want_w else None
        if want_w or g_gate is not None:
            for a in range(start, stop, partial):
                b = min(stop, a + partial)
                for i, (wi, part_in, part_out) in enumerate(groups):
                    products = np.matmul(gy3[a:b, part_out], x3[a:b, part_in].transpose(0, 2, 1))  # (B, O_i, C_i)
                    if g_gate is not None:
                        np.einsum("boc,oc->bc", products, wi, out=g_gate[a:b, part_in])
                    if want_w:
                        products *= gate[a:b, None, part_in]
                        sums[i] += products.sum(axis=0)
        if gx is not None:
            extra = (np.zeros((stop - start, c), dtype=dtype) if gate_to_input is None else
                     np.ascontiguousarray(gate_to_input(start, stop, g_gate[start:stop]), dtype=dtype))
            for a in range(start, stop, step):
                b = min(stop, a + step)
                for wi, part_in, part_out in groups:
                    np.matmul(wi.T, gy3[a:b, part_out], out=gx[a:b, part_in])
                gate_input(gx[a:b], gate[a:b], extra[a - start:b - start])
        return sums

    results = threads.run_chunks(chunk, n, max(1, _MIN_CHUNK_ELEMENTS // max(1, (c + o) * hw)))
    gws = [sum(parts) for parts in zip(*results)] if want_w else None
    return (gx.reshape(n, c, h, w) if want_x else None), (g_gate if want_gate else None), gws
