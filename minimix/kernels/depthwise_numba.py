"""Depthwise convolution kernels in Numba: forward, input gradient, weight gradient.

A depthwise convolution filters every channel with its own small kernel (NCHW arrays,
``w`` of shape (C, KH, KW)):

    y[n, c, oh, ow] = sum_{i, j} x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw] * w[c, i, j]

(positions outside the input read zero), with OH = (H + 2*ph - dh*(KH-1) - 1)//sh + 1 and
the same for OW. The two gradients follow from the chain rule, given gy = dL/dy:

* gx[n, c, h, q] = sum of gy[n, c, oh, ow] * w[c, i, j] over every (oh, ow, i, j) whose tap
  lands on (h, q). For stride 1 that is the same convolution applied to gy with the kernel
  flipped (i -> KH-1-i, j -> KW-1-j) and the geometry transposed: every shift is negated.
* gw[c, i, j] = sum over n, oh, ow of gy[n, c, oh, ow] * x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw]:
  each weight collects, over the batch and all output positions, the output gradient times
  the input value that tap saw. Channels never mix, so each channel sums on its own.

The strategy: a convolution is a sum of shifted copies
------------------------------------------------------
Flatten each (H, W) plane row by row. For stride 1 and an output the size of the input,
tap t = (i, j) links output position p = oh*W + ow to input position p + s_t, ONE constant
shift s_t = (i*dh - ph)*W + (j*dw - pw). The forward pass is then KH*KW multiply-adds of
whole shifted vectors:

    y_flat += x_flat[shifted by s_t] * wm_t        for every tap t

The *weight map* wm_t[p] is w[c, i, j] where the tap stays inside the plane and 0 where it
would fall into the zero padding (or wrap into the next row or the next plane). In NCHW the
planes of one image are contiguous, so one flat vector can span a *block* of several
channels, each with its own weight in wm_t: 4x4 or 8x8 planes still give long unit-stride
loops, which is what SIMD hardware needs. The other two kernels are the same idea:

* input gradient: gx_flat += gy_flat[shifted by -s_t] * wm_t (negated shifts, masks of the
  transposed taps): ``_shifted_sum`` again, the "flipped kernel" in vector form;
* weight gradient: acc_t += gy_flat * x_flat[shifted by s_t] over the batch (elementwise,
  so channels stay apart), then gw[c, t] = sum over the plane of acc_t * mask_t:
  ``_tap_products``.

General geometry. Inputs and outputs must share one flat layout (the *canvas*, Hc x Wc
per plane) for a tap to be a single shift. For stride 1 with "same" padding (every MixConv
layer) x, y, gy and gx are used in place. Other paddings compute on a zero-filled canvas of
the larger of the input and output sizes and crop. A stride s > 1 becomes stride 1 through
the *polyphase* split: x[sh*r + a, sw*q + b] is pixel (r, q) of phase plane (a, b), so tap
(i, j) reads phase plane ((i*dh-ph) mod sh, (j*dw-pw) mod sw) shifted by
((i*dh-ph)//sh, (j*dw-pw)//sw) rows and columns (``_phases`` does the split and the merge).
For stride 2 on even planes, MixNet's every stride-2 layer, there is no canvas in memory: the forward
and weight-gradient kernels split each block of channels into a small buffer while they work on it,
and the input gradient (``_shifted_sum_merged``) merges each block's four phase results into gx
while they are in cache (``_deinterleave_stride2``, with less work per row than ``_phases``).

Non-finite values. A masked tap still multiplies the neighbouring value it reads by 0: for
finite values that adds 0, but inf * 0 is NaN, so one inf at the edge of a plane would turn
outputs at the opposite edge of its row, or in the next channel, into NaN where the
definition (and PyTorch) reads zero padding and stays finite. The kernels therefore check
their results: the forward and input-gradient kernels sum each block of output while it is
still in cache and report a block whose sum is not finite (one add per element; the
epilogue, if any, comes after the check, so an activation cannot hide a NaN), and the
weight gradient, C*KH*KW numbers, is checked afterwards. Finite inputs give finite
results, so this never fires in normal training. When it fires, the group's result is
recomputed by the reference im2col kernels (``minimix.kernels.im2col``, which compute with
real zero padding, as PyTorch does) and the epilogue applied in NumPy with PyTorch's
activation semantics: the public functions below are exact for every input.

"Same" padding with stride 1 on planes 16 wide or more (8 for kernels of 5 or more), or with stride 2 on
even planes 8 wide or more: the forward and the input gradient run on ``depthwise_rows`` instead, which
keeps each output row in registers over all the taps (one load and one multiply-add per tap, no weight
maps); its docstring says how. The weight gradient runs there on planes 16 wide or more, for k >= 5 at stride 1
and every k at stride 2 (``depthwise_rows.applies_to_weight_gradient``). Before both: kernels from 5x5 on onto 4x4 planes (from 4x4,
or from 8x8 at stride 2) and 9x9 kernels on 8x8 planes run on ``depthwise_dense``, one small matrix per channel
(``depthwise_dense.applies`` says where).

Speed. ``python benchmarks/bench_depthwise.py`` times the three kernels against PyTorch
(float32, batch 128, NCHW; the README's performance section has the figures). Small planes
(8x8, 4x4) are this strategy's weak spot: a masked tap still costs its multiply-add, and
on small planes a larger share of the taps is masked. What matters most:

* few passes over memory: each sweep handles four taps (``_madd4``), so out is loaded and
  stored once per four taps, and the first (centre) tap sets out instead of a zeroing pass;
  the weight gradient likewise sums four images per sweep, for two taps at once (``_madd4_two``);
* blocks of whole planes small enough that a block's weight maps (taps x block length)
  stay in the core's level-2 cache (its size read from the operating system), in a number
  that gives every thread an equal share.

Numba rules followed here
-------------------------
1. ``@njit(parallel=True, cache=True)`` on the kernels, ``prange`` only on the outermost
   loop (blocks of channels, so no two threads ever write the same element); everything
   inside is a plain ``range``. ``cache=True`` stores the machine code in ``__pycache__``,
   so only the first process compiles; each dtype compiles on its first call.
2. The hot loops are tiny and unit-stride, ``dst[e] += src[e] * wm[e]`` over 1-D slices.
   Slicing copies nothing and allocates nothing; an index that starts at 0 lets LLVM prove
   it is never negative (no wrap-around check), so the loop is vectorised with AVX2/FMA.
   An index like ``q0 + ow*sw`` with a runtime stride stays scalar (no SIMD).
3. ``fastmath={"contract", "reassoc"}`` allows fused multiply-adds and reordering sums, but
   not the no-NaN/no-inf assumptions: the non-finite check above relies on inf and NaN
   propagating as IEEE arithmetic says.
4. No allocation inside inner loops: weight maps and accumulators are built once per block
   of channels and reused for all N images.
5. Kernels see only arrays and integers: the Python wrappers check shapes and dtypes and
   build the small tap tables (phase, row shift, column shift) with NumPy.
6. Threads: ``prange`` runs on Numba's pool, one thread per core unless
   ``minimix.perf.configure(threads=...)`` (or ``numba.set_num_threads``) says otherwise;
   blocks are dealt out evenly. The 1x1 convolutions run on other threads (NumPy products),
   and training alternates between the two, so the pool must start kernels quickly and
   leave the cores alone in between: ``minimix.perf.configure()`` chooses TBB's pool for
   that, before the first parallel kernel runs (its docstring says why; importing this
   module changes no setting). ``python benchmarks/thread_pools.py`` compares the pools.
"""
import functools
import os

