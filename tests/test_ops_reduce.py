"""sum / mean / amax / amin over axes, max/min (values, indices), argmax/argmin and var/std against PyTorch,
with NumPy and PyTorch keyword spellings."""
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
    """torch's spelling of the same reduction (amax/amin: values only, ties share the gradient)."""
    fn = {"sum": torch.sum, "mean": torch.mean, "amax": torch.amax, "amin": torch.amin}[name]
    if axis is None:
        if keepdims:
            return lambda t: fn(t, dim=tuple(range(t.ndim)), keepdim=True)
        return lambda t: fn(t) if name not in ("amax", "amin") else fn(t, dim=tuple(range(t.ndim)))
    return lambda t: fn(t, dim=axis, keepdim=keepdims)


@DTYPES
@pytest.mark.parametrize("name", ["sum", "mean", "amax", "amin"])
@pytest.mark.parametrize("shape, axis, keepdims", list(cases()), ids=str)
def test_reduce_numpy_spelling(name, shape, axis, keepdims, dtype):
    mm_fn = lambda x: getattr(x, name)(axis=axis, keepdims=keepdims)  # noqa: E731
    check_parity(mm_fn, torch_reduce(name, axis, keepdims), [randn(*shape)], dtype)


@DTYPES
@pytest.mark.parametrize("name", ["sum", "mean", "amax", "amin"])
def test_reduce_torch_spelling_and_functions(name, dtype):
    """dim=/keepdim= keywords, and the functional forms minimix.ops.sum/mean/amax/amin."""
    fn = getattr(mm.ops, name)
    check_parity(lambda x: fn(x, dim=1, keepdim=True), torch_reduce(name, 1, True), [randn(2, 3, 4)], dtype)
    check_parity(lambda x: getattr(x, name)(dim=(0, 2)), torch_reduce(name, (0, 2), False), [randn(2, 3, 4)], dtype)
    check_parity(lambda x: getattr(x, name)(1), torch_reduce(name, 1, False), [randn(2, 3, 4)], dtype)


@DTYPES
@pytest.mark.parametrize("name", ["amax", "amin"])
def test_amax_of_an_empty_tensor_over_a_non_empty_axis(name, dtype):
    check_parity(lambda t: getattr(t, name)(1), lambda t: getattr(t, name)(1), [randn(0, 3, 2)], dtype)


@DTYPES
def test_amax_ties_share_the_gradient(dtype):
    """Equal maxima split the gradient evenly, as torch.amax/amin and the no-dim torch.max/min do."""
    x = np.array([[1.0, 3.0, 3.0, -1.0], [2.0, 2.0, 2.0, 2.0], [0.5, -4.0, 0.25, 0.5]])
    for axis in (0, 1, None):
        check_parity(lambda t: t.amax(axis=axis), torch_reduce("amax", axis, False), [x], dtype)
        check_parity(lambda t: t.amin(axis), torch_reduce("amin", axis, False), [-x], dtype)
    check_parity(lambda t: t.max(), lambda t: t.max(), [x], dtype)
    check_parity(lambda t: mm.min(t), lambda t: torch.min(t), [-x], dtype)


@DTYPES
def test_reductions_inside_a_graph(dtype):
    """Variance and a log-sum-exp: reductions feeding broadcasting ops feeding reductions."""

    def variance(x):
        centred = x - x.mean(axis=0, keepdims=True)
        return (centred * centred).mean(axis=0)

    def torch_variance(x):
        return x.var(dim=0, unbiased=False)  # the composed variance (Var has its own tests below)

    check_parity(variance, torch_variance, [randn(5, 3)], dtype)

    def logsumexp(x):
        m = x.amax(axis=1, keepdims=True)
        return ((x - m).exp().sum(axis=1)).log() + m.reshape(-1)

    check_parity(logsumexp, lambda x: torch.logsumexp(x, dim=1), [randn(4, 6)], dtype)


def test_float32_gradient_stays_float32():
    """Max's tie counts are integers: they must not upcast a float32 gradient."""
    x = mm.Tensor(np.ones((2, 3), np.float32), requires_grad=True)
    x.amax(axis=1).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, np.full((2, 3), 1 / 3, np.float32))


# -- max / min with a dim: (values, indices) -------------------------------------------------------
WITH_TIES = np.array([[1.0, 3.0, 3.0, -1.0], [2.0, 2.0, 2.0, 2.0], [0.5, -4.0, 0.25, 0.5]])


