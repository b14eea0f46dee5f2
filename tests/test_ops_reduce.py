"""sum / mean / max over axes against PyTorch, with NumPy and PyTorch keyword spellings."""
import numpy as np
import pytest
from parity import DTYPES, check_parity, randn, torch

import minimix as mm

pytestmark = pytest.mark.usefixtures("each_path")  # every test on the fast and the reference path

SHAPES = [(1,), (3, 4), (2, 1, 5), (1, 3, 1, 2)]
AXES = [None, 0, -1, (0, -1), 1]


def cases():
    for shape in SHAPES:
        for axis in AXES:
            if axis in (1, (0, -1)) and len(shape) < 2:  # (0, -1) would name axis 0 twice
                continue
            for keepdims in (False, True):
                yield shape, axis, keepdims


def torch_reduce(name, axis, keepdims):
    """torch's spelling of the same reduction (amax for max: values only, ties share the gradient)."""
    fn = {"sum": torch.sum, "mean": torch.mean, "max": torch.amax}[name]
    if axis is None:
        if keepdims:
            return lambda t: fn(t, dim=tuple(range(t.ndim)), keepdim=True)
        return lambda t: fn(t) if name != "max" else torch.amax(t, dim=tuple(range(t.ndim)))
    return lambda t: fn(t, dim=axis, keepdim=keepdims)


@DTYPES
@pytest.mark.parametrize("name", ["sum", "mean", "max"])
@pytest.mark.parametrize("shape, axis, keepdims", list(cases()), ids=str)
def test_reduce_numpy_spelling(name, shape, axis, keepdims, dtype):
    mm_fn = lambda x: getattr(x, name)(axis=axis, keepdims=keepdims)  # noqa: E731
    check_parity(mm_fn, torch_reduce(name, axis, keepdims), [randn(*shape)], dtype)


@DTYPES
@pytest.mark.parametrize("name", ["sum", "mean", "max"])
def test_reduce_torch_spelling_and_functions(name, dtype):
    """dim=/keepdim= keywords, and the functional forms minimix.ops.sum/mean/max."""
    fn = getattr(mm.ops, name)
    check_parity(lambda x: fn(x, dim=1, keepdim=True), torch_reduce(name, 1, True), [randn(2, 3, 4)], dtype)
    check_parity(lambda x: getattr(x, name)(dim=(0, 2)), torch_reduce(name, (0, 2), False), [randn(2, 3, 4)], dtype)
    check_parity(lambda x: getattr(x, name)(1), torch_reduce(name, 1, False), [randn(2, 3, 4)], dtype)


@DTYPES
def test_max_ties_share_the_gradient(dtype):
    """Equal maxima split the gradient evenly, as torch.amax does."""
    x = np.array([[1.0, 3.0, 3.0, -1.0], [2.0, 2.0, 2.0, 2.0], [0.5, -4.0, 0.25, 0.5]])
    for axis in (0, 1, None):
        check_parity(lambda t: t.max(axis=axis), torch_reduce("max", axis, False), [x], dtype)


@DTYPES
def test_reductions_inside_a_graph(dtype):
    """Variance and a log-sum-exp: reductions feeding broadcasting ops feeding reductions."""

    def variance(x):
        centred = x - x.mean(axis=0, keepdims=True)
        return (centred * centred).mean(axis=0)

    def torch_variance(x):
        return x.var(dim=0, unbiased=False)

    check_parity(variance, torch_variance, [randn(5, 3)], dtype)

    def logsumexp(x):
        m = x.max(axis=1, keepdims=True)
        return ((x - m).exp().sum(axis=1)).log() + m.reshape(-1)

    check_parity(logsumexp, lambda x: torch.logsumexp(x, dim=1), [randn(4, 6)], dtype)


def test_float32_gradient_stays_float32():
    """Max's tie counts are integers: they must not upcast a float32 gradient."""
    x = mm.Tensor(np.ones((2, 3), np.float32), requires_grad=True)
    x.max(axis=1).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, np.full((2, 3), 1 / 3, np.float32))
