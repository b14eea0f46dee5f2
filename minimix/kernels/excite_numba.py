"""Squeeze-and-excitation's full-size passes in Numba: plane means, and y = x * gate with its backward.

Everything else in an SE block works on (N, C) vectors and costs nothing; these three
passes touch the whole activation x (N, C, H, W), seen here as N*C planes of P = H*W values::

    squeeze:   s[i] = sum_p x[i, p] / P                         (global average pooling)
    excite:    y[i, p] = x[i, p] * gate[i]
    backward:  gx[i, p] = g[i, p] * gate[i],   g_gate[i] = sum_p g[i, p] * x[i, p]

The backward reads g and x once for both gradients (NumPy would need a product, a sum and
another product). ``prange`` over the planes, so both cores share every pass; sums run in
float64 (float32 planes of up to 1024 values would lose digits). The NumPy versions stay the
definition: ``tests/test_layers_conv.py`` runs the SE parity tests on both.
"""
import numpy as np
from numba import njit, prange

_FASTMATH = {"contract", "reassoc"}  # FMA and reordered sums; NaN/inf behave as in NumPy


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def _plane_means(x, out):
    """out[i] = mean of x[i, :] for x (N*C, P)."""
    planes, P = x.shape
    for i in prange(planes):
        total = 0.0
        for p in range(P):
            total += x[i, p]
        out[i] = total / P


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def _scale_planes(x, gate, y):
    """y[i, :] = x[i, :] * gate[i] for x, y (N*C, P), gate (N*C,)."""
    planes, P = x.shape
    for i in prange(planes):
        scale = gate[i]
        for p in range(P):
            y[i, p] = x[i, p] * scale


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def _scale_planes_backward(x, gate, g, gx, g_gate):
    """gx[i, :] = g[i, :] * gate[i] and g_gate[i] = sum_p g[i, p] * x[i, p], in one pass."""
    planes, P = x.shape
    for i in prange(planes):
        scale, total = gate[i], 0.0
        for p in range(P):
            gx[i, p] = g[i, p] * scale
            total += g[i, p] * x[i, p]
        g_gate[i] = total


def _planes(a):
    """(N, C, H, W) -> contiguous (N*C, H*W) (a copy only if a is not contiguous)."""
    return np.ascontiguousarray(a).reshape(a.shape[0] * a.shape[1], -1)


def plane_means(x):
    """(N, C, 1, 1) means of the (H, W) planes of x (N, C, H, W)."""
    out = np.empty(x.shape[0] * x.shape[1], dtype=x.dtype)
    _plane_means(_planes(x), out)
    return out.reshape(x.shape[0], x.shape[1], 1, 1)


def excite_forward(x, gate):
    """y = x * gate for x (N, C, H, W) and gate (N, C, 1, 1)."""
    y = np.empty(x.shape, dtype=x.dtype)
    _scale_planes(_planes(x), np.ascontiguousarray(gate).reshape(-1), y.reshape(y.shape[0] * y.shape[1], -1))
    return y


def excite_backward(x, gate, g):
    """(dL/dx, dL/dgate) = (g * gate, sum over (H, W) of g * x) for y = x * gate."""
    gx = np.empty(x.shape, dtype=x.dtype)
    g_gate = np.empty(x.shape[0] * x.shape[1], dtype=x.dtype)
    _scale_planes_backward(_planes(x), np.ascontiguousarray(gate).reshape(-1), _planes(g),
                           gx.reshape(gx.shape[0] * gx.shape[1], -1), g_gate)
    return gx, g_gate.reshape(gate.shape)