@DTYPES
@pytest.mark.parametrize("name", ["max", "min"])
@pytest.mark.parametrize("shape, dim, keepdim", [((3, 4), 1, False), ((3, 4), 0, True), ((1, 5), -1, False),
                                                 ((2, 1, 5), 1, False), ((0, 4), 1, False), ((2, 3, 4), -2, True),
                                                 ((), 0, False)], ids=str)
def test_max_min_with_dim_return_values_and_indices(name, shape, dim, keepdim, dtype):
    """Values and int64 indices as torch's named tuple; the gradient goes to the returned index."""
    x = np.asarray(randn(*shape))  # an array even for shape ()
    out = check_parity(lambda t: getattr(t, name)(dim, keepdim)[0], lambda t: getattr(t, name)(dim, keepdim)[0],
                       [x], dtype)[0]
    result = getattr(mm.Tensor(x.astype(dtype)), name)(dim=dim, keepdim=keepdim)
    expected = getattr(torch.from_numpy(x.astype(dtype)), name)(dim=dim, keepdim=keepdim)
    assert result._fields == ("values", "indices") and type(result).__name__ == name
    np.testing.assert_array_equal(result.values.data, out.data)
    assert result.indices.dtype == np.int64
    np.testing.assert_array_equal(result.indices.data, expected.indices.numpy())


@DTYPES
@pytest.mark.parametrize("layout", ["F", "channels_last", "reversed", "sliced"])
def test_max_min_with_dim_on_strided_input(layout, dtype):
    for name, dim in (("max", 1), ("min", 2), ("max", 0)):
        check_parity(lambda t: getattr(t, name)(dim).values, lambda t: getattr(t, name)(dim).values,
                     [randn(2, 3, 5)], dtype, layout=layout)


@DTYPES
@pytest.mark.parametrize("dim", [0, 1])
def test_max_with_dim_routes_tied_gradients_to_the_index(dim, dtype):
    """torch.max(x, dim) gives each tied row's whole gradient to the returned (first) index, unlike amax."""
    for name in ("max", "min"):
        check_parity(lambda t: getattr(t, name)(dim)[0], lambda t: getattr(t, name)(dim)[0], [WITH_TIES], dtype)
        check_parity(lambda t: getattr(mm, name)(t, dim=dim, keepdim=True).values,
                     lambda t: getattr(torch, name)(t, dim=dim, keepdim=True).values, [-WITH_TIES], dtype)


@DTYPES
def test_max_aliases_axis_and_both_outputs_differentiable_use(dtype):
    """axis=/keepdims= are aliases, as torch accepts them; indices used downstream (gather) keep the graph."""
    check_parity(lambda t: t.max(axis=1, keepdims=True)[0], lambda t: t.max(axis=1, keepdims=True)[0],
                 [randn(3, 4)], dtype)
    check_parity(lambda t: t.gather(1, t.min(1, keepdim=True).indices), lambda t: t.gather(1, t.min(1, True)[1]),
                 [randn(4, 3)], dtype)


@DTYPES
def test_max_of_two_tensors_is_maximum(dtype):
    check_parity(lambda a, b: mm.max(a, b), torch.max, [WITH_TIES, WITH_TIES[::-1].copy()], dtype)
    check_parity(lambda a, b: a.min(b), lambda a, b: a.min(b), [randn(3, 1), randn(1, 4)], dtype)


def test_max_without_grad_still_gives_indices():
    x = np.array([[1.0, 5.0, 5.0], [7.0, 0.0, 7.0]], np.float32)
    with mm.no_grad():
        values, indices = mm.Tensor(x, requires_grad=True).max(1)
    np.testing.assert_array_equal(indices.data, [1, 0])
    assert not values.requires_grad and values.dtype == np.float32
    values, indices = mm.Tensor(x).min(dim=-1)
    np.testing.assert_array_equal(indices.data, torch.from_numpy(x).min(dim=-1).indices.numpy())


