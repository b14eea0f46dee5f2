"""Batch normalisation fused with its activation, in Numba: forward and backward.

In MixNet every convolution is followed by BatchNorm and (mostly) an activation.
Done as separate NumPy ops, each is several full passes over a large activation
array (mean, centring, variance, scaling, exp, where, products...). Here the
forward is two passes over memory in training (the statistics, then the normalised
and activated output) and one in eval; the backward is two (the sums, then dL/dx).

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

Memory: the backward recomputes x_hat, z and (SiLU) s = sigmoid(z) from x, the
convolution's output, kept by reference: the op allocates nothing but its output, and
reads x and g, not y. (An earlier version also read y, to get s = y / z without an
exp; where the arrays do not fit in cache, the exp costs less than that third read.)

The SiLU forward, y = z / (1 + exp(-z)), takes its exp from ``vector_math.exp``: plain
arithmetic that vectorizes, where Numba's ``math.exp`` is one C library call per element
(no SIMD: slower than NumPy's vectorized exp, which is why an earlier version ran a
separate NumPy pass over y). For z < -87 exp(-z) saturates at 2^126 and |y| < 1e-36
instead of smaller. The statistics are summed in float64; the backward's sums per
plane in x's dtype, then added up in float64.

Numba: ``prange`` over images, in memory order (each thread sums into its own row of
partial sums, so no two write the same one); ``fastmath`` without the no-inf/no-NaN
assumptions (only contraction to FMA and reassociation of sums), so NaN inputs stay NaN;
``error_model="numpy"``: a division by zero gives inf/NaN as in NumPy instead of
raising, which removes a branch per division that kept the loops from vectorizing.
"""
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
def _act_grad(z, kind, consts):
    """act'(z) for kind IDENTITY, RELU or SILU; consts = ``exp_constants`` in x's dtype.

    SiLU: silu'(z) = s * (1 + z * (1 - s)) with s = sigmoid(z) = 1 / (1 + exp(-z)).
    Constants come from ``consts`` (whose last entry is 1): a float literal such as 1.0
    is float64 in Numba and would turn the whole float32 computation into float64 (half
    the SIMD width).
    """
    one = consts[consts.size - 1]
    if kind == SILU:
        s = one / (one + exp(-z, consts))
        return s * (one + z * (one - s))
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


# Every kernel below reads x (N, C, P) in memory order, image by image: thread t takes its share of the
# images, all channels of each, and sums into its own row of ``parts``, which are added up afterwards.
# (An earlier version went channel by channel, so that each thread owned whole channels and a channel's
# values stayed in cache between the statistics and the normalisation; but it reads a channel as N runs
# of P values far apart, which the hardware prefetcher follows less well than one stream. On this
# project's machine it was slower, or no faster, on every plane size tried from 4x4 to 112x112, forward and
# backward: README "Performance" has the measurement.)


