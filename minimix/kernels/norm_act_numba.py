"""Batch normalisation fused with its activation, in Numba: forward and backward.

In MixNet every convolution is followed by BatchNorm and (mostly) an activation.
Done as separate NumPy ops, each is several full passes over a large activation
array (mean, centring, variance, scaling, exp, where, products...). Here one
kernel does a channel at a time, so that channel's values (N x H x W, at most a
few hundred KB) stay in the core's cache between the passes.

Notation for one channel c, over its M = N*H*W values (x as (N, C, P), P = H*W)::

    mean = sum(x) / M,  var = sum((x - mean)^2) / M         (training; eval: running stats)
    x_hat = (x - mean) * inv_std,   inv_std = 1 / sqrt(var + eps)
    z = gamma * x_hat + beta                                 (the BatchNorm output)
    y = act(z)       act: identity, relu(z) = max(z, 0), silu(z) = z * sigmoid(z)

Backward, given g = dL/dy: first through the activation, gz = g * act'(z), with

    relu'(z) = [not z <= 0] (1 for NaN, as torch),   silu'(z) = s * (1 + z * (1 - s)),  s = sigmoid(z)

then through BatchNorm (the textbook formula; mean and var depend on x in training)::

    dL/dbeta = sum(gz),   dL/dgamma = sum(gz * x_hat)
    dL/dx = gamma * inv_std * (gz - sum(gz) / M - x_hat * sum(gz * x_hat) / M)    training
    dL/dx = gamma * inv_std * gz                                                  eval

Memory: the backward recomputes x_hat and z from x (the convolution's output) and
reads y (the next layer keeps it anyway): both are kept by reference, so the op
allocates nothing but its output. From y it also gets s = y / z without an exp.

The SiLU forward, y = z / (1 + exp(-z)), takes its exp from ``vector_math.exp``: plain
arithmetic that vectorizes, where Numba's ``math.exp`` is one C library call per element
(no SIMD: slower than NumPy's vectorized exp, which is why an earlier version ran a
separate NumPy pass over y). For z < -87 exp(-z) saturates at 2^126 and |y| < 1e-36
instead of smaller. Sums run in float64.

Numba: ``prange`` over channels (each thread owns whole channels, so no two write
the same sum); ``fastmath`` without the no-inf/no-NaN assumptions (only
contraction to FMA and reassociation of sums), so NaN inputs stay NaN;
``error_model="numpy"``: a division by zero gives inf/NaN as in NumPy instead of
raising, which removes a branch per division that kept the loops from vectorizing.
"""
import math

import numba
import numpy as np
from numba import njit, prange

from .vector_math import exp, exp_constants

IDENTITY, RELU, SILU = 0, 1, 2
ACTIVATIONS = {None: IDENTITY, "identity": IDENTITY, "relu": RELU, "silu": SILU}
_FASTMATH = {"contract", "reassoc"}


@njit(cache=True, fastmath=_FASTMATH, error_model="numpy", inline="always")
def _affine(x, scale, shift):
    """z = x * scale + shift: the BatchNorm output, one expression for forward and backward."""
    return x * scale + shift


@njit(cache=True, fastmath=_FASTMATH, error_model="numpy", inline="always")
def _silu(z, c):
    """silu(z) = z * sigmoid(z) = z / (1 + exp(-z)); c = exp_constants(z's dtype), whose last entry is 1."""
    return z / (c[c.size - 1] + exp(-z, c))


@njit(cache=True, fastmath=_FASTMATH, error_model="numpy", inline="always")
def _act_grad(z, y, kind, one):
    """act'(z) for kind IDENTITY, RELU or SILU, given also y = act(z); ``one`` is 1 in x's dtype.

    SiLU: s = y / z recovers sigmoid(z) from the saved output (s(0) = 1/2), so the
    backward needs no exp: silu'(z) = s * (1 + z * (1 - s)) = s + y * (1 - s).
    Constants are built from ``one``: a float literal such as 0.5 is float64 in Numba
    and would turn the whole float32 computation into float64 (half the SIMD width).
    """
    if kind == SILU:
        s = y / z if z != 0 else one / (one + one)
        return s + y * (one - s)
    if kind == RELU:  # torch's rule: 0 where z <= 0, so a NaN z passes the gradient on
        return one - one if z <= 0 else one
    return one