import numba
import numpy as np
from numba import njit, prange

from . import depthwise_dense, depthwise_rows, im2col
from .geometry import as_pair, output_size
from .norm_act_numba import ACTIVATIONS, RELU, SILU, affine_act
from .vector_math import exp_constants, is_finite

_FASTMATH = {"contract", "reassoc"}  # FMA and reordered sums; no no-NaN/no-inf assumptions
_BLOCK_ELEMENTS = 8192  # target length of the flat vectors one block of channels works on
_DEFAULT_L2_BYTES = 512 * 1024  # where the operating system does not say


@functools.cache
def _l2_cache_bytes(cache_dir="/sys/devices/system/cpu/cpu0/cache"):
    """One core's level-2 cache in bytes, as Linux lists it (``index*/level`` and ``size``, e.g.
    "1024K"), else _DEFAULT_L2_BYTES. Hosts differ: 1 MB per core on this project's AMD EPYC Zen 4
    hosts, 2 MB on its Intel Xeon (README, "Performance")."""
    units = {"K": 1 << 10, "M": 1 << 20}
    try:
        for index in sorted(os.listdir(cache_dir)):
            folder = os.path.join(cache_dir, index)
            with open(os.path.join(folder, "level")) as level:
                if level.read().strip() != "2":
                    continue
            with open(os.path.join(folder, "size")) as size_file:
                size = size_file.read().strip()
            return int(size[:-1]) * units[size[-1]] if size[-1:] in units else int(size)
    except (OSError, ValueError, IndexError):
        pass
    return _DEFAULT_L2_BYTES


@njit(cache=True, fastmath=_FASTMATH)
def _madd(dst, src, scale):
    """dst += src * scale, elementwise over 1-D arrays of one length."""
    for e in range(dst.size):
        dst[e] += src[e] * scale[e]


@njit(cache=True, fastmath=_FASTMATH)
def _mul(dst, src, scale):
    """dst = src * scale, elementwise."""
    for e in range(dst.size):
        dst[e] = src[e] * scale[e]


@njit(cache=True, fastmath=_FASTMATH)
def _madd4(dst, s0, s1, s2, s3, m0, m1, m2, m3):
    """dst += s0*m0 + s1*m1 + s2*m2 + s3*m3: four taps for one load and one store of dst."""
    for e in range(dst.size):
        dst[e] += s0[e] * m0[e] + s1[e] * m1[e] + s2[e] * m2[e] + s3[e] * m3[e]


@njit(cache=True, fastmath=_FASTMATH)
def _madd4_two(dst, dst2, s0, s1, s2, s3, m0, m1, m2, m3, n0, n1, n2, n3):
    """Two _madd4 sharing s0 .. s3: dst += s0*m0 + ... + s3*m3 and dst2 += s0*n0 + ... + s3*n3, each sum in
    _madd4's order. The weight gradient's sweep for two taps: four images' dL/dy rows loaded once for both
    (14 loads per 8 multiply-adds instead of 18)."""
    for e in range(dst.size):
        a0, a1, a2, a3 = s0[e], s1[e], s2[e], s3[e]
        dst[e] += a0 * m0[e] + a1 * m1[e] + a2 * m2[e] + a3 * m3[e]
        dst2[e] += a0 * n0[e] + a1 * n1[e] + a2 * n2[e] + a3 * n3[e]


@njit(cache=True)
def _madd_outside(dst, src, scale, offset, a, b, lo, hi):
    """dst[e] += src[offset + e] * scale[e] for e in [a, b) but outside [lo, hi)."""
    if min(lo, b) > a:
        _madd(dst[a:min(lo, b)], src[offset + a:offset + min(lo, b)], scale[a:min(lo, b)])
    if b > max(hi, a):
        _madd(dst[max(hi, a):b], src[offset + max(hi, a):offset + b], scale[max(hi, a):b])


@njit(cache=True)
def _tap_masks(tap_u, tap_v, Hc, Wc, dtype_like):
    """mask[t, r*Wc + q] = 1 where tap t, shifted by (u_t, v_t), stays inside the Hc x Wc plane."""
    mask = np.zeros((tap_u.size, Hc * Wc), dtype=dtype_like.dtype)
    for t in range(tap_u.size):
        for r in range(max(0, -tap_u[t]), min(Hc, Hc - tap_u[t])):
            for q in range(max(0, -tap_v[t]), min(Wc, Wc - tap_v[t])):
                mask[t, r * Wc + q] = 1
    return mask


@njit(cache=True)
def _tap_ranges(shift, base, E, L):
    """For a block starting at flat position base with E elements, the positions [lo_t, hi_t)
    whose shifted source base + e + shift_t lies inside the flat array [0, L). Everything
    outside is masked anyway; only the first and last blocks have short ranges."""
    lo = np.empty(shift.size, dtype=np.int64)
    hi = np.empty(shift.size, dtype=np.int64)
    for t in range(shift.size):
        lo[t] = max(0, -(base + shift[t]))
        hi[t] = max(lo[t], min(E, L - base - shift[t]))
    return lo, hi