@pytest.mark.parametrize("call, error, words", [
    (lambda t: t.max((0, 1)), TypeError, ["max", "dim must be an int", "amax"]),
    (lambda t: t.min(2), ValueError, ["axis 2", "out of range"]),
    (lambda t: mm.Tensor(np.zeros((2, 0))).max(1), ValueError, ["max", "empty", "(2, 0)"]),
    (lambda t: mm.Tensor(np.zeros((0, 3))).amax(), ValueError, ["amax", "axis 0", "(0, 3)", "no elements"]),
    (lambda t: mm.Tensor(np.zeros((3, 0))).amin(dim=(0, 1)), ValueError, ["amin", "axis 1", "(3, 0)"]),
    (lambda t: mm.Tensor(np.zeros((0, 3))).argmax(), ValueError, ["argmax", "no elements"]),
], ids=["tuple dim", "dim out of range", "empty dim", "empty amax", "empty amin", "empty argmax"])
def test_max_errors(call, error, words):
    with pytest.raises(error) as caught:
        call(mm.Tensor(np.ones((2, 3))))
    for word in words:
        assert word in str(caught.value), (word, str(caught.value))


# -- argmax / argmin ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["argmax", "argmin"])
@pytest.mark.parametrize("shape, dim, keepdim", [((3, 4), None, False), ((3, 4), None, True), ((3, 4), 1, False),
                                                 ((2, 3, 4), 0, True), ((1, 5), -1, False), ((0, 4), 1, False),
                                                 ((), None, False), ((), 0, False)], ids=str)
def test_argmax_argmin(name, shape, dim, keepdim):
    x = np.asarray(np.round(np.asarray(randn(*shape)) * 2))  # rounded: ties, where the first index must win
    expected = getattr(torch, name)(torch.from_numpy(x), dim=dim, keepdim=keepdim).numpy()
    for got in (getattr(mm.Tensor(x), name)(dim, keepdim), getattr(mm, name)(mm.Tensor(x), dim=dim, keepdim=keepdim)):
        assert got.dtype == np.int64 and got.shape == expected.shape and not got.requires_grad
        np.testing.assert_array_equal(got.data, expected)


# -- var / std ------------------------------------------------------------------------------------
VAR_CASES = [((5, 3), 0, None, False, None), ((5, 3), 1, False, True, None), ((4, 3, 2), (0, 2), None, False, None),
             ((4, 3, 2), None, True, False, None), ((1, 6), -1, None, True, None), ((3, 4), 1, None, False, 0),
             ((3, 4), 0, None, False, 2), ((1, 4), 0, None, False, None), ((2, 0), 0, False, False, None)]


@DTYPES
@pytest.mark.parametrize("name", ["var", "std"])
@pytest.mark.parametrize("shape, dim, unbiased, keepdim, correction", VAR_CASES, ids=str)
@pytest.mark.filterwarnings("ignore:.*degrees of freedom")  # torch's warning for the single-sample cases
def test_var_std(name, shape, dim, unbiased, keepdim, correction, dtype):
    """Bessel's correction by default; unbiased=False or correction=k; a single sample gives NaN, as torch."""
    x = randn(*shape) + 3.0

    def kwargs():
        kw = dict(dim=dim, keepdim=keepdim)
        if unbiased is not None:
            kw["unbiased"] = unbiased
        if correction is not None:
            kw["correction"] = correction
        return kw

    check_parity(lambda t: getattr(t, name)(**kwargs()), lambda t: getattr(t, name)(**kwargs()), [x], dtype)
    check_parity(lambda t: getattr(mm, name)(t, **kwargs()), lambda t: getattr(torch, name)(t, **kwargs()), [x], dtype)


@DTYPES
@pytest.mark.parametrize("layout", ["F", "channels_last", "reversed", "sliced"])
def test_var_std_on_strided_input(layout, dtype):
    check_parity(lambda t: t.var((0, 2, 3)), lambda t: t.var((0, 2, 3)), [randn(2, 3, 4, 5)], dtype, layout=layout)
    check_parity(lambda t: t.std(1, False, True), lambda t: t.std(1, False, True), [randn(2, 3, 4)], dtype,
                 layout=layout)


def test_var_positional_unbiased_and_conflicts():
    x = randn(4, 5)
    np.testing.assert_allclose(mm.Tensor(x).var(False).data, torch.from_numpy(x).var(unbiased=False).numpy())
    np.testing.assert_allclose(mm.Tensor(x).std(1, True).data, torch.from_numpy(x).std(1, True).numpy())
    with pytest.raises(ValueError, match="unbiased or correction"):
        mm.Tensor(x).var(0, unbiased=True, correction=1)