@njit(parallel=True, cache=True, fastmath=_FASTMATH, error_model="numpy")
def _image_sums(x, shift, parts):
    """parts[t] += (sum of d, sum of d^2) per channel, d = x - shift[c], over thread t's share of the images.

    The training statistics in one pass: with d = x - k for a value k of the channel,
    mean = k + sum(d)/M and var = sum(d^2)/M - (sum(d)/M)^2. Without the shift k that difference
    cancels catastrophically when |mean| >> std; with it, k lies within a few std of the mean, and
    the sums run in float64. (Two passes, mean then squares, would read every value twice.)
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
    """y[n, c] = act(x[n, c] * coef[0, c] + coef[1, c]), image by image; consts: ``exp_constants`` (SiLU)."""
    N, C, P = x.shape
    for n in prange(N):
        for c in range(C):
            affine_act(x[n, c], y[n, c], coef[0, c], coef[1, c], kind, consts)


@njit(parallel=True, cache=True, fastmath=_FASTMATH, error_model="numpy")
def _grad_image_sums(x, g, coef, mean, inv_std, kind, gx, parts, consts):
    """The backward's first pass: gx = gz = g * act'(z), and parts[t] += (sum of gz, sum of gz * x_hat)
    per channel over thread t's share of the images.

    z is recomputed exactly as the forward computed it (same ``coef``, same expression). Vectors
    come in x's dtype, and so does ``consts`` (``exp_constants``); each plane's sums are taken in
    x's dtype (so they vectorize), then added up in float64.
    """
    N, C, P = x.shape
    T = parts.shape[0]
    one = consts[consts.size - 1]
    for t in prange(T):
        for n in range(N * t // T, N * (t + 1) // T):
            for c in range(C):
                mu, istd, scale, shift = mean[c], inv_std[c], coef[0, c], coef[1, c]
                plane_gz, plane_gzx = one - one, one - one
                for p in range(P):
                    gz = g[n, c, p] * _act_grad(_affine(x[n, c, p], scale, shift), kind, consts)
                    gx[n, c, p] = gz
                    plane_gz += gz
                    plane_gzx += gz * ((x[n, c, p] - mu) * istd)  # gz * x_hat
                parts[t, 0, c] += plane_gz
                parts[t, 1, c] += plane_gzx


@njit(parallel=True, cache=True, fastmath=_FASTMATH, error_model="numpy")
def _grad_images(x, gx, coef, mean, inv_std, a, b, training):
    """The backward's second pass, in place: gx = k * (gz - a - x_hat * b) (training) or k * gz (eval),
    k = coef[0] = gamma * inv_std, a = sum(gz) / M, b = sum(gz * x_hat) / M."""
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


def _partial_sums(N, C):
    """Zeroed (threads, 2, C) float64: one row of two per-channel sums for each thread that gets images."""
    return np.zeros((max(1, min(numba.get_num_threads(), N)), 2, C))


def _as_ncp(a):
    """(N, C, H, W) -> contiguous (N, C, H*W) view (a copy only if a is not contiguous)."""
    a = np.ascontiguousarray(a)
    return a.reshape(a.shape[0], a.shape[1], -1)


def batch_norm_act_forward(x, gamma, beta, eps, activation, training, mean=None, var=None):
    """y = act(batch_norm(x)) for x (N, C, H, W); returns (y, mean, var, coef): mean, var float64 (C,),
    coef (2, C) each channel's scale and shift in x's dtype (the backward needs them).

    training: the batch statistics are computed (``mean``/``var`` ignored; shift: each channel's first
    value, ``_image_sums``); eval: pass them. ``coef`` receives z = x * scale + shift's scale and shift
    in x's dtype: the backward reads them back, which keeps z, and its exp, in x's precision.
    """
    kind = ACTIVATIONS[activation]
    x3 = _as_ncp(x)
    N, C, P = x3.shape
    if training:
        parts = _partial_sums(N, C)
        shift = x3[0, :, 0].copy()
        _image_sums(x3, shift, parts)
        total, squares = parts.sum(axis=0) / (N * P)
        mean, var = shift + total, np.maximum(squares - total ** 2, 0.0)  # float64: total is
    else:
        mean, var = np.asarray(mean, dtype=np.float64), np.asarray(var, dtype=np.float64)
    coef = np.empty((2, C), dtype=x3.dtype)
    coef[0] = gamma.astype(np.float64) / np.sqrt(var + float(eps))
    coef[1] = beta.astype(np.float64) - mean * coef[0].astype(np.float64)  # the scale as stored, in x's dtype
    y = np.empty_like(x3)
    _normalize_images(x3, y, coef, kind, exp_constants(x3.dtype))
    return y.reshape(x.shape), mean, var, coef


def batch_norm_act_backward(x, g, coef, mean, inv_std, activation, training):
    """(dL/dx, dL/dgamma, dL/dbeta) for y = act(batch_norm(x)), given g = dL/dy; coef from the forward,
    mean, inv_std (C,). y itself is not needed: act'(z) is recomputed from x."""
    kind = ACTIVATIONS[activation]
    x3, g3 = _as_ncp(x), _as_ncp(g)
    N, C, P = x3.shape
    dtype = x3.dtype
    mean, inv_std = mean.astype(dtype), inv_std.astype(dtype)
    gx = np.empty_like(x3)
    parts = _partial_sums(N, C)
    _grad_image_sums(x3, g3, coef, mean, inv_std, kind, gx, parts, exp_constants(dtype))
    sum_gz, sum_gz_xhat = parts.sum(axis=0)
    a, b = (sum_gz / (N * P)).astype(dtype), (sum_gz_xhat / (N * P)).astype(dtype)
    _grad_images(x3, gx, coef, mean, inv_std, a, b, bool(training))
    return gx.reshape(x.shape), sum_gz_xhat.astype(dtype), sum_gz.astype(dtype)