@njit(cache=True, fastmath=_FASTMATH, error_model="numpy", inline="always")
def affine_act(src, dst, scale, shift, kind, consts):
    """dst = act(src * scale + shift) over 1-D arrays of one length (dst may be src): the elementwise
    part of the forward, shared with the depthwise kernels' inference epilogue. Inlined into its
    callers: called as a function, its loop was not vectorized.

    ReLU: z where z > 0 and where z is NaN (z <= 0 is False for NaN: NaN passes through, as in torch),
    else 0 in z's dtype. Its zero is read from ``consts`` once, before the loop: read inside the loop
    (the store to dst might change it, for all the compiler knows), it kept the loop scalar, with a
    branch per element that random signs mispredict, several times slower than SiLU
    (``python benchmarks/norm_act_planes.py`` prints the forward with each activation)."""
    # Numba's cache (cache=True) checks only the content of each cached function's own file: after editing
    # this inlined function, its callers (depthwise_numba.py, pointwise_fused.py) keep their old machine
    # code until NUMBA_CACHE_DIR is cleared. Touching their files does not help, nor does a fresh checkout
    # into the same cache folder; .ci/run names its folder by a hash of minimix/kernels/*.py for that reason.
    if kind == SILU:
        for p in range(src.size):
            dst[p] = _silu(_affine(src[p], scale, shift), consts)
    elif kind == RELU:
        zero = consts[consts.size - 1] - consts[consts.size - 1]
        for p in range(src.size):
            z = _affine(src[p], scale, shift)
            dst[p] = zero if z <= 0 else z
    else:
        for p in range(src.size):
            dst[p] = _affine(src[p], scale, shift)


@njit(parallel=True, cache=True, fastmath=_FASTMATH, error_model="numpy")
def _forward(x, gamma, beta, mean, var, eps, kind, training, y, coef, consts):
    """y = act(gamma * (x - mean) * inv_std + beta) per channel; x, y: (N, C, P).

    training: mean and var (float64, (C,)) are computed here from x and written out; else
    they are read. One pass gives both: with d = x - k for a value k of the channel,
    mean = k + sum(d)/M and var = sum(d^2)/M - (sum(d)/M)^2. Without the shift k that
    difference cancels catastrophically when |mean| >> std; with it, k lies within a few
    std of the mean, and the sums run in float64. (Two passes, mean then squares, would read
    every value twice; on small planes the second pass runs from cache but still computes.)
    ``coef`` (2, C) in x's dtype receives each channel's scale and shift (z = x * scale
    + shift): reading them back from it keeps z, and its exp, in x's precision.
    consts: ``exp_constants`` in x's dtype, for SiLU.
    """
    N, C, P = x.shape
    M = N * P
    for c in prange(C):
        if training:  # one pass: sums of d = x - k and d^2, shifted by a sample k of the channel
            k = x[0, c, 0]
            total, squares = 0.0, 0.0
            for n in range(N):
                for p in range(P):
                    d = x[n, c, p] - k
                    total += d
                    squares += d * d
            mean[c] = k + total / M
            var[c] = max(squares / M - (total / M) ** 2, 0.0)
        coef[0, c] = gamma[c] / math.sqrt(var[c] + eps)
        coef[1, c] = beta[c] - mean[c] * coef[0, c]
        for n in range(N):
            affine_act(x[n, c], y[n, c], coef[0, c], coef[1, c], kind, consts)


