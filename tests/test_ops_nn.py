"""matmul, linear, softmax / log_softmax, cross_entropy and dropout against PyTorch."""
import numpy as np
import pytest
from parity import DTYPES, check_parity, randn, torch

import minimix as mm
import minimix.nn.functional as F

pytestmark = pytest.mark.usefixtures("each_path")  # every test on the fast and the reference path

TF = torch.nn.functional


@DTYPES
@pytest.mark.parametrize(
    "a_shape, b_shape",
    [
        ((3, 4), (4, 5)),
        ((1, 4), (4, 1)),  # batch 1, one output
        ((2, 3, 4), (4, 2)),  # batched @ matrix: b's gradient sums over the batch
        ((2, 1, 3, 4), (5, 4, 2)),  # broadcast batch axes on both sides
        ((4,), (4, 3)),  # vector @ matrix
        ((2, 3, 4), (4,)),  # batched matrix @ vector
        ((4,), (4,)),  # dot product
    ],
    ids=str,
)
def test_matmul(a_shape, b_shape, dtype):
    inputs = [randn(*a_shape, seed=1), randn(*b_shape, seed=2)]
    check_parity(lambda a, b: a @ b, lambda a, b: a @ b, inputs, dtype)
    check_parity(lambda a, b: mm.ops.matmul(a, b), torch.matmul, inputs, dtype, requires_grad=[False, True])


@DTYPES
@pytest.mark.parametrize("x_shape", [(1, 4), (5, 4), (2, 3, 4), (4,)], ids=str)
@pytest.mark.parametrize("bias", [True, False])
def test_linear(x_shape, bias, dtype):
    inputs = [randn(*x_shape, seed=1), randn(3, 4, seed=2)] + ([randn(3, seed=3)] if bias else [])
    check_parity(F.linear, TF.linear, inputs, dtype)


@DTYPES
def test_linear_with_constant_input(dtype):
    """The first layer's input needs no gradient: only weight and bias get one."""
    check_parity(F.linear, TF.linear, [randn(5, 4), randn(3, 4, seed=1), randn(3, seed=2)], dtype,
                 requires_grad=[False, True, True])


@DTYPES
@pytest.mark.parametrize("shape, axis", [((3, 5), -1), ((3, 5), 0), ((2, 3, 4), 1), ((1, 1), -1), ((1, 7), 1)], ids=str)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax(name, shape, axis, dtype):
    torch_fn = getattr(TF, name)
    check_parity(lambda x: getattr(F, name)(x, axis), lambda x: torch_fn(x, dim=axis), [randn(*shape)], dtype)
    check_parity(lambda x: getattr(x, name)(dim=axis), lambda x: torch_fn(x, dim=axis), [randn(*shape)], dtype)


@DTYPES
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_large_logits(name, dtype):
    """Subtracting the max first: logits of 1000 must not overflow exp."""
    x = np.array([[1000.0, 999.0, -1000.0], [-5.0, 0.0, 5.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        check_parity(lambda t: getattr(F, name)(t, -1), lambda t: getattr(TF, name)(t, dim=-1), [x], dtype)


@DTYPES
@pytest.mark.parametrize("n, c", [(1, 3), (6, 10), (4, 1), (3, 2)], ids=str)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 1.0])
def test_cross_entropy(n, c, label_smoothing, dtype):
    target = np.random.default_rng(n * c).integers(0, c, n)
    check_parity(
        lambda x, t: F.cross_entropy(x, t, label_smoothing=label_smoothing),
        lambda x, t: TF.cross_entropy(x, t, label_smoothing=label_smoothing),
        [randn(n, c), target],
        dtype,
    )


@DTYPES
def test_cross_entropy_after_linear(dtype):
    """The classifier head as trained: linear -> cross-entropy, gradients to x, W and b."""
    target = np.array([2, 0, 1, 2])
    check_parity(
        lambda x, w, b, t: F.cross_entropy(F.linear(x, w, b), t, label_smoothing=0.1),
        lambda x, w, b, t: TF.cross_entropy(TF.linear(x, w, b), t, label_smoothing=0.1),
        [randn(4, 5), randn(3, 5, seed=1), randn(3, seed=2), target],
        dtype,
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_statistics_and_gradient(p, dtype):
    """A fraction ~p is zeroed, survivors are scaled by 1/(1-p), and backward uses the same mask."""
    mm.manual_seed(0)
    x = mm.Tensor(np.random.default_rng(1).uniform(1.0, 2.0, (200, 100)).astype(dtype), requires_grad=True)
    y = F.dropout(x, p, training=True)
    assert y.dtype == dtype
    kept = y.data != 0
    assert abs(1 - kept.mean() - p) < 0.02, f"dropped fraction {1 - kept.mean():.3f}, expected {p}"
    np.testing.assert_allclose(y.data[kept], x.data[kept] / (1 - p), rtol=1e-6)
    upstream = np.random.default_rng(2).standard_normal(x.shape).astype(dtype)
    y.backward(upstream)
    np.testing.assert_allclose(x.grad, np.where(kept, upstream / (1 - p), 0), rtol=1e-6)


def test_dropout_identity_when_not_training_or_p_zero():
    x = mm.Tensor(np.ones((3, 4), np.float32), requires_grad=True)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0, training=True) is x


def test_dropout_is_reproducible_from_the_seed():
    x = mm.Tensor(np.ones((10, 10), np.float32))
    mm.manual_seed(123)
    first = F.dropout(x, 0.5).data
    mm.manual_seed(123)
    np.testing.assert_array_equal(F.dropout(x, 0.5).data, first)
    assert not np.array_equal(F.dropout(x, 0.5).data, first)  # the generator moved on
