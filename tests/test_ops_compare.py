"""maximum / minimum / clamp (clip) / where / abs and the comparison operators against PyTorch, ties included."""
import numpy as np
import pytest
from parity import DTYPES, check_parity, randn, torch

import minimix as mm

pytestmark = pytest.mark.usefixtures("each_path")  # every test on the fast and the reference path

SHAPES = [((3, 4), (3, 4)), ((1, 5), (4, 1)), ((2, 1, 3), (3,)), ((), (2, 3)), ((0, 3), (1, 3)), ((1,), (1,))]
LAYOUTS = ["F", "channels_last", "reversed", "sliced"]


def with_ties(*shape, seed=0):
    """Values rounded to halves: many equal pairs, where the tie rules matter."""
    return np.asarray(np.round(np.asarray(randn(*shape, seed=seed)) * 2) / 2)


@DTYPES
@pytest.mark.parametrize("name", ["maximum", "minimum"])
@pytest.mark.parametrize("shapes", SHAPES, ids=str)
def test_maximum_minimum(name, shapes, dtype):
    """Equal elements share the gradient half and half, as torch.maximum/minimum."""
    a, b = with_ties(*shapes[0], seed=1), with_ties(*shapes[1], seed=2)
    torch_fn = getattr(torch, name)
    check_parity(lambda x, y: getattr(x, name)(y), torch_fn, [a, b], dtype)
    check_parity(lambda x, y: getattr(mm, name)(x, y), torch_fn, [a, b], dtype)


@DTYPES
@pytest.mark.parametrize("layout", LAYOUTS)
def test_maximum_on_strided_inputs(layout, dtype):
    check_parity(mm.maximum, torch.maximum, [with_ties(2, 3, 4, seed=1), with_ties(2, 3, 4, seed=2)], dtype,
                 layout=layout)


@DTYPES
def test_maximum_with_a_constant_and_nan(dtype):
    a = np.array([1.0, np.nan, -2.0, 0.0])
    check_parity(lambda x: mm.maximum(x, mm.Tensor(np.zeros(4, dtype))), lambda x: torch.maximum(x, torch.zeros(
        4, dtype=x.dtype)), [a], dtype)


CLAMP_BOUNDS = {
    "both": (-0.5, 0.5), "min only": (0.0, None), "max only": (None, 0.0), "min > max": (1.0, -1.0),
    "equal": (0.5, 0.5), "int bounds": (-1, 1),
}


@DTYPES
@pytest.mark.parametrize("bounds", list(CLAMP_BOUNDS))
@pytest.mark.parametrize("shape", [(3, 4), (1, 5), (0, 2), (), (2, 1, 3)], ids=str)
def test_clamp_scalar_bounds(bounds, shape, dtype):
    """Elements equal to a bound keep their gradient (lo <= x <= hi), as torch.clamp."""
    lo, hi = CLAMP_BOUNDS[bounds]
    x = with_ties(*shape)
    check_parity(lambda t: t.clamp(lo, hi), lambda t: t.clamp(lo, hi), [x], dtype)
    check_parity(lambda t: mm.clip(t, min=lo, max=hi), lambda t: torch.clip(t, min=lo, max=hi), [x], dtype)


@DTYPES
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4), (3, 4)), ((2, 3), (1, 3), (2, 1)), ((2, 4), (4,), ())], ids=str)
def test_clamp_tensor_bounds(shapes, dtype):
    """Tensor bounds get gradients too; ties and min > max follow torch (x, lo, hi all differentiable)."""
    x, lo, hi = (with_ties(*s, seed=i) for i, s in enumerate(shapes))
    check_parity(lambda t, a, b: t.clamp(a, b), lambda t, a, b: t.clamp(a, b), [x, lo, hi], dtype)
    check_parity(lambda t, a: mm.clamp(t, min=a), lambda t, a: torch.clamp(t, min=a), [x, lo], dtype)
    check_parity(lambda t, b: mm.clamp(t, max=b), lambda t, b: torch.clamp(t, max=b), [x, hi], dtype)