@njit(cache=True)
def _weight_maps(w, mask, tap_k, c0, cn):
    """wm[t, cc*P + p] = mask[t, p] * w[c0 + cc, tap_k[t]]: the weight maps of channels c0 .. c0 + cn - 1."""
    T, P = mask.shape
    wm = np.empty((T, cn * P), dtype=w.dtype)
    for t in range(T):
        for cc in range(cn):
            for p in range(P):
                wm[t, cc * P + p] = mask[t, p] * w[c0 + cc, tap_k[t]]
    return wm


@njit(cache=True, fastmath=_FASTMATH)
def _sum_taps(out, src, n, start, wm, shift, tap_phase, tap_lo, tap_hi):
    """out[e] = sum_t src[tap_phase[t], n, start + e + shift[t]] * wm[t, e] for one image and one block of
    channels (see _shifted_sum), tap t adding only on its range [tap_lo[t], tap_hi[t])."""
    T = shift.size
    if T == 0:
        out[:] = 0
        return
    # the first tap (the centre one, see _Plan) sets out, the others are added
    lo, hi = tap_lo[0], tap_hi[0]
    out[:lo] = 0
    out[hi:] = 0
    a = start + shift[0]
    _mul(out[lo:hi], src[tap_phase[0], n, a + lo:a + hi], wm[0, lo:hi])
    for t0 in range(1, T - 3, 4):  # four taps per sweep over out
        lo = max(tap_lo[t0], tap_lo[t0 + 1], tap_lo[t0 + 2], tap_lo[t0 + 3])
        hi = max(lo, min(tap_hi[t0], tap_hi[t0 + 1], tap_hi[t0 + 2], tap_hi[t0 + 3]))
        a0, a1, a2, a3 = (start + lo + shift[t0], start + lo + shift[t0 + 1],
                          start + lo + shift[t0 + 2], start + lo + shift[t0 + 3])
        m = hi - lo  # the positions [lo, hi) all four taps can read
        _madd4(out[lo:hi], src[tap_phase[t0], n, a0:a0 + m], src[tap_phase[t0 + 1], n, a1:a1 + m],
               src[tap_phase[t0 + 2], n, a2:a2 + m], src[tap_phase[t0 + 3], n, a3:a3 + m],
               wm[t0, lo:hi], wm[t0 + 1, lo:hi], wm[t0 + 2, lo:hi], wm[t0 + 3, lo:hi])
        for t in range(t0, t0 + 4):  # first and last block: what only some taps reach
            if tap_lo[t] < lo or tap_hi[t] > hi:
                _madd_outside(out, src[tap_phase[t], n], wm[t], start + shift[t], tap_lo[t], tap_hi[t], lo, hi)
    for t in range(T - (T - 1) % 4, T):  # the remaining taps one by one
        _madd_outside(out, src[tap_phase[t], n], wm[t], start + shift[t], tap_lo[t], tap_hi[t], 0, 0)


@njit(parallel=True, cache=True, fastmath=_FASTMATH, error_model="numpy")
def _shifted_sum(src, src0, dst, dst0, w, tap_phase, tap_u, tap_v, tap_k, Hc, Wc, cb, coef, kind, consts,
                 pixels):
    """dst[n, dst0 + p] = sum_t src[tap_phase[t], n, src0 + p + u_t*Wc + v_t] * w[c, tap_k[t]], where
    the tap stays inside the plane of p (channel c), for p in [0, C*Hc*Wc).

    src: (phases, N, >= src0 + C*Hc*Wc); dst: (N, >= dst0 + C*Hc*Wc); w: (C, KH*KW); taps: 1-D
    int arrays. The offsets src0, dst0 let a MixConv group read and write its channels of
    whole-layer arrays in place. One parallel iteration handles ``cb`` channels for all N images.

    Stride (2, 2) on even planes: given ``pixels`` (N, H*W*channels), the input itself with its
    first channel at flat offset src0 (src is then not read), each block splits its channels of
    each image into four phase planes in a small buffer (``_deinterleave_stride2``) and reads the
    taps there, while the buffer is in cache: a whole-layer phase canvas would be written to memory
    and read back. Zeros around the buffer (``halo``, the farthest shift) stand where a canvas holds
    the neighbouring channels, which the weight maps zero anyway, so every tap reads the same range
    as on a canvas and the sums are the same, in the same order. ``pixels`` (0, 0): read src.

    Epilogue (inference): with ``kind`` an activation of ``norm_act_numba`` (>= 0), each channel's
    result then becomes act(result * coef[0, c] + coef[1, c]), an eval-mode BatchNorm and its
    activation, applied to each block while it is still in cache (``consts``: ``exp_constants``).
    kind = -1: no epilogue.

    Returns False when some block's sums (before the epilogue) hold an inf or a NaN: the
    masked taps may then have spread it (module docstring), and the caller recomputes.
    """
    N = dst.shape[0]
    C, T, P = w.shape[0], tap_u.size, Hc * Wc
    L = C * P
    shift = tap_u * Wc + tap_v
    halo = np.abs(shift).max() if T > 0 else 0  # the farthest a tap reads beyond its block
    mask = _tap_masks(tap_u, tap_v, Hc, Wc, w)
    blocks = (C + cb - 1) // cb
    finite = np.ones(blocks, dtype=np.bool_)  # one flag per block: no two threads write the same one
    for blk in prange(blocks):
        c0 = blk * cb
        cn = min(cb, C - c0)
        base, E = c0 * P, cn * P
        wm = _weight_maps(w, mask, tap_k, c0, cn)
        tap_lo, tap_hi = _tap_ranges(shift, base, E, L)
        if pixels.shape[0] > 0:  # the block's phase planes, one image at a time, between zeros the taps may reach
            phases = np.zeros((4, 1, halo + E + halo), dtype=dst.dtype)
        for n in range(N):
            out = dst[n, dst0 + base:dst0 + base + E]
            if pixels.shape[0] > 0:
                _split_images(pixels, n, 1, src0 + 4 * base, phases, halo, cn * Hc, Wc)
                _sum_taps(out, phases, 0, halo, wm, shift, tap_phase, tap_lo, tap_hi)
            else:
                _sum_taps(out, src, n, src0 + base, wm, shift, tap_phase, tap_lo, tap_hi)
            if not is_finite(out):  # checked while the block is in cache, before an activation can hide a NaN
                finite[blk] = False
            if kind >= 0:
                for cc in range(cn):
                    plane = out[cc * P:(cc + 1) * P]
                    affine_act(plane, plane, coef[0, c0 + cc], coef[1, c0 + cc], kind, consts)
    return finite.all()