@njit(parallel=True, cache=True, fastmath=_FASTMATH, error_model="numpy")
def _backward(x, y, g, coef, mean, inv_std, kind, training, gx, sum_gz, sum_gz_xhat, one):
    """dL/dx into gx and the per-channel sums sum(gz), sum(gz * x_hat) (module docstring).

    Pass 1 writes gz = g * act'(z) into gx and sums; pass 2 turns gx into dL/dx in place.
    z is recomputed exactly as the forward computed it (same ``coef``, same expression), so
    that y / z is sigmoid(z) even where z is nearly 0. Vectors come in x's dtype, and so
    does ``one``; each plane's sums are taken in x's dtype (so they vectorize), then
    added up in float64.
    """
    N, C, P = x.shape
    M = N * P
    for c in prange(C):
        mu, istd, scale, shift = mean[c], inv_std[c], coef[0, c], coef[1, c]
        s_gz, s_gzx = 0.0, 0.0
        for n in range(N):
            plane_gz, plane_gzx = one - one, one - one
            for p in range(P):
                gz = g[n, c, p] * _act_grad(_affine(x[n, c, p], scale, shift), y[n, c, p], kind, one)
                gx[n, c, p] = gz
                plane_gz += gz
                plane_gzx += gz * ((x[n, c, p] - mu) * istd)  # gz * x_hat
            s_gz += plane_gz
            s_gzx += plane_gzx
        sum_gz[c], sum_gz_xhat[c] = s_gz, s_gzx
        k = scale  # = gamma * inv_std
        if training:
            a, b = s_gz / M, s_gzx / M
            for n in range(N):
                for p in range(P):
                    gx[n, c, p] = k * (gx[n, c, p] - a - (x[n, c, p] - mu) * istd * b)
        else:
            for n in range(N):
                for p in range(P):
                    gx[n, c, p] *= k


