"""Depthwise convolution kernels in Numba: forward, input gradient, weight gradient.

A depthwise convolution filters every channel with its own small kernel (NCHW,
``w`` of shape (C, KH, KW)):

    y[n, c, oh, ow] = sum_{i, j} x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw] * w[c, i, j]

(positions outside the input read zero), with OH = (H + 2*ph - dh*(KH-1) - 1)//sh + 1
and the same for OW. Its two gradients follow from the chain rule:

* gx[n, c, h, q] = sum of gy[n, c, oh, ow] * w[c, i, j] over every (oh, ow, i, j) whose
  tap lands on (h, q): for stride 1 this is the same convolution applied to gy with the
  kernel flipped (i -> KH-1-i, j -> KW-1-j) and the geometry transposed, i.e. every
  shift below is negated.
* gw[c, i, j] = sum over n, oh, ow of gy[n, c, oh, ow] * x[n, c, oh*sh - ph + i*dh, ...]:
  each tap's weight collects, over the batch and every output position, the product of
  the output gradient with the input value that tap saw.

The strategy: a convolution is a sum of shifted copies
------------------------------------------------------
Flatten each (H, W) plane row by row. For stride 1, tap (i, j) links output position
p = oh*W + ow to input position p + s with ONE constant shift s = (i*dh-ph)*W + (j*dw-pw).
So the forward pass is KH*KW multiply-adds of whole shifted vectors:

    y_flat += shift(x_flat, s_t) * wm_t        for every tap t = (i, j)

where the *weight map* wm_t[p] is w[c, i, j] where the tap stays inside the plane and 0
where it would fall into the zero padding (or wrap into the next row or plane). Because
the planes of all channels of an image are contiguous in NCHW, one such vector can span
many channels (a "block" of channels, each with its own weight in wm_t): small 4x4 or
8x8 planes then still give long loops, which is what SIMD hardware needs.

* input gradient: the same loop with every shift negated (gx_flat += shift(gy_flat, -s_t)
  * wmT_t) -- the "flipped kernel" in vector form;
* weight gradient: acc_t += gy_flat * shift(x_flat, s_t), summed over the batch; at the
  end gw[c, t] = sum over the plane of acc_t * mask_t.

General geometry. Outputs and inputs must share one flat layout (the *canvas*, Hc x Wc
per plane) for a tap to be a single shift. When the output is the same size as the input
(stride 1, "same" padding: every MixConv layer) x, y, gy and gx are used in place. Other
paddings compute on a zero-filled canvas of max(input, output) size and crop. A stride
s > 1 is turned into stride 1 by the *polyphase* split: x[sh*r + a, sw*q + b] is row r,
column q of phase plane (a, b), so tap (i, j) reads phase plane
((i*dh-ph) mod sh, (j*dw-pw) mod sw) shifted by ((i*dh-ph)//sh, (j*dw-pw)//sw).

Numba rules followed here (each one was measured, see benchmarks/bench_depthwise.py)
---------------------------------------------------------------------------------
1. ``@njit(parallel=True, cache=True)``: ``prange`` only on the outermost loop (blocks
   of channels, so no two threads ever write the same element); everything inside is
   plain ``range``. ``cache=True`` stores the machine code next to this file, so only
   the first process pays for compilation; each dtype compiles on its first call.
2. The hot loop is tiny and unit-stride: ``dst[e] += src[e] * wm[e]`` over 1-D slices
   that start at 0. Slicing makes no copy and allocates nothing; indexing from 0 lets
   LLVM prove indices are non-negative (no wrap-around checks), so it vectorises the
   loop with AVX2/FMA. A loop with a runtime stride, or an index like ``q0 + ow*sw``,
   stays scalar and runs about 5x slower.
3. ``fastmath=True`` allows fused multiply-adds (and, for the final sums, reordering).
4. No allocation inside inner loops: weight maps and accumulators are built once per
   block of channels, then reused for all N images.
5. No Python objects, no exceptions in kernels: the wrappers below check shapes and
   dtypes and prepare the small tap tables (phase, row shift, column shift) with NumPy.
"""
import numba
import numpy as np
from numba import njit, prange