@njit(parallel=True, cache=True, fastmath=_FASTMATH, error_model="numpy")
def _shifted_sum_merged(src, src0, gx, gx0, w, parts, tap_u, tap_v, tap_k, Hc, Wc, cb):
    """The input gradient for stride (2, 2) on even planes, merged as it is made: phase plane a of gx
    collects the taps parts[a] .. parts[a + 1] - 1 (``_shifted_sum`` of gy, the one-phase src, with those
    taps); each block's four phase results are interleaved into gx (N, H*W*channels, the group's first
    channel at flat offset gx0) while they are in cache (``_deinterleave_stride2``), rather than written
    as a phase canvas and merged in another pass. Same sums as four ``_shifted_sum`` calls, bit for bit.
    Returns False as _shifted_sum does."""
    N = gx.shape[0]
    C, T, P = w.shape[0], tap_u.size, Hc * Wc
    L = C * P
    shift = tap_u * Wc + tap_v
    mask = _tap_masks(tap_u, tap_v, Hc, Wc, w)
    one_phase = np.zeros(T, dtype=np.int64)  # gy has one phase
    blocks = (C + cb - 1) // cb
    finite = np.ones(blocks, dtype=np.bool_)
    for blk in prange(blocks):
        c0 = blk * cb
        cn = min(cb, C - c0)
        base, E = c0 * P, cn * P
        wm = _weight_maps(w, mask, tap_k, c0, cn)
        tap_lo, tap_hi = _tap_ranges(shift, base, E, L)
        phases = np.empty((4, E), dtype=gx.dtype)
        for n in range(N):
            for a in range(4):
                t0, t1 = parts[a], parts[a + 1]
                _sum_taps(phases[a], src, n, src0 + base, wm[t0:t1], shift[t0:t1], one_phase[t0:t1], tap_lo[t0:t1],
                          tap_hi[t0:t1])
                if not is_finite(phases[a]):
                    finite[blk] = False
            _deinterleave_stride2(gx[n], gx0 + 4 * base, phases[0], phases[1], phases[2], phases[3], cn * Hc, Wc,
                                  False)
    return finite.all()


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def _tap_products(src, src0, gy, gy0, gw, tap_phase, tap_u, tap_v, tap_k, Hc, Wc, cb, pixels):
    """gw[c, tap_k[t]] = sum_{n, p in plane c} gy[n, gy0 + p] * src[tap_phase[t], n, src0 + p + u_t*Wc + v_t],
    over the positions p where the tap stays inside the plane. Shapes as in _shifted_sum, and as there,
    given ``pixels`` (stride (2, 2) on even planes) each block splits the images' phase planes itself."""
    N = gy.shape[0]
    C, T, P = gw.shape[0], tap_u.size, Hc * Wc
    L = C * P
    shift = tap_u * Wc + tap_v
    halo = np.abs(shift).max() if T > 0 else 0
    mask = _tap_masks(tap_u, tap_v, Hc, Wc, gw)
    split = pixels.shape[0] > 0
    for blk in prange((C + cb - 1) // cb):
        c0 = blk * cb
        cn = min(cb, C - c0)
        base, E = c0 * P, cn * P
        tap_lo, tap_hi = _tap_ranges(shift, base, E, L)
        acc = np.zeros((T, E), dtype=gw.dtype)  # acc[t, e]: sum over images of gy * shifted x
        # the input: src, image n at offset src0; or four images' phase planes of this block, split here
        phases = np.zeros((4, 4 if split else 0, halo + E + halo), dtype=gw.dtype)
        xs, offset = (phases, halo - base) if split else (src, src0)
        for n in range(0, N - N % 4, 4):  # four images per sweep over acc
            if split:
                _split_images(pixels, n, 4, src0 + 4 * base, phases, halo, cn * Hc, Wc)
            i = 0 if split else n  # the first of the four images in xs
            t = 0
            while t < T:  # two taps per sweep where they cover the same positions (all but the first and last blocks)
                lo, hi = tap_lo[t], tap_hi[t]
                a, b = gy0 + base + lo, gy0 + base + hi  # in gy
                x, s = xs[tap_phase[t]], offset - gy0 + shift[t]  # x[., a + s] is the tap's input for gy[., a]
                g0, g1, g2, g3 = gy[n, a:b], gy[n + 1, a:b], gy[n + 2, a:b], gy[n + 3, a:b]
                x0, x1, x2, x3 = x[i, a + s:b + s], x[i + 1, a + s:b + s], x[i + 2, a + s:b + s], x[i + 3, a + s:b + s]
                if t + 1 < T and tap_lo[t + 1] == lo and tap_hi[t + 1] == hi:
                    y, r = xs[tap_phase[t + 1]], offset - gy0 + shift[t + 1]
                    _madd4_two(acc[t, lo:hi], acc[t + 1, lo:hi], g0, g1, g2, g3, x0, x1, x2, x3,
                               y[i, a + r:b + r], y[i + 1, a + r:b + r], y[i + 2, a + r:b + r], y[i + 3, a + r:b + r])
                    t += 2
                else:
                    _madd4(acc[t, lo:hi], g0, g1, g2, g3, x0, x1, x2, x3)
                    t += 1
        for n in range(N - N % 4, N):
            if split:
                _split_images(pixels, n, 1, src0 + 4 * base, phases, halo, cn * Hc, Wc)
            i = 0 if split else n
            for t in range(T):
                a, b = gy0 + base + tap_lo[t], gy0 + base + tap_hi[t]
                s = offset - gy0 + shift[t]
                _madd(acc[t, tap_lo[t]:tap_hi[t]], gy[n, a:b], xs[tap_phase[t], i, a + s:b + s])
        for cc in range(cn):
            for t in range(T):
                total = gw.dtype.type(0)
                for p in range(P):
                    total += acc[t, cc * P + p] * mask[t, p]
                gw[c0 + cc, tap_k[t]] = total


@njit(parallel=True, cache=True)
def _phases(x, c0, xq, sh, sw, Hc, Wc, split):
    """Polyphase split (split=True): xq[a*sw + b, n, c*Hc*Wc + r*Wc + q] = x[n, c0 + c, r*sh + a, q*sw + b],
    zero where that pixel lies outside x; or the inverse merge back into x (split=False).

    x is a whole (contiguous) layer and c0 the group's first channel: a channel slice of x
    would be a non-contiguous array, for which Numba compiles generic, slower code.
    Each phase row is gathered from (or scattered to) one row of x, ``row[q * sw]``.
    """
    N, H = x.shape[0], x.shape[2]
    P = Hc * Wc
    C = xq.shape[2] // P
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        for a in range(sh):
            rows = min(Hc, (H - a + sh - 1) // sh)  # phase rows that hold pixels of x
            for b in range(sw):
                cols = min(Wc, (x.shape[3] - b + sw - 1) // sw)
                plane = xq[a * sw + b, n, c * P:(c + 1) * P]
                for r in range(rows):
                    row, phase_row = x[n, c0 + c, r * sh + a, b:], plane[r * Wc:r * Wc + cols]
                    if split:
                        for q in range(cols):
                            phase_row[q] = row[q * sw]
                    else:
                        for q in range(cols):
                            row[q * sw] = phase_row[q]
                if split:  # the canvas beyond x's pixels reads as zero padding
                    for r in range(rows):
                        plane[r * Wc + cols:(r + 1) * Wc] = 0
                    plane[rows * Wc:] = 0


@njit(cache=True)
def _deinterleave_stride2(image, start, p00, p01, p10, p11, rows, Wc, split):
    """Rows 2j and 2j + 1 (j < rows) of ``image``, flat from ``start`` with rows of W = 2*Wc pixels, are
    row j of the four phase planes p00, p01, p10, p11 (phase a*2 + b: row parity a, column parity b):
    split them into the phase rows (split=True) or merge the phase rows back (split=False)."""
    W = 2 * Wc
    for j in range(rows):
        top, d = start + 2 * j * W, j * Wc
        bottom = top + W
        if split:
            for q in range(Wc):
                p00[d + q], p01[d + q] = image[top + 2 * q], image[top + 2 * q + 1]
                p10[d + q], p11[d + q] = image[bottom + 2 * q], image[bottom + 2 * q + 1]
        else:
            for q in range(Wc):
                image[top + 2 * q], image[top + 2 * q + 1] = p00[d + q], p01[d + q]
                image[bottom + 2 * q], image[bottom + 2 * q + 1] = p10[d + q], p11[d + q]


@njit(cache=True)
def _split_images(pixels, first, count, start, phases, halo, rows, Wc):
    """Images first .. first + count - 1 of ``pixels`` (N, H*W*channels), their ``rows`` phase rows from flat
    offset ``start`` on, split into phases[:, i, halo:] (stride (2, 2), W = 2*Wc): the per-block split
    of _shifted_sum and _tap_products."""
    for i in range(count):
        _deinterleave_stride2(pixels[first + i], start, phases[0, i, halo:], phases[1, i, halo:],
                              phases[2, i, halo:], phases[3, i, halo:], rows, Wc, True)


@njit(parallel=True, cache=True)
def _phases_stride2(x, c0, xq, Hc, Wc, split):
    """``_phases`` for stride (2, 2) on planes that split exactly (H = 2*Hc, W = 2*Wc: no canvas
    beyond x's pixels), MixNet's every stride-2 layer: the same result, faster, most of all where rows
    are short (8x8 planes): ``python benchmarks/polyphase.py`` times both. The kernels themselves split
    and merge per block of channels, with the same row loop (``_deinterleave_stride2``); this whole-layer
    form is what the tests compare with ``_phases``, and the canvas the per-block kernels must match.

    With H even, rows 2j and 2j + 1 of the group's image, counted across channels, are the rows
    of phase row j of all four phase planes. So one loop over the C*Hc phase rows of an image and
    the Wc pixels of each deinterleaves two rows of x into four phase rows, with flat indices
    (``_deinterleave_stride2``). The general ``_phases`` makes an array slice and a loop per phase
    row and phase, which on 4- or 8-pixel rows costs more than the copying.
    """
    N, Cx, H, W = x.shape
    C = xq.shape[2] // (Hc * Wc)
    pixels = x.reshape(N, Cx * H * W)
    for n in prange(N):
        _deinterleave_stride2(pixels[n], c0 * H * W, xq[0, n], xq[1, n], xq[2, n], xq[3, n], C * Hc, Wc, split)


# ----------------------------------------------------------------------------- geometry


def _plan(H, W, KH, KW, stride, padding, dilation):
    """The _Plan of a geometry, built once per process: a training step asks for the same few
    geometries hundreds of times, and building one (tap tables, canvas sizes) is slow Python."""
    return _cached_plan(H, W, KH, KW, as_pair(stride, "stride", "depthwise"), as_pair(padding, "padding", "depthwise"),
                        as_pair(dilation, "dilation", "depthwise"))


@functools.lru_cache(maxsize=1024)
def _cached_plan(H, W, KH, KW, stride, padding, dilation):
    return _Plan(H, W, KH, KW, stride, padding, dilation)


class _Plan:
    """Everything the kernels need to know about one convolution geometry (read-only: plans are shared).
    stride, padding, dilation: (h, w) pairs of ints."""

    def __init__(self, H, W, KH, KW, stride, padding, dilation):
        self.stride, self.padding, self.dilation = stride, padding, dilation
        (self.sh, self.sw), (ph, pw), (dh, dw) = stride, padding, dilation
        if min(self.sh, self.sw, dh, dw, KH, KW) < 1 or min(ph, pw) < 0:
            raise ValueError(f"need kernel, stride, dilation >= 1 and padding >= 0; got kernel ({KH}, {KW}), "
                             f"stride={stride}, padding={padding}, dilation={dilation}")
        self.H, self.W = H, W
        self.OH, self.OW = output_size(H, KH, self.sh, ph, dh), output_size(W, KW, self.sw, pw, dw)
        if self.OH < 1 or self.OW < 1:
            raise ValueError(f"input {H}x{W} is too small for kernel {KH}x{KW} with padding ({ph}, {pw}) "
                             f"and dilation ({dh}, {dw})")
        # polyphase planes are ceil(H/sh) x ceil(W/sw); the canvas holds them and the output
        self.Hc = max(-(-H // self.sh), self.OH)
        self.Wc = max(-(-W // self.sw), self.OW)
        i, j = np.meshgrid(np.arange(KH) * dh - ph, np.arange(KW) * dw - pw, indexing="ij")
        i, j = i.ravel(), j.ravel()
        u, v = i // self.sh, j // self.sw
        # taps from the centre outwards: _shifted_sum starts each sum with the first one (for
        # odd k the centre, which reads every position, leaving k*k - 1 taps: a multiple of 4);
        # a tap shifted by a whole plane or more only reads padding: leave it out (gw stays 0)
        taps = sorted((t for t in range(KH * KW) if abs(u[t]) < self.Hc and abs(v[t]) < self.Wc),
                      key=lambda t: abs(u[t]) + abs(v[t]))
        self.tap_k = np.array(taps, dtype=np.int64)
        self.tap_phase = ((i % self.sh) * self.sw + j % self.sw)[self.tap_k].astype(np.int64)
        self.tap_u, self.tap_v = u[self.tap_k].astype(np.int64), v[self.tap_k].astype(np.int64)
        self.in_place_input = self.sh == self.sw == 1 and (H, W) == (self.Hc, self.Wc)
        self.stride2_exact = (self.sh, self.sw) == (2, 2) and (H, W) == (2 * self.Hc, 2 * self.Wc)
        # the taps grouped by the phase plane they read (stable: centre first within each), phase a's
        # taps at positions phase_parts[a] .. phase_parts[a + 1] - 1: the stride-2 input gradient's order
        self.taps_by_phase = np.argsort(self.tap_phase, kind="stable")
        self.phase_parts = np.searchsorted(self.tap_phase[self.taps_by_phase], np.arange(self.sh * self.sw + 1))
        self.in_place_output = (self.OH, self.OW) == (self.Hc, self.Wc)

    @property
    def geometry(self):
        """(stride, padding, dilation): what ``depthwise_dense`` takes."""
        return self.stride, self.padding, self.dilation

    def block(self, C):
        """Channels per parallel block: whole planes, about _BLOCK_ELEMENTS elements in all but
        small enough for the T weight maps (T x block elements, float32) to take at most half of a
        core's level-2 cache, next to the block's input and output. Longer blocks mean fewer, longer
        sweeps (``python benchmarks/depthwise_blocks.py`` times the choices)."""
        elements = min(_BLOCK_ELEMENTS, _l2_cache_bytes() // 2 // 4 // max(1, self.tap_u.size))
        per_block = max(1, min(C, elements // (self.Hc * self.Wc)))
        # prange deals the blocks out in equal shares up front: make their count a multiple
        # of the thread count, so that no thread gets one block more than another
        n_threads = numba.get_num_threads()
        blocks = min(C, -(-C // per_block // n_threads) * n_threads)
        return -(-C // blocks)

    def input_canvas(self, x, start, C):
        """Channels [start, start + C) of x (N, Cx, H, W) as the kernels read them: (canvas, offset, pixels).

        The canvas is (sh*sw, N, rows) with channel c of phase plane a at row elements
        offset + c*Hc*Wc. When no canvas is needed that is x itself (offset start*H*W, no
        copy); else a zero-filled polyphase canvas of the C channels (offset 0). For stride (2, 2)
        on even planes there is no canvas either: ``pixels`` is then x as (N, Cx*H*W) (offset
        start*H*W), from which the kernels split each block's phase planes while they work on it;
        else pixels is empty.
        """
        N = x.shape[0]
        if self.in_place_input or self.stride2_exact:
            pixels = x.reshape(N, -1) if self.stride2_exact else _NO_PIXELS[x.dtype]
            return x.reshape(1, N, -1), start * self.H * self.W, pixels
        xq = np.empty((self.sh * self.sw, N, C * self.Hc * self.Wc), dtype=x.dtype)
        _phases(x, start, xq, self.sh, self.sw, self.Hc, self.Wc, True)
        return xq, 0, _NO_PIXELS[x.dtype]

    def output_canvas(self, gy, start, C):
        """Channels [start, start + C) of gy (N, Cy, OH, OW) as (N, rows) and an offset, as input_canvas:
        gy itself, or a copy zero outside the OH x OW corner of each Hc x Wc plane."""
        N = gy.shape[0]
        if self.in_place_output:
            return gy.reshape(N, -1), start * self.OH * self.OW
        gc = np.zeros((N, C, self.Hc, self.Wc), dtype=gy.dtype)
        gc[:, :, :self.OH, :self.OW] = gy[:, start:start + C]
        return gc.reshape(N, -1), 0


# ----------------------------------------------------------------------------- public API


def _array(name, a, ndim, dtype=None):
    if not isinstance(a, np.ndarray) or a.ndim != ndim or a.dtype not in (np.float32, np.float64):
        raise ValueError(f"{name} must be a {ndim}-d float32 or float64 NumPy array, got "
                         f"{type(a).__name__} {getattr(a, 'shape', '')} {getattr(a, 'dtype', '')}")
    if dtype is not None and a.dtype != dtype:
        raise ValueError(f"{name} has dtype {a.dtype} but the other array has {dtype}")
    return np.ascontiguousarray(a)


def _channel_range(channels, total, C, name):
    """(start, C) of the channel group: all ``total`` channels of array ``name`` (channels=None), or
    ``channels`` = slice(start, stop) of them; C (the weight's channels) must match when given."""
    if channels is None:
        start, stop = 0, total
    elif isinstance(channels, slice) and channels.step in (None, 1) and channels.start is not None \
            and channels.stop is not None and 0 <= channels.start < channels.stop <= total:
        start, stop = channels.start, channels.stop
    else:
        raise ValueError(f"channels must be None or slice(start, stop) within the {total} channels of "
                         f"{name}, got {channels!r}")
    if C is not None and stop - start != C:
        raise ValueError(f"w has {C} channels, but {name} has {stop - start} channels to convolve "
                         f"({total} channels in all, channels={channels!r})")
    return start, stop - start


def _result(out, N, channels, OH, OW, dtype):
    """The array to write into: ``out`` after checking it, else a new (N, channels, OH, OW) array."""
    if out is None:
        return np.empty((N, channels, OH, OW), dtype=dtype)
    if not isinstance(out, np.ndarray) or out.shape != (N, channels, OH, OW) or out.dtype != dtype \
            or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous {np.dtype(dtype)} array of shape {(N, channels, OH, OW)}, "
                         f"got {type(out).__name__} {getattr(out, 'shape', '')} {getattr(out, 'dtype', '')}")
    return out


_NO_EPILOGUE = {np.dtype(np.float32): np.empty((2, 0), np.float32), np.dtype(np.float64): np.empty((2, 0))}
_NO_PIXELS = {np.dtype(np.float32): np.empty((0, 0), np.float32), np.dtype(np.float64): np.empty((0, 0))}


def _epilogue(epilogue, C, dtype):
    """(coef, kind, consts) for _shifted_sum from ``epilogue`` = None or (coef (2, C), activation)."""
    if epilogue is None:
        return _NO_EPILOGUE[dtype], -1, exp_constants(dtype)
    coef, activation = epilogue
    if activation not in ACTIVATIONS:
        raise ValueError(f"epilogue activation must be one of {sorted(map(str, ACTIVATIONS))}, got {activation!r}")
    if not isinstance(coef, np.ndarray) or coef.shape != (2, C):
        raise ValueError(f"epilogue coef must be a (2, {C}) array (scale and shift per channel), got "
                         f"{type(coef).__name__} {getattr(coef, 'shape', '')}")
    return np.ascontiguousarray(coef, dtype=dtype), ACTIVATIONS[activation], exp_constants(dtype)


def _exact_activation(z, coef, kind):
    """The epilogue act(z * coef[0, c] + coef[1, c]) in NumPy for z (N, C, OH, OW), for results that
    hold inf or NaN: PyTorch's semantics there (relu(-inf) = 0, silu(-inf) = NaN)."""
    z = z * coef[0][:, None, None] + coef[1][:, None, None]
    if kind == RELU:
        return np.maximum(z, 0)  # NaN stays NaN
    if kind == SILU:
        with np.errstate(over="ignore", invalid="ignore"):
            return z / (1 + np.exp(-z))
    return z


def depthwise_forward(x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), *, channels=None, out=None,
                      epilogue=None):
    """y (N, C, OH, OW) = depthwise convolution of x (N, C, H, W) with w (C, KH, KW).

    One group of a MixConv: ``channels=slice(a, b)`` convolves channels [a, b) of x with w
    (b - a channels) and writes channels [a, b) of ``out`` (N, x's channels, OH, OW), which is
    returned. Stride 1 with size-keeping padding (every MixConv layer) then copies nothing.

    ``epilogue=(coef, activation)`` (inference): y[:, c] = activation(conv[:, c] * coef[0, c] +
    coef[1, c]) for the C channels of w, an eval-mode BatchNorm folded into a scale and a shift,
    then None, "relu" or "silu": computed on each block of output while it is in cache, which
    saves the separate pass over memory that the batch norm would take.
    """
    x = _array("x", x, 4)
    N, Cx, H, W = x.shape
    w = _array("w", w, 3, x.dtype)
    start, C = _channel_range(channels, Cx, w.shape[0], "x")
    coef, kind, consts = _epilogue(epilogue, C, x.dtype)
    plan = _plan(H, W, w.shape[1], w.shape[2], stride, padding, dilation)
    y = _result(out, N, Cx, plan.OH, plan.OW, x.dtype)
    if depthwise_dense.applies(H, W, plan.OH, plan.OW, *w.shape[1:]):
        finite = depthwise_dense.forward(x, y, start, w, plan.geometry)
        if finite and kind >= 0:
            finite = depthwise_rows.apply_epilogue(y, start, (coef, kind, consts))
        return _checked_output(finite, y, x, w, start, C, plan, coef, kind)
    if depthwise_rows.applies(H, W, w.shape[1], w.shape[2], plan.stride, plan.padding, plan.dilation):
        finite = depthwise_rows.forward(x, y, start, w, plan.stride[0], None if kind < 0 else (coef, kind, consts))
        return _checked_output(finite, y, x, w, start, C, plan, coef, kind)
    src, src0, pixels = plan.input_canvas(x, start, C)
    if plan.in_place_output:
        dst, dst0 = y.reshape(N, -1), start * plan.OH * plan.OW
    else:
        dst, dst0 = np.empty((N, C * plan.Hc * plan.Wc), dtype=x.dtype), 0
    finite = _shifted_sum(src, src0, dst, dst0, w.reshape(C, -1), plan.tap_phase, plan.tap_u, plan.tap_v,
                          plan.tap_k, plan.Hc, plan.Wc, plan.block(C), coef, kind, consts, pixels)
    if not plan.in_place_output:
        y[:, start:start + C] = dst.reshape(N, C, plan.Hc, plan.Wc)[:, :, :plan.OH, :plan.OW]
    return _checked_output(finite, y, x, w, start, C, plan, coef, kind)


def _checked_output(finite, y, x, w, start, C, plan, coef, kind):
    """y, its channels [start, start + C) recomputed exactly when the kernel saw an inf or a NaN: the masked taps
    may have spread it, and the epilogue's activation needs PyTorch's semantics there (``_exact_activation``)."""
    if not finite:
        with np.errstate(invalid="ignore", over="ignore"):  # quietly, as the kernel (inf - inf is NaN)
            exact = im2col.conv2d_forward(x[:, start:start + C], w[:, None], plan.stride, plan.padding,
                                          plan.dilation, C)
            y[:, start:start + C] = exact if kind < 0 else _exact_activation(exact, coef, kind)
    return y


def depthwise_backward_input(gy, w, input_hw, stride=(1, 1), padding=(0, 0), dilation=(1, 1), *, channels=None,
                             out=None):
    """gx (N, C, H, W): gradient of the loss w.r.t. x, given gy = dL/dy (N, C, OH, OW).

    ``channels=slice(a, b)``: gy holds more channels, [a, b) are this w's; the result goes to
    channels [a, b) of ``out`` (N, gy's channels, H, W), which is returned (see depthwise_forward).
    """
    gy = _array("gy", gy, 4)
    N, Cy = gy.shape[:2]
    w = _array("w", w, 3, gy.dtype)
    start, C = _channel_range(channels, Cy, w.shape[0], "gy")
    H, W = as_pair(input_hw, "input_hw", "depthwise")
    plan = _plan(H, W, w.shape[1], w.shape[2], stride, padding, dilation)
    if gy.shape[2:] != (plan.OH, plan.OW):
        raise ValueError(f"gy {gy.shape} does not match input {H}x{W} with kernel {w.shape[1:]}: "
                         f"expected (N, C, {plan.OH}, {plan.OW})")
    gx = _result(out, N, Cy, H, W, gy.dtype)
    if depthwise_dense.applies(H, W, plan.OH, plan.OW, *w.shape[1:]):
        finite = depthwise_dense.backward_input(gy, gx, start, w, plan.geometry)
        return _checked_input_gradient(finite, gx, gy, w, start, C, plan)
    if depthwise_rows.applies(H, W, w.shape[1], w.shape[2], plan.stride, plan.padding, plan.dilation):
        depthwise_rows.backward_input(gy, gx, start, w, plan.stride[0])  # real zero padding: exact for inf and NaN
        return gx
    src, src0 = plan.output_canvas(gy, start, C)
    if plan.stride2_exact:  # each gx phase plane collects the taps that read it, merged into gx per block
        order = plan.taps_by_phase
        finite = _shifted_sum_merged(src[None], src0, gx.reshape(N, -1), start * H * W, w.reshape(C, -1),
                                     plan.phase_parts, -plan.tap_u[order], -plan.tap_v[order], plan.tap_k[order],
                                     plan.Hc, plan.Wc, plan.block(C))
        return _checked_input_gradient(finite, gx, gy, w, start, C, plan)
    if plan.in_place_input:  # one phase, the size of gx: write straight into it
        gxq, gx0 = gx.reshape(1, N, -1), start * H * W
    else:
        gxq, gx0 = np.empty((plan.sh * plan.sw, N, C * plan.Hc * plan.Wc), dtype=gy.dtype), 0
    no_epilogue = _epilogue(None, C, gy.dtype)
    finite = True
    for phase in range(plan.sh * plan.sw):  # each phase plane of gx collects the taps that read it
        sel = plan.tap_phase == phase
        finite &= _shifted_sum(src[None], src0, gxq[phase], gx0, w.reshape(C, -1), np.zeros(sel.sum(), np.int64),
                               -plan.tap_u[sel], -plan.tap_v[sel], plan.tap_k[sel], plan.Hc, plan.Wc,
                               plan.block(C), *no_epilogue, _NO_PIXELS[gy.dtype])
    if not plan.in_place_input:
        _phases(gx, start, gxq, plan.sh, plan.sw, plan.Hc, plan.Wc, False)
    return _checked_input_gradient(finite, gx, gy, w, start, C, plan)


def _checked_input_gradient(finite, gx, gy, w, start, C, plan):
    """gx, its channels [start, start + C) recomputed exactly when the kernel saw inf or NaN in gy or w
    (see depthwise_forward)."""
    if not finite:
        with np.errstate(invalid="ignore", over="ignore"):
            gx[:, start:start + C] = im2col.conv2d_backward_input(gy[:, start:start + C], w[:, None],
                                                                  (plan.H, plan.W), plan.stride, plan.padding,
                                                                  plan.dilation, C)
    return gx


def depthwise_backward_weight(x, gy, kernel_hw, stride=(1, 1), padding=(0, 0), dilation=(1, 1), *, channels=None):
    """gw (C, KH, KW): gradient of the loss w.r.t. w, given x and gy = dL/dy.

    ``channels=slice(a, b)``: x and gy hold more channels; gw is that of the group [a, b).
    """
    x = _array("x", x, 4)
    gy = _array("gy", gy, 4, x.dtype)
    N, Cx, H, W = x.shape
    start, C = _channel_range(channels, Cx, None, "x")
    KH, KW = as_pair(kernel_hw, "kernel_hw", "depthwise")
    plan = _plan(H, W, KH, KW, stride, padding, dilation)
    if gy.shape != (N, Cx, plan.OH, plan.OW):
        raise ValueError(f"gy {gy.shape} does not match x {x.shape} with kernel ({KH}, {KW}): "
                         f"expected {(N, Cx, plan.OH, plan.OW)}")
    if depthwise_dense.applies(H, W, plan.OH, plan.OW, KH, KW):
        gw = depthwise_dense.backward_weight(x, gy, start, C, (KH, KW), plan.geometry)
    elif depthwise_rows.applies_to_weight_gradient(H, W, KH, KW, plan.stride, plan.padding, plan.dilation):
        gw = depthwise_rows.backward_weight(x, gy, start, C, KH, plan.stride[0])
    else:
        gw = np.zeros((C, KH * KW), dtype=x.dtype)
        src, src0, pixels = plan.input_canvas(x, start, C)
        g, g0 = plan.output_canvas(gy, start, C)
        _tap_products(src, src0, g, g0, gw, plan.tap_phase, plan.tap_u, plan.tap_v, plan.tap_k, plan.Hc, plan.Wc,
                      plan.block(C), pixels)
    if not np.isfinite(gw).all():  # inf or NaN in x or gy (a masked tap multiplies it by 0): recompute exactly
        with np.errstate(invalid="ignore", over="ignore"):
            return im2col.conv2d_backward_weight(x[:, start:start + C], gy[:, start:start + C], (KH, KW),
                                                 plan.stride, plan.padding, plan.dilation, C)[:, 0]
    return gw.reshape(C, KH, KW)