@njit(parallel=True, cache=True, fastmath=_FASTMATH, error_model="numpy")
def _image_sums(x, shift, parts):
    """parts[t] += (sum of d, sum of d^2) per channel, d = x - shift[c], over thread t's share of the images.

    The small-plane training forward's statistics pass: it reads x in memory order (image by image),
    where ``_forward`` reads one channel at a time, N runs of P values far apart: for planes of 8x8 or
    4x4 those runs are a few cache lines each, too short for the hardware prefetcher.
    """
    N, C, P = x.shape
    T = parts.shape[0]
    for t in prange(T):
        for n in range(N * t // T, N * (t + 1) // T):
            for c in range(C):
                k = shift[c]
                total, squares = 0.0, 0.0
                for p in range(P):
                    d = x[n, c, p] - k
                    total += d
                    squares += d * d
                parts[t, 0, c] += total
                parts[t, 1, c] += squares


@njit(parallel=True, cache=True, fastmath=_FASTMATH, error_model="numpy")
def _normalize_images(x, y, coef, kind, consts):
    """y[n, c] = act(x[n, c] * coef[0, c] + coef[1, c]), image by image (memory order)."""
    N, C, P = x.shape
    for n in prange(N):
        for c in range(C):
            affine_act(x[n, c], y[n, c], coef[0, c], coef[1, c], kind, consts)


@njit(parallel=True, cache=True, fastmath=_FASTMATH, error_model="numpy")
def _grad_image_sums(x, y, g, coef, mean, inv_std, kind, gx, parts, one):
    """``_backward``'s pass 1 image by image (memory order): gx = gz = g * act'(z), and
    parts[t] += (sum of gz, sum of gz * x_hat) per channel over thread t's share of the images."""
    N, C, P = x.shape
    T = parts.shape[0]
    for t in prange(T):
        for n in range(N * t // T, N * (t + 1) // T):
            for c in range(C):
                mu, istd, scale, shift = mean[c], inv_std[c], coef[0, c], coef[1, c]
                plane_gz, plane_gzx = one - one, one - one
                for p in range(P):
                    gz = g[n, c, p] * _act_grad(_affine(x[n, c, p], scale, shift), y[n, c, p], kind, one)
                    gx[n, c, p] = gz
                    plane_gz += gz
                    plane_gzx += gz * ((x[n, c, p] - mu) * istd)
                parts[t, 0, c] += plane_gz
                parts[t, 1, c] += plane_gzx


@njit(parallel=True, cache=True, fastmath=_FASTMATH, error_model="numpy")
def _grad_images(x, gx, coef, mean, inv_std, a, b, training):
    """``_backward``'s pass 2 image by image: gx = k * (gz - a - x_hat * b) (training) or k * gz, k = coef[0]."""
    N, C, P = x.shape
    for n in prange(N):
        for c in range(C):
            k, mu, istd, ac, bc = coef[0, c], mean[c], inv_std[c], a[c], b[c]
            if training:
                for p in range(P):
                    gx[n, c, p] = k * (gx[n, c, p] - ac - (x[n, c, p] - mu) * istd * bc)
            else:
                for p in range(P):
                    gx[n, c, p] *= k


def _backward_small_planes(x3, y3, g3, coef, mean, inv_std, kind, training, gx, sum_gz, sum_gz_xhat, one):
    """``_backward``'s results for small planes, image by image (as ``_forward_small_planes``, for the
    same reason): per-thread sums of pass 1 added up in float64, then pass 2."""
    N, C, P = x3.shape
    parts = np.zeros((max(1, min(numba.get_num_threads(), N)), 2, C))
    _grad_image_sums(x3, y3, g3, coef, mean, inv_std, kind, gx, parts, one)
    sum_gz[:], sum_gz_xhat[:] = parts.sum(axis=0)
    M = N * P
    a, b = (sum_gz / M).astype(x3.dtype), (sum_gz_xhat / M).astype(x3.dtype)
    _grad_images(x3, gx, coef, mean, inv_std, a, b, training)


# Planes of at most this many values (16x16) take the image-by-image passes, forward and backward: on the
# CIFAR MixNet's 16x16 to 4x4 planes they were the faster way, on its 32x32 planes not
# (``python benchmarks/norm_act_planes.py`` times both ways on each shape).
_SMALL_PLANE = 256


def _forward_small_planes(x3, gamma, beta, mean, var, eps, kind, training, y, coef, consts):
    """``_forward``'s results for small planes, computed image by image (``_image_sums``): the same
    shifted one-pass statistics (shift: each channel's first value), scale and shift, activation."""
    N, C, P = x3.shape
    if training:
        parts = np.zeros((max(1, min(numba.get_num_threads(), N)), 2, C))
        shift = x3[0, :, 0].copy()
        _image_sums(x3, shift, parts)
        total, squares = parts.sum(axis=0)
        M = N * P
        mean[:] = shift + total / M
        var[:] = np.maximum(squares / M - (total / M) ** 2, 0.0)
    coef[0] = gamma / np.sqrt(var + eps)
    coef[1] = beta - mean * coef[0].astype(np.float64)  # as _forward: the scale as stored, in x's dtype
    _normalize_images(x3, y, coef, kind, consts)


def _as_ncp(a):
    """(N, C, H, W) -> contiguous (N, C, H*W) view (a copy only if a is not contiguous)."""
    a = np.ascontiguousarray(a)
    return a.reshape(a.shape[0], a.shape[1], -1)


def batch_norm_act_forward(x, gamma, beta, eps, activation, training, mean=None, var=None):
    """y = act(batch_norm(x)) for x (N, C, H, W); returns (y, mean, var, coef): mean, var float64 (C,),
    coef (2, C) each channel's scale and shift in x's dtype (the backward needs them).

    training: the batch statistics are computed (``mean``/``var`` ignored); eval: pass them.
    """
    kind = ACTIVATIONS[activation]
    x3 = _as_ncp(x)
    C = x3.shape[1]
    if training:
        mean, var = np.empty(C), np.empty(C)
    else:
        mean, var = np.asarray(mean, dtype=np.float64), np.asarray(var, dtype=np.float64)
    y = np.empty_like(x3)
    coef = np.empty((2, C), dtype=x3.dtype)
    forward = _forward_small_planes if x3.shape[2] <= _SMALL_PLANE else _forward
    forward(x3, gamma.astype(np.float64), beta.astype(np.float64), mean, var, float(eps), kind, bool(training),
            y, coef, exp_constants(x3.dtype))
    return y.reshape(x.shape), mean, var, coef


def batch_norm_act_backward(x, y, g, coef, mean, inv_std, activation, training):
    """(dL/dx, dL/dgamma, dL/dbeta) for y = act(batch_norm(x)); coef from the forward, mean, inv_std (C,)."""
    kind = ACTIVATIONS[activation]
    x3, y3, g3 = _as_ncp(x), _as_ncp(y), _as_ncp(g)
    C = x3.shape[1]
    gx = np.empty_like(x3)
    sum_gz, sum_gz_xhat = np.empty(C), np.empty(C)
    dtype = x3.dtype
    backward = _backward_small_planes if x3.shape[2] <= _SMALL_PLANE else _backward
    backward(x3, y3, g3, coef, mean.astype(dtype), inv_std.astype(dtype), kind, bool(training), gx, sum_gz,
             sum_gz_xhat, dtype.type(1))
    return gx.reshape(x.shape), sum_gz_xhat.astype(dtype), sum_gz.astype(dtype)