_BLOCK_ELEMENTS = 4096  # target length of the flat vectors one block of channels works on
_WEIGHT_MAP_ELEMENTS = 65536  # cap on (taps x block length): the weight maps of a block, 256 KB in float32


@njit(cache=True, fastmath=True)
def _madd(dst, src, scale):
    """dst += src * scale, elementwise over 1-D arrays of equal length."""
    for e in range(dst.size):
        dst[e] += src[e] * scale[e]


@njit(cache=True, fastmath=True)
def _madd4(dst, s0, s1, s2, s3, m0, m1, m2, m3):
    """dst += s0*m0 + s1*m1 + s2*m2 + s3*m3: four taps for one load and store of dst."""
    for e in range(dst.size):
        dst[e] += s0[e] * m0[e] + s1[e] * m1[e] + s2[e] * m2[e] + s3[e] * m3[e]


@njit(cache=True)
def _valid_range(base, s, E, L):
    """Positions [lo, hi) of a block (start base, length E) whose shifted source base+s+e is in [0, L)."""
    return max(0, -(base + s)), min(E, L - base - s)


@njit(cache=True)
def _tap_masks(tap_u, tap_v, Hc, Wc, dtype_ref):
    """mask[t, r*Wc + q] = 1 where tap t, shifted by (u, v), stays inside the Hc x Wc plane."""
    T = tap_u.size
    mask = np.zeros((T, Hc * Wc), dtype=dtype_ref.dtype)
    for t in range(T):
        for r in range(max(0, -tap_u[t]), min(Hc, Hc - tap_u[t])):
            for q in range(max(0, -tap_v[t]), min(Wc, Wc - tap_v[t])):
                mask[t, r * Wc + q] = 1
    return mask