@DTYPES
def test_clamp_tensor_bound_ties(dtype):
    """x == lo == hi, x < lo == hi, x > hi == lo: the corner cases of torch's clamp backward."""
    x = np.array([-1.0, 3.0, 1.0, 0.5, 2.0, 1.0])
    lo = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 0.0])
    hi = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    check_parity(lambda t, a, b: t.clamp(a, b), lambda t, a, b: t.clamp(a, b), [x, lo, hi], dtype)


@DTYPES
@pytest.mark.parametrize("layout", LAYOUTS)
def test_clamp_on_strided_input(layout, dtype):
    check_parity(lambda t: t.clamp(-0.5, 0.5), lambda t: t.clamp(-0.5, 0.5), [with_ties(2, 3, 4)], dtype, layout=layout)


def test_clamp_needs_a_bound():
    with pytest.raises(ValueError, match="clamp: give min or max"):
        mm.Tensor(np.ones(3)).clamp()


@DTYPES
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4), (3, 4)), ((2, 1), (1, 3), (2, 3)), ((4,), (2, 4), ()),
                                    ((0, 3), (0, 3), (1, 3))], ids=str)
def test_where(shapes, dtype):
    c_shape, x_shape, y_shape = shapes
    condition = np.asarray(randn(*c_shape, seed=5)) > 0
    x, y = np.asarray(randn(*x_shape, seed=1)), np.asarray(randn(*y_shape, seed=2))
    check_parity(lambda a, b: mm.where(condition, a, b), lambda a, b: torch.where(torch.from_numpy(condition), a, b),
                 [x, y], dtype)
    check_parity(lambda a, b: a.where(mm.Tensor(condition), b),
                 lambda a, b: a.where(torch.from_numpy(condition), b), [x, y], dtype)


@DTYPES
@pytest.mark.parametrize("layout", LAYOUTS)
def test_where_with_a_number_and_strided_input(layout, dtype):
    x = randn(2, 3, 4)
    check_parity(lambda a: mm.where(a > 0, a, 0.0), lambda a: torch.where(a > 0, a, 0.0), [x], dtype, layout=layout)
    check_parity(lambda a: mm.where(a <= 0, 1.5, a), lambda a: torch.where(a <= 0, 1.5, a), [x], dtype,
                 layout=layout)


def test_where_needs_a_bool_condition():
    with pytest.raises(TypeError, match="where: condition must be a bool .* float64"):
        mm.where(np.ones(3), mm.Tensor(np.ones(3)), 0.0)


@DTYPES
@pytest.mark.parametrize("shape", [(), (1,), (2, 3), (0, 4), (1, 4, 1, 5)], ids=str)
def test_abs(shape, dtype):
    """d|x|/dx = sign(x): 0 at x = 0, as torch (the rounded values include zeros)."""
    x = with_ties(*shape)
    check_parity(lambda t: t.abs(), torch.abs, [x], dtype)
    check_parity(mm.abs, torch.abs, [x], dtype)
    check_parity(lambda t: abs(t), lambda t: abs(t), [x], dtype)


@DTYPES
@pytest.mark.parametrize("layout", LAYOUTS)
def test_abs_on_strided_input(layout, dtype):
    check_parity(mm.abs, torch.abs, [with_ties(2, 3, 4)], dtype, layout=layout)


def test_comparisons_give_bool_tensors_without_gradient():
    a, b = with_ties(3, 4, seed=1), with_ties(1, 4, seed=2)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    x = mm.Tensor(a, requires_grad=True)
    for got, expected in ((x > mm.Tensor(b), ta > tb), (x < 0.5, ta < 0.5), (x >= b, ta >= tb), (x <= 0, ta <= 0),
                          (x.gt(0), ta.gt(0)), (x.le(mm.Tensor(b)), ta.le(tb)), (0 < x, 0 < ta)):
        assert got.dtype == np.bool_ and not got.requires_grad
        np.testing.assert_array_equal(got.data, expected.numpy())
