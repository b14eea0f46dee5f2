"""Differentiable casts: to(dtype), float(), double(), astype against PyTorch's .to/.float/.double."""
import numpy as np
import pytest
from parity import DTYPES, check_parity, randn, torch

import minimix as mm

pytestmark = pytest.mark.usefixtures("each_path")  # every test on the fast and the reference path

OTHER = {np.float64: np.float32, np.float32: np.float64}
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}


@DTYPES
@pytest.mark.parametrize("shape", [(), (1,), (2, 3), (0, 4), (1, 3, 1, 2)], ids=str)
@pytest.mark.parametrize("spelling", ["to", "to name", "to tensor", "astype", "float/double"])
def test_cast_round_trip_is_differentiable(spelling, shape, dtype):
    """x -> other dtype -> (ops there) -> back: the gradient reaches x in x's own dtype, as torch's .to()."""
    other = OTHER[dtype]
    casts = {
        "to": (lambda t, d: t.to(d)),
        "to name": (lambda t, d: t.to(np.dtype(d).name)),
        "to tensor": (lambda t, d: t.to(mm.Tensor(np.zeros(1, d)))),
        "astype": (lambda t, d: t.astype(d)),
        "float/double": (lambda t, d: t.float() if d == np.float32 else t.double()),
    }
    cast = casts[spelling]

    def mm_fn(t):
        return cast((cast(t, other) * 3).exp(), dtype)

    def torch_fn(t):
        return ((t.to(TORCH_DTYPE[other]) * 3).exp()).to(TORCH_DTYPE[dtype])

    check_parity(mm_fn, torch_fn, [np.asarray(np.asarray(randn(*shape)) * 0.3)], dtype,
                 rtol=1e-5 if other == np.float32 else None, atol=1e-6 if other == np.float32 else None)


@DTYPES
@pytest.mark.parametrize("layout", ["F", "channels_last", "reversed", "sliced"])
def test_cast_strided_input(layout, dtype):
    other = OTHER[dtype]
    check_parity(lambda t: t.to(other).to(dtype), lambda t: t.to(TORCH_DTYPE[other]).to(TORCH_DTYPE[dtype]),
                 [randn(2, 3, 4)], dtype, layout=layout)


def test_the_gradient_reaches_the_original_tensor():
    """astype used to start a new leaf: the original tensor's .grad stayed None (issue 16)."""
    x = mm.Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    y = x.astype(np.float32)
    assert y.dtype == np.float32 and y.requires_grad and not y.is_leaf
    (y * y).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad, [2.0, 4.0, 6.0])


def test_same_dtype():
    """to/float/double return the tensor itself when the dtype already matches (torch); astype copies."""
    x = mm.Tensor(np.ones(3, np.float32), requires_grad=True)
    assert x.to(np.float32) is x and x.float() is x and x.to("cpu") is x
    y = x.astype(np.float32)
    assert y is not x and y.data is not x.data
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones(3, np.float32))


def test_casts_to_data_dtypes_have_no_gradient():
    """Integer, bool and float16 results are data (minimix computes in float32/float64 only)."""
    x = mm.Tensor(np.array([1.7, -2.2]), requires_grad=True)
    for dtype, expected in ((np.int64, torch.int64), (np.bool_, torch.bool), (np.float16, None)):
        y = x.to(dtype)
        assert y.dtype == dtype and not y.requires_grad
        if expected is not None:
            np.testing.assert_array_equal(y.data, torch.tensor([1.7, -2.2]).to(expected).numpy())
    half = mm.Tensor(np.array([1.5, 2.5], np.float16))  # float16 storage, converted to compute
    assert half.float().dtype == np.float32 and half.astype(np.float64).dtype == np.float64
    assert mm.Tensor([1, 2]).double().dtype == np.float64


def test_no_grad_cast_records_nothing():
    x = mm.Tensor(np.ones(2), requires_grad=True)
    with mm.no_grad():
        y = x.float()
    assert y.dtype == np.float32 and not y.requires_grad


def test_bad_dtype():
    with pytest.raises(TypeError, match="to: dtype must be"):
        mm.Tensor(np.ones(2)).to(object())
    with pytest.raises(ValueError, match="to: give a dtype"):
        mm.Tensor(np.ones(2)).to()