@njit(parallel=True, cache=True, fastmath=True)
def _shifted_sum(src, dst, w, tap_phase, tap_u, tap_v, tap_k, Hc, Wc, cb):
    """dst[n, p] = sum_t src[tap_phase[t], n, p + u_t*Wc + v_t] * w[c(p), tap_k[t]] (masked).

    src: (phases, N, C*Hc*Wc); dst: (N, C*Hc*Wc); w: (C, KH*KW); taps as 1-D int arrays.
    Channels are processed in blocks of ``cb``, one block per parallel iteration.
    """
    N, L = dst.shape
    C = w.shape[0]
    P = Hc * Wc
    T = tap_u.size
    mask = _tap_masks(tap_u, tap_v, Hc, Wc, w)
    for blk in prange((C + cb - 1) // cb):
        c0 = blk * cb
        cn = min(cb, C - c0)
        E = cn * P
        base = c0 * P
        wm = np.empty((T, E), dtype=w.dtype)  # weight maps of this block of channels
        for t in range(T):
            for cc in range(cn):
                for p in range(P):
                    wm[t, cc * P + p] = mask[t, p] * w[c0 + cc, tap_k[t]]
        for n in range(N):
            out = dst[n, base:base + E]
            out[:] = 0
            for t0 in range(0, T - 3, 4):
                # the range all four taps can read; a few positions near the ends of the
                # array are reached by some taps only and are done tap by tap below
                lo, hi = 0, E
                for t in range(t0, t0 + 4):
                    a, b = _valid_range(base, tap_u[t] * Wc + tap_v[t], E, L)
                    lo, hi = max(lo, a), min(hi, b)
                hi = max(hi, lo)
                s0 = base + tap_u[t0] * Wc + tap_v[t0]
                s1 = base + tap_u[t0 + 1] * Wc + tap_v[t0 + 1]
                s2 = base + tap_u[t0 + 2] * Wc + tap_v[t0 + 2]
                s3 = base + tap_u[t0 + 3] * Wc + tap_v[t0 + 3]
                _madd4(out[lo:hi],
                       src[tap_phase[t0], n, s0 + lo:s0 + hi], src[tap_phase[t0 + 1], n, s1 + lo:s1 + hi],
                       src[tap_phase[t0 + 2], n, s2 + lo:s2 + hi], src[tap_phase[t0 + 3], n, s3 + lo:s3 + hi],
                       wm[t0, lo:hi], wm[t0 + 1, lo:hi], wm[t0 + 2, lo:hi], wm[t0 + 3, lo:hi])
                for t in range(t0, t0 + 4):
                    s = tap_u[t] * Wc + tap_v[t]
                    a, b = _valid_range(base, s, E, L)
                    if min(lo, b) > a:
                        _madd(out[a:min(lo, b)], src[tap_phase[t], n, base + s + a:base + s + min(lo, b)],
                              wm[t, a:min(lo, b)])
                    if b > max(hi, a):
                        _madd(out[max(hi, a):b], src[tap_phase[t], n, base + s + max(hi, a):base + s + b],
                              wm[t, max(hi, a):b])
            for t in range(T - T % 4, T):
                s = tap_u[t] * Wc + tap_v[t]
                lo, hi = _valid_range(base, s, E, L)
                if hi > lo:
                    _madd(out[lo:hi], src[tap_phase[t], n, base + s + lo:base + s + hi], wm[t, lo:hi])


@njit(parallel=True, cache=True, fastmath=True)
def _tap_products(src, gy, gw, tap_phase, tap_u, tap_v, tap_k, Hc, Wc, cb):
    """gw[c, tap_k[t]] = sum_{n, p} gy[n, p] * src[tap_phase[t], n, p + u_t*Wc + v_t] (masked)."""
    N, L = gy.shape
    C = gw.shape[0]
    P = Hc * Wc
    T = tap_u.size
    mask = _tap_masks(tap_u, tap_v, Hc, Wc, gw)
    for blk in prange((C + cb - 1) // cb):
        c0 = blk * cb
        cn = min(cb, C - c0)
        E = cn * P
        base = c0 * P
        acc = np.zeros((T, E), dtype=gw.dtype)
        for n in range(0, N - 3, 4):  # four images per sweep: acc is loaded and stored once
            for t in range(T):
                s = tap_u[t] * Wc + tap_v[t]
                lo, hi = _valid_range(base, s, E, L)
                if hi > lo:
                    x = src[tap_phase[t]]
                    a, b = base + lo, base + hi  # gy positions; x positions are shifted by s
                    _madd4(acc[t, lo:hi], gy[n, a:b], gy[n + 1, a:b], gy[n + 2, a:b], gy[n + 3, a:b],
                           x[n, a + s:b + s], x[n + 1, a + s:b + s], x[n + 2, a + s:b + s], x[n + 3, a + s:b + s])
        for n in range(N - N % 4, N):
            for t in range(T):
                s = tap_u[t] * Wc + tap_v[t]
                lo, hi = _valid_range(base, s, E, L)
                if hi > lo:
                    _madd(acc[t, lo:hi], gy[n, base + lo:base + hi], src[tap_phase[t], n, base + s + lo:base + s + hi])
        for cc in range(cn):
            for t in range(T):
                total = gw.dtype.type(0)
                a = acc[t, cc * P:(cc + 1) * P]
                for p in range(P):
                    total += a[p] * mask[t, p]
                gw[c0 + cc, tap_k[t]] = total


@njit(parallel=True, cache=True)
def _phases(x, xq, sh, sw, Hc, Wc, split):
    """Polyphase split (split=True): xq[a*sw + b, n, c*Hc*Wc + r*Wc + q] = x[n, c, r*sh + a, q*sw + b],
    zero where (r*sh + a, q*sw + b) lies outside x; or the inverse merge (split=False)."""
    N, C, H, W = x.shape
    P = Hc * Wc
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        for a in range(sh):
            rows = min(Hc, (H - a + sh - 1) // sh)  # phase rows that hold data
            for b in range(sw):
                cols = min(Wc, (W - b + sw - 1) // sw)
                plane = xq[a * sw + b, n, c * P:(c + 1) * P]
                if split:
                    plane[:] = 0
                    for r in range(rows):
                        for q in range(cols):
                            plane[r * Wc + q] = x[n, c, r * sh + a, q * sw + b]
                else:
                    for r in range(rows):
                        for q in range(cols):
                            x[n, c, r * sh + a, q * sw + b] = plane[r * Wc + q]


# ----------------------------------------------------------------------------- geometry


def _pair(value, name):
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    try:
        a, b = value
        return int(a), int(b)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}") from None


def output_size(size, kernel, stride, padding, dilation):
    """Output length of a convolution along one axis (torch's formula)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


class _Plan:
    """Everything the kernels need to know about one convolution geometry."""

    def __init__(self, H, W, KH, KW, stride, padding, dilation):
        self.sh, self.sw = _pair(stride, "stride")
        ph, pw = _pair(padding, "padding")
        dh, dw = _pair(dilation, "dilation")
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
        self.tap_phase = ((i % self.sh) * self.sw + j % self.sw).astype(np.int64)
        self.tap_u = (i // self.sh).astype(np.int64)
        self.tap_v = (j // self.sw).astype(np.int64)
        self.tap_k = np.arange(KH * KW, dtype=np.int64)
        self.in_place_input = self.sh == self.sw == 1 and (H, W) == (self.Hc, self.Wc)
        self.in_place_output = (self.OH, self.OW) == (self.Hc, self.Wc)

    def block(self, C):
        """Channels per parallel block: whole planes, about _BLOCK_ELEMENTS elements in all but
        small enough for the T weight maps to stay in cache, and an equal share per thread."""
        elements = min(_BLOCK_ELEMENTS, _WEIGHT_MAP_ELEMENTS // self.tap_u.size)
        per_block = max(1, min(C, elements // (self.Hc * self.Wc)))
        threads = numba.get_num_threads()
        blocks = -(-C // per_block)
        blocks = min(C, -(-blocks // threads) * threads)  # a multiple of the thread count
        return -(-C // blocks)

    def input_canvas(self, x):
        """x (N, C, H, W) -> polyphase canvas (sh*sw, N, C*Hc*Wc), zero-filled (no copy if trivial)."""
        N, C = x.shape[:2]
        if self.in_place_input:
            return x.reshape(1, N, -1)
        xq = np.empty((self.sh * self.sw, N, C * self.Hc * self.Wc), dtype=x.dtype)
        _phases(x, xq, self.sh, self.sw, self.Hc, self.Wc, True)
        return xq

    def from_input_canvas(self, xq, N, C):
        """Inverse of input_canvas: interleave the phase planes back into (N, C, H, W)."""
        if self.in_place_input:
            return xq.reshape(N, C, self.H, self.W)
        x = np.empty((N, C, self.H, self.W), dtype=xq.dtype)
        _phases(x, xq, self.sh, self.sw, self.Hc, self.Wc, False)
        return x

    def output_canvas(self, gy):
        """gy (N, C, OH, OW) -> (N, C*Hc*Wc), zero outside the OH x OW corner."""
        N, C = gy.shape[:2]
        if self.in_place_output:
            return gy.reshape(N, -1)
        gc = np.zeros((N, C, self.Hc, self.Wc), dtype=gy.dtype)
        gc[:, :, :self.OH, :self.OW] = gy
        return gc.reshape(N, -1)

    def crop_output(self, yc, N, C):
        y = yc.reshape(N, C, self.Hc, self.Wc)
        return y if self.in_place_output else np.ascontiguousarray(y[:, :, :self.OH, :self.OW])


# ----------------------------------------------------------------------------- public API


def _array(name, a, ndim, dtype=None):
    if not isinstance(a, np.ndarray) or a.ndim != ndim or a.dtype not in (np.float32, np.float64):
        raise ValueError(f"{name} must be a {ndim}-d float32 or float64 NumPy array, got "
                         f"{type(a).__name__} {getattr(a, 'shape', '')} {getattr(a, 'dtype', '')}")
    if dtype is not None and a.dtype != dtype:
        raise ValueError(f"{name} has dtype {a.dtype} but the other array has {dtype}")
    return np.ascontiguousarray(a)


def _weights(w, C, dtype):
    w = _array("w", w, 3, dtype)
    if w.shape[0] != C:
        raise ValueError(f"w (C, KH, KW)={w.shape} must have C={C} channels")
    return w


def depthwise_forward(x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """y (N, C, OH, OW) = depthwise convolution of x (N, C, H, W) with w (C, KH, KW)."""
    x = _array("x", x, 4)
    N, C, H, W = x.shape
    w = _weights(w, C, x.dtype)
    plan = _Plan(H, W, w.shape[1], w.shape[2], stride, padding, dilation)
    src = plan.input_canvas(x)
    if plan.in_place_output:
        y = np.empty((N, C, plan.OH, plan.OW), dtype=x.dtype)
        dst = y.reshape(N, -1)
    else:
        dst = np.empty((N, C * plan.Hc * plan.Wc), dtype=x.dtype)
    _shifted_sum(src, dst, w.reshape(C, -1), plan.tap_phase, plan.tap_u, plan.tap_v, plan.tap_k,
                 plan.Hc, plan.Wc, plan.block(C))
    return plan.crop_output(dst, N, C)


def depthwise_backward_input(gy, w, input_hw, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """gx (N, C, H, W): gradient of the loss w.r.t. x, given gy = dL/dy (N, C, OH, OW)."""
    gy = _array("gy", gy, 4)
    N, C = gy.shape[:2]
    w = _weights(w, C, gy.dtype)
    H, W = _pair(input_hw, "input_hw")
    plan = _Plan(H, W, w.shape[1], w.shape[2], stride, padding, dilation)
    if gy.shape[2:] != (plan.OH, plan.OW):
        raise ValueError(f"gy {gy.shape} does not match input {H}x{W} with kernel {w.shape[1:]}: "
                         f"expected (N, C, {plan.OH}, {plan.OW})")
    src = plan.output_canvas(gy)[None]
    phases = plan.sh * plan.sw
    gxq = np.empty((phases, N, C * plan.Hc * plan.Wc), dtype=gy.dtype)
    for phase in range(phases):  # each phase plane of gx collects the taps that read it
        sel = plan.tap_phase == phase
        _shifted_sum(src, gxq[phase], w.reshape(C, -1), np.zeros(sel.sum(), np.int64),
                     -plan.tap_u[sel], -plan.tap_v[sel], plan.tap_k[sel], plan.Hc, plan.Wc, plan.block(C))
    return plan.from_input_canvas(gxq, N, C)


def depthwise_backward_weight(x, gy, kernel_hw, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """gw (C, KH, KW): gradient of the loss w.r.t. w, given x and gy = dL/dy."""
    x = _array("x", x, 4)
    gy = _array("gy", gy, 4, x.dtype)
    N, C, H, W = x.shape
    KH, KW = _pair(kernel_hw, "kernel_hw")
    plan = _Plan(H, W, KH, KW, stride, padding, dilation)
    if gy.shape != (N, C, plan.OH, plan.OW):
        raise ValueError(f"gy {gy.shape} does not match x {x.shape} with kernel ({KH}, {KW}): "
                         f"expected {(N, C, plan.OH, plan.OW)}")
    gw = np.zeros((C, KH * KW), dtype=x.dtype)
    _tap_products(plan.input_canvas(x), plan.output_canvas(gy), gw, plan.tap_phase, plan.tap_u,
                  plan.tap_v, plan.tap_k, plan.Hc, plan.Wc, plan.block(C))
    return gw.reshape(C, KH, KW)
