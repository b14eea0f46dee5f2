"""minimix.kernels.vector_math: the vectorizable exp against NumPy's, and that it does vectorize."""
import platform

import numpy as np
import pytest

from conftest import require  # noqa: E402

require("numba", "vector_math is Numba code")
from numba import njit  # noqa: E402

from minimix.kernels import vector_math  # noqa: E402


@njit(fastmath={"contract"}, error_model="numpy")
def _exp_all(x, out, c):
    for i in range(x.size):
        out[i] = vector_math.exp(x[i], c)


def _exp(x):
    out = np.empty_like(x)
    _exp_all(x, out, vector_math.exp_constants(x.dtype))
    return out


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1.5e-7), (np.float64, 2e-14)], ids=["f32", "f64"])
def test_exp_matches_numpy_where_float32_is_normal(dtype, rtol):
    x = np.linspace(-87.3, 87.3, 200_001).astype(dtype)
    np.testing.assert_allclose(_exp(x), np.exp(x.astype(np.float64)), rtol=rtol, atol=0)
    assert _exp(np.zeros(3, dtype)).tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_saturates_outside_the_range_as_documented(dtype):
    big = _exp(np.array([-100.0, -1e30, 100.0, 1e30], dtype))
    np.testing.assert_allclose(big, [2.0**-126, 2.0**-126, 2.0**126, 2.0**126], rtol=1e-5)


def test_pow2_builds_exact_powers_of_two():
    @njit
    def powers(n):
        out = np.empty_like(n)
        for i in range(n.size):
            out[i] = vector_math.pow2(n[i])
        return out

    for dtype in (np.float32, np.float64):
        n = np.arange(-126, 128, dtype=dtype)
        assert (powers(n) == np.ldexp(dtype(1), n.astype(int))).all()


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="reads x86 assembly")
def test_a_loop_calling_exp_is_vectorized():
    """The point of the module: the loop uses SIMD registers (ymm/zmm), not one element at a time."""
    _exp(np.ones(64, np.float32))
    assembly = _exp_all.inspect_asm(_exp_all.signatures[0])
    assert "ymm" in assembly or "zmm" in assembly
