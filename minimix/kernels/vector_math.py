"""exp(x) that Numba can vectorize: range reduction, a polynomial, and a float built from its bits.

Inside a Numba loop ``math.exp`` is a call into the C library, one element at a time, so a
loop that needs it (SiLU's sigmoid) cannot use SIMD instructions, and runs far slower than
NumPy's vectorized ``np.exp``. Written with plain arithmetic, the loop vectorizes:

    exp(x) = 2^n * e^r       n = round(x / ln 2) an integer,  r = x - n * ln 2 in [-ln 2 / 2, ln 2 / 2]

* r is computed as (x - n * C1) - n * C2 with C1 + C2 = ln 2 and C1 = 0.693359375 a number
  of only 9 bits, so n * C1 is exact and x - n * C1 loses nothing ("Cody-Waite" reduction);
  the naive r = (t - floor(t)) * ln 2 with t = x * log2(e) loses |t| ulps of t (5e-6 in float32).
* e^r on that short interval is its Taylor polynomial (Horner's rule: one fused multiply-add
  per degree) up to r^7 in float32, r^11 in float64: the first omitted term, |r|^8 / 8! or
  |r|^12 / 12!, is below 6e-9 or 7e-15 there, under each type's rounding error (6e-8 and 1e-16 are
  half an ulp). Rounding n to the nearest integer, rather than down, halves |r| and so saves
  terms: r in [0, ln 2) needed r^9 for float32. Each term is work for every element of every
  SiLU: ``python benchmarks/norm_act_planes.py`` times the batch norm with each activation.
* 2^n needs no arithmetic at all: an IEEE float is sign | exponent | mantissa, so the float
  whose exponent field holds n + bias (127 for float32, 1023 for float64) and whose mantissa
  is 0 IS 2^n. ``pow2`` writes those bits (an integer shift) and reinterprets them as a float,
  which Numba's Python-level code cannot express, hence the small LLVM intrinsic below.

x is clamped to +-126 ln 2 = +-87.3, where 2^n stays a normal float32: for |x| < 87.3 the
relative error is below 1.5e-7 (float32, about an ulp) or 2e-14 (float64); beyond, exp saturates
at about 2^-126 ~ 1e-38 and 2^126 ~ 1e38 (a NaN stays NaN). Good for sigmoid and SiLU,
whose values there are 0, 1 or z to within float32 precision; not a
general replacement for ``np.exp``.

Two Numba settings decide whether a loop calling it vectorizes: ``error_model="numpy"`` for
the loop's kernel (Numba's default, Python's, checks every division for a zero divisor, and
that branch stops vectorization), and no ``inline="always"`` on helpers like this one (LLVM
inlines them anyway; after Numba's own inlining the loops stopped vectorizing).
"""
import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

_FASTMATH = {"contract"}  # fused multiply-adds only: reassociating would undo (x - n*C1) - n*C2


@intrinsic
def pow2(typingctx, n):
    """2.0 ** n for a float n holding an integer in [-126, 127] (float32) or [-1022, 1023] (float64)."""
    if n == types.float32:
        int_type, bias, shift = ir.IntType(32), 127, 23
    elif n == types.float64:
        int_type, bias, shift = ir.IntType(64), 1023, 52
    else:
        return None

    def codegen(context, builder, signature, args):
        exponent = builder.add(builder.fptosi(args[0], int_type), ir.Constant(int_type, bias))
        return builder.bitcast(builder.shl(exponent, ir.Constant(int_type, shift)), args[0].type)

    return n(n), codegen


DEGREE = {np.dtype(np.float32): 7, np.dtype(np.float64): 11}  # of the Taylor polynomial for e^r (module docstring)


def exp_constants(dtype):
    """What ``exp`` needs, in ``dtype`` (so float32 code stays float32): [1/ln 2, C1, C2, 126 ln 2, 1/2,
    1/d!, 1/(d-1)!, ..., 1/1!, 1/0!] with d = DEGREE[dtype]; the last entry is 1. (A float literal in Numba
    code is float64 and would promote a float32 computation to float64: half the SIMD width.)"""
    c1 = 0.693359375  # 355/512: 9 significant bits
    taylor = [1 / math.factorial(k) for k in range(DEGREE[np.dtype(dtype)], -1, -1)]
    return np.array([1 / math.log(2), c1, math.log(2) - c1, 126 * math.log(2), 0.5] + taylor, dtype=dtype)


def _horner(stop):
    """e^r ~ sum of r^k / k! for k <= d, by Horner's rule from the coefficients c[5:stop] (``exp_constants``)."""
    def taylor(r, c):
        p = c[5]
        for k in range(6, stop):
            p = p * r + c[k]
        return p

    return taylor


def _taylor(r, c):
    """e^r's polynomial with every coefficient of c (Python; Numba compiles ``_taylor_for_type`` instead)."""
    return _horner(c.size)(r, c)


@overload(_taylor, jit_options={"fastmath": {"contract"}})
def _taylor_for_type(r, c):
    """Numba's ``_taylor`` for r's type: the loop bound a constant (6 + DEGREE), so that the loop unrolls into d
    multiply-adds, and the loop over the elements around ``exp`` still vectorizes (a bound read from c.size at
    run time would leave an inner loop there)."""
    dtype = {types.float32: np.dtype(np.float32), types.float64: np.dtype(np.float64)}.get(r)
    return None if dtype is None else _horner(6 + DEGREE[dtype])


@njit(cache=True, fastmath=_FASTMATH, error_model="numpy")
def exp(x, c):
    """exp(x), vectorizable, with c = exp_constants(x's dtype); see the module docstring."""
    x = max(min(x, c[3]), -c[3])
    n = np.floor(x * c[0] + c[4])  # the integer nearest to x / ln 2
    r = (x - n * c[1]) - n * c[2]  # exp(x) = 2^n * e^r
    return _taylor(r, c) * pow2(n)


@njit(cache=True, fastmath={"contract", "reassoc"})
def is_finite(a):
    """False when the 1-D array a holds an inf or a NaN: one add per element, in a's dtype, which vectorizes
    (an overflowing sum of huge finite values also says False: callers use it to decide on an exact
    recomputation, which then only costs time)."""
    total = a.dtype.type(0)
    for e in range(a.size):
        total += a[e]
    return math.isfinite(total)
