"""Numba depthwise convolution kernels (first version: padded plane, row sweeps)."""
import numba
import numpy as np
from numba import njit, prange


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


@njit(parallel=True, cache=True, fastmath=True)
def _forward_kernel(x, w, y, sh, sw, ph, pw, dh, dw, chunks):
    N, C, H, W = x.shape
    KH, KW = w.shape[1], w.shape[2]
    OH, OW = y.shape[2], y.shape[3]
    HP = (OH - 1) * sh + (KH - 1) * dh + 1
    WP = (OW - 1) * sw + (KW - 1) * dw + 1
    planes = N * C
    for t in prange(chunks):
        xp = np.zeros((HP, WP), dtype=x.dtype)
        acc = np.empty(OW, dtype=x.dtype)
        for p in range(t * planes // chunks, (t + 1) * planes // chunks):
            n = p // C
            c = p % C
            for h in range(H):
                r = h + ph
                if r < HP:
                    for q in range(W):
                        if q + pw < WP:
                            xp[r, q + pw] = x[n, c, h, q]
            for oh in range(OH):
                acc[:] = 0
                for i in range(KH):
                    r = oh * sh + i * dh
                    for j in range(KW):
                        wv = w[c, i, j]
                        q0 = j * dw
                        for ow in range(OW):
                            acc[ow] += xp[r, q0 + ow * sw] * wv
                for ow in range(OW):
                    y[n, c, oh, ow] = acc[ow]


@njit(parallel=True, cache=True, fastmath=True)
def _backward_input_kernel(gy, w, gx, sh, sw, ph, pw, dh, dw, chunks):
    N, C, H, W = gx.shape
    KH, KW = w.shape[1], w.shape[2]
    OH, OW = gy.shape[2], gy.shape[3]
    HP = (OH - 1) * sh + (KH - 1) * dh + 1
    WP = (OW - 1) * sw + (KW - 1) * dw + 1
    planes = N * C
    for t in prange(chunks):
        gp = np.empty((HP, WP), dtype=gy.dtype)
        for p in range(t * planes // chunks, (t + 1) * planes // chunks):
            n = p // C
            c = p % C
            gp[:, :] = 0
            for oh in range(OH):
                for i in range(KH):
                    r = oh * sh + i * dh
                    for j in range(KW):
                        wv = w[c, i, j]
                        q0 = j * dw
                        for ow in range(OW):
                            gp[r, q0 + ow * sw] += gy[n, c, oh, ow] * wv
            for h in range(H):
                r = h + ph
                for q in range(W):
                    if r < HP and q + pw < WP:
                        gx[n, c, h, q] = gp[r, q + pw]
                    else:
                        gx[n, c, h, q] = 0


@njit(parallel=True, cache=True, fastmath=True)
def _backward_weight_kernel(x, gy, gw, sh, sw, ph, pw, dh, dw):
    N, C, H, W = x.shape
    KH, KW = gw.shape[1], gw.shape[2]
    OH, OW = gy.shape[2], gy.shape[3]
    HP = (OH - 1) * sh + (KH - 1) * dh + 1
    WP = (OW - 1) * sw + (KW - 1) * dw + 1
    for c in prange(C):
        xp = np.zeros((HP, WP), dtype=x.dtype)
        for n in range(N):
            for h in range(H):
                r = h + ph
                if r < HP:
                    for q in range(W):
                        if q + pw < WP:
                            xp[r, q + pw] = x[n, c, h, q]
            for oh in range(OH):
                for i in range(KH):
                    r = oh * sh + i * dh
                    for j in range(KW):
                        q0 = j * dw
                        s = gw.dtype.type(0)
                        for ow in range(OW):
                            s += gy[n, c, oh, ow] * xp[r, q0 + ow * sw]
                        gw[c, i, j] += s


def _chunks(planes):
    return max(1, min(planes, 4 * numba.get_num_threads()))


def _check(name, a, ndim):
    if not isinstance(a, np.ndarray) or a.ndim != ndim or a.dtype not in (np.float32, np.float64):
        raise ValueError(f"{name} must be a {ndim}-d float32/float64 array, got "
                         f"{type(a).__name__} {getattr(a, 'shape', '')} {getattr(a, 'dtype', '')}")
    return np.ascontiguousarray(a)


def _geometry(stride, padding, dilation):
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    dh, dw = _pair(dilation, "dilation")
    if min(sh, sw, dh, dw) < 1 or min(ph, pw) < 0:
        raise ValueError(f"need stride >= 1, dilation >= 1, padding >= 0; got stride={stride}, "
                         f"padding={padding}, dilation={dilation}")
    return sh, sw, ph, pw, dh, dw


def _out_hw(H, W, KH, KW, geo):
    sh, sw, ph, pw, dh, dw = geo
    OH, OW = output_size(H, KH, sh, ph, dh), output_size(W, KW, sw, pw, dw)
    if OH < 1 or OW < 1:
        raise ValueError(f"input {H}x{W} is too small for kernel {KH}x{KW} with padding ({ph}, {pw}) "
                         f"and dilation ({dh}, {dw})")
    return OH, OW


def depthwise_forward(x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    x = _check("x", x, 4)
    w = _check("w", w, 3).astype(x.dtype, copy=False)
    if w.shape[0] != x.shape[1]:
        raise ValueError(f"w has {w.shape[0]} channels but x (N,C,H,W)={x.shape} has {x.shape[1]}")
    geo = _geometry(stride, padding, dilation)
    OH, OW = _out_hw(x.shape[2], x.shape[3], w.shape[1], w.shape[2], geo)
    y = np.empty((x.shape[0], x.shape[1], OH, OW), dtype=x.dtype)
    _forward_kernel(x, w, y, *geo, _chunks(y.shape[0] * y.shape[1]))
    return y


def depthwise_backward_input(gy, w, input_hw, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    gy = _check("gy", gy, 4)
    w = _check("w", w, 3).astype(gy.dtype, copy=False)
    H, W = _pair(input_hw, "input_hw")
    geo = _geometry(stride, padding, dilation)
    OH, OW = _out_hw(H, W, w.shape[1], w.shape[2], geo)
    if gy.shape[2:] != (OH, OW) or w.shape[0] != gy.shape[1]:
        raise ValueError(f"gy {gy.shape} does not match input {H}x{W} and w {w.shape}: expected "
                         f"(N, {w.shape[0]}, {OH}, {OW})")
    gx = np.empty((gy.shape[0], gy.shape[1], H, W), dtype=gy.dtype)
    _backward_input_kernel(gy, w, gx, *geo, _chunks(gx.shape[0] * gx.shape[1]))
    return gx


def depthwise_backward_weight(x, gy, kernel_hw, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    x = _check("x", x, 4)
    gy = _check("gy", gy, 4).astype(x.dtype, copy=False)
    KH, KW = _pair(kernel_hw, "kernel_hw")
    geo = _geometry(stride, padding, dilation)
    OH, OW = _out_hw(x.shape[2], x.shape[3], KH, KW, geo)
    if gy.shape != (x.shape[0], x.shape[1], OH, OW):
        raise ValueError(f"gy {gy.shape} does not match x {x.shape} and kernel {KH}x{KW}: expected "
                         f"{(x.shape[0], x.shape[1], OH, OW)}")
    gw = np.zeros((x.shape[1], KH, KW), dtype=x.dtype)
    _backward_weight_kernel(x, gy, gw, *geo)
    return gw
