"""reshape / transpose / permute / flatten / indexing / cat / split / pad against PyTorch."""
import numpy as np
import pytest
from parity import DTYPES, check_parity, randn, torch

import minimix as mm
import minimix.nn.functional as F

pytestmark = pytest.mark.usefixtures("each_path")  # every test on the fast and the reference path


@DTYPES
@pytest.mark.parametrize(
    "shape, new_shape",
    [((2, 3, 4), (6, 4)), ((2, 3, 4), (-1,)), ((1, 6), (3, 1, 2)), ((4,), (1, 4, 1)), ((1,), ())],
    ids=str,
)
def test_reshape(shape, new_shape, dtype):
    check_parity(lambda x: x.reshape(new_shape), lambda x: x.reshape(new_shape), [randn(*shape)], dtype)
    check_parity(lambda x: x.view(*new_shape), lambda x: x.reshape(new_shape), [randn(*shape)], dtype)


@DTYPES
@pytest.mark.parametrize("shape, dims", [((2, 3), (0, 1)), ((2, 3, 4), (0, 2)), ((1, 3, 1, 5), (-1, 1))], ids=str)
def test_transpose(shape, dims, dtype):
    check_parity(lambda x: x.transpose(*dims), lambda x: x.transpose(*dims), [randn(*shape)], dtype)


@DTYPES
def test_T_reverses_all_axes(dtype):
    check_parity(lambda x: x.T, lambda x: x.permute(2, 1, 0), [randn(2, 3, 4)], dtype)


@DTYPES
@pytest.mark.parametrize("shape, axes", [((2, 3, 4), (2, 0, 1)), ((1, 3, 1, 5), (0, 3, 1, 2)), ((3,), (0,))], ids=str)
def test_permute(shape, axes, dtype):
    check_parity(lambda x: x.permute(*axes), lambda x: x.permute(*axes), [randn(*shape)], dtype)
    check_parity(lambda x: mm.ops.permute(x, axes), lambda x: x.permute(axes), [randn(*shape)], dtype)


@DTYPES
@pytest.mark.parametrize("shape, start, end", [((2, 3, 4), 0, -1), ((2, 3, 4, 5), 1, -1), ((1, 3, 1, 2), 1, 2)], ids=str)
def test_flatten(shape, start, end, dtype):
    check_parity(lambda x: x.flatten(start, end), lambda x: x.flatten(start, end), [randn(*shape)], dtype)


INDICES = {
    "int": 1,
    "negative int": -1,
    "slice": slice(1, None),
    "stride 2": (slice(None), slice(None, None, 2)),
    "reversed": slice(None, None, -1),
    "newaxis and ellipsis": (None, Ellipsis, 0),
    "int array with repeats": np.array([0, 2, 0, 0]),
    "boolean mask": np.array([True, False, True]),
    "two int arrays": (np.array([0, 2, 2]), np.array([1, 1, 3])),
}


@DTYPES
@pytest.mark.parametrize("name", list(INDICES))
def test_getitem(name, dtype):
    """Repeated integer indices must ADD their gradients (np.add.at), not overwrite them."""
    index = INDICES[name]
    torch_index = tuple(torch.from_numpy(i) if isinstance(i, np.ndarray) else i for i in index) \
        if isinstance(index, tuple) else (torch.from_numpy(index) if isinstance(index, np.ndarray) else index)
    if name == "reversed":  # torch has no negative steps: flip instead
        check_parity(lambda x: x[index], lambda x: x.flip(0), [randn(3, 4)], dtype)
    else:
        check_parity(lambda x: x[index], lambda x: x[torch_index], [randn(3, 4)], dtype)


@DTYPES
@pytest.mark.parametrize(
    "shapes, axis",
    [([(2, 3), (4, 3)], 0), ([(2, 1), (2, 5), (2, 2)], 1), ([(1, 2, 3), (1, 2, 1)], -1), ([(3,)], 0)],
    ids=str,
)
def test_cat(shapes, axis, dtype):
    inputs = [randn(*s, seed=i) for i, s in enumerate(shapes)]
    check_parity(lambda *xs: mm.cat(xs, axis=axis), lambda *xs: torch.cat(xs, dim=axis), inputs, dtype)
    check_parity(lambda *xs: mm.concatenate(list(xs), dim=axis), lambda *xs: torch.cat(xs, dim=axis), inputs, dtype)


@DTYPES
@pytest.mark.parametrize(
    "shape, sizes, axis",
    [((7, 2), 3, 0), ((2, 6), [1, 2, 3], 1), ((1, 4, 3), [4], 1), ((2, 3, 5), 2, -1), ((4,), [0, 4], 0)],
    ids=str,
)
def test_split(shape, sizes, axis, dtype):
    """Each piece gets its own random upstream gradient; they land in the right slices of x."""
    check_parity(lambda x: x.split(sizes, axis), lambda x: torch.split(x, sizes, dim=axis), [randn(*shape)], dtype)
    check_parity(lambda x: mm.split(x, sizes, dim=axis), lambda x: x.split(sizes, dim=axis), [randn(*shape)], dtype)


@DTYPES
def test_split_then_cat_is_identity_with_gradient(dtype):
    """The MixConv pattern: split channels, transform each group differently, concatenate."""

    def mixed(lib_cat, split):
        def f(x):
            a, b, c = split(x)
            return lib_cat([a * 2.0, b.exp(), c.tanh()])

        return f

    mm_fn = mixed(lambda xs: mm.cat(xs, axis=1), lambda x: x.split([1, 3, 2], axis=1))
    torch_fn = mixed(lambda xs: torch.cat(xs, dim=1), lambda x: x.split([1, 3, 2], dim=1))
    check_parity(mm_fn, torch_fn, [randn(2, 6, 3)], dtype)


@DTYPES
@pytest.mark.parametrize(
    "shape, pad, value",
    [((2, 3), (1, 2), 0.0), ((1, 2, 3, 4), (1, 1, 2, 0), 0.0), ((3, 4), (0, 0, 1, 1), -1.5), ((2, 2), (0, 0), 0.0)],
    ids=str,
)
def test_pad(shape, pad, value, dtype):
    check_parity(
        lambda x: F.pad(x, pad, value=value),
        lambda x: torch.nn.functional.pad(x, pad, value=value),
        [randn(*shape)],
        dtype,
    )


# -- unsqueeze / squeeze / expand / stack / gather (issue 16) --------------------------------------
STRIDED = ["F", "channels_last", "reversed", "sliced"]


@DTYPES
@pytest.mark.parametrize("shape, dim", [((2, 3), 0), ((2, 3), 2), ((2, 3), -1), ((2, 3), -3), ((), 0), ((0, 4), 1)],
                         ids=str)
def test_unsqueeze(shape, dim, dtype):
    x = np.asarray(randn(*shape))
    check_parity(lambda t: t.unsqueeze(dim), lambda t: t.unsqueeze(dim), [x], dtype)
    check_parity(lambda t: mm.unsqueeze(t, dim), lambda t: torch.unsqueeze(t, dim), [x], dtype)


@DTYPES
@pytest.mark.parametrize("shape, dim", [((1, 3, 1, 2), None), ((1, 3, 1, 2), 0), ((1, 3, 1, 2), -2), ((1, 3, 1, 2), 1),
                                        ((1, 3, 1, 2), (0, 2)), ((1, 1), None), ((1,), 0), ((), None), ((), 0),
                                        ((0, 1), None)], ids=str)
def test_squeeze(shape, dim, dtype):
    """A named axis of size > 1 is left alone, as torch.squeeze."""
    x = np.asarray(randn(*shape))
    if dim is None:
        check_parity(lambda t: t.squeeze(), lambda t: t.squeeze(), [x], dtype)
    else:
        check_parity(lambda t: t.squeeze(dim), lambda t: t.squeeze(dim), [x], dtype)
        check_parity(lambda t: mm.squeeze(t, dim=dim), lambda t: torch.squeeze(t, dim), [x], dtype)


@DTYPES
@pytest.mark.parametrize("shape, sizes", [((3, 1), (3, 4)), ((1, 4), (2, 3, 4)), ((3, 1), (-1, 5)), ((1,), (0,)),
                                          ((2, 1, 1), (2, -1, 3)), ((), (2, 2)), ((2, 3), (2, 3))], ids=str)
def test_expand(shape, sizes, dtype):
    """The gradient of the expanded axes is summed back."""
    x = np.asarray(randn(*shape))
    check_parity(lambda t: t.expand(*sizes), lambda t: t.expand(*sizes), [x], dtype)
    check_parity(lambda t: t.expand(sizes), lambda t: t.expand(sizes), [x], dtype)


@DTYPES
@pytest.mark.parametrize("layout", STRIDED)
def test_unsqueeze_squeeze_expand_on_strided_input(layout, dtype):
    check_parity(lambda t: t.unsqueeze(1).squeeze(3), lambda t: t.unsqueeze(1).squeeze(3), [randn(2, 3, 1)], dtype,
                 layout=layout)
    check_parity(lambda t: t.expand(4, 2, 3, 5), lambda t: t.expand(4, 2, 3, 5), [randn(2, 3, 1)], dtype,
                 layout=layout)


@pytest.mark.parametrize("call, error, words", [
    (lambda t: t.unsqueeze(3), ValueError, ["unsqueeze", "dim 3", "(2, 3)"]),
    (lambda t: t.squeeze(2), ValueError, ["squeeze", "axis 2"]),
    (lambda t: t.expand(4, 3), ValueError, ["expand", "size 2", "only axes of size 1"]),
    (lambda t: t.expand(3), ValueError, ["expand", "at least 2"]),
    (lambda t: t.expand(-1, 2, 3), ValueError, ["expand", "new axes need a size"]),
    (lambda t: mm.stack([t, t.T]), ValueError, ["stack", "tensor 1", "(3, 2)", "(2, 3)"]),
    (lambda t: mm.stack([t], dim=3), ValueError, ["stack", "dim 3"]),
    (lambda t: mm.stack([]), ValueError, ["stack", "at least one"]),
    (lambda t: t.gather(1, np.array([[0.0]])), TypeError, ["gather", "integers", "float64"]),
    (lambda t: t.gather(1, np.array([0])), ValueError, ["gather", "(1,)", "(2, 3)", "number of dimensions"]),
    (lambda t: t.gather(1, np.array([[3]])), ValueError, ["gather", "[0, 3)", "3"]),
    (lambda t: t.gather(0, np.zeros((1, 4), np.int64)), ValueError, ["gather", "axis 1", "(1, 4)"]),
    (lambda t: t.gather(2, np.zeros((1, 1), np.int64)), ValueError, ["gather", "dim 2"]),
], ids=lambda v: v if isinstance(v, str) else None)
def test_shape_errors_name_the_op_and_shapes(call, error, words):
    with pytest.raises(error) as caught:
        call(mm.Tensor(np.ones((2, 3))))
    for word in words:
        assert word in str(caught.value), (word, str(caught.value))


@DTYPES
@pytest.mark.parametrize("shapes, dim", [([(2, 3)] * 3, 0), ([(2, 3)] * 2, 2), ([(2, 3)] * 2, -1), ([(4,)], 0),
                                         ([(0, 3)] * 2, 1), ([()] * 3, 0), ([(1, 2, 1)] * 4, -2)], ids=str)
def test_stack(shapes, dim, dtype):
    inputs = [np.asarray(randn(*s, seed=i)) for i, s in enumerate(shapes)]
    check_parity(lambda *ts: mm.stack(ts, dim), lambda *ts: torch.stack(ts, dim), inputs, dtype)
    check_parity(lambda *ts: mm.stack(list(ts), dim=dim), lambda *ts: torch.stack(list(ts), dim=dim), inputs, dtype)


@DTYPES
@pytest.mark.parametrize("layout", STRIDED)
def test_stack_strided_inputs(layout, dtype):
    check_parity(lambda *ts: mm.stack(ts, 1), lambda *ts: torch.stack(ts, 1), [randn(2, 3, 4), randn(2, 3, 4, seed=1)],
                 dtype, layout=layout)


def gather_index(x_shape, index_shape, dim, seed=0):
    """Random valid int64 indices, with repeats (whose gradients must add up)."""
    return np.random.default_rng(seed).integers(0, x_shape[dim], index_shape).astype(np.int64)


@DTYPES
@pytest.mark.parametrize("x_shape, index_shape, dim", [((3, 4), (3, 4), 1), ((3, 4), (5, 4), 0), ((3, 4), (2, 6), 1),
                                                       ((2, 3, 4), (2, 3, 1), 2), ((2, 3, 4), (1, 2, 2), -2),
                                                       ((4, 3), (0, 3), 0), ((1, 5), (1, 1), 1), ((5,), (7,), 0)],
                         ids=str)
def test_gather(x_shape, index_shape, dim, dtype):
    """index may be smaller than the input along the other axes; repeated indices add their gradients."""
    index = gather_index(x_shape, index_shape, dim)
    check_parity(lambda t, i: t.gather(dim, i), lambda t, i: t.gather(dim, i), [randn(*x_shape), index], dtype)
    check_parity(lambda t, i: mm.gather(t, dim, mm.Tensor(i)), lambda t, i: torch.gather(t, dim, i),
                 [randn(*x_shape), index], dtype)


@DTYPES
@pytest.mark.parametrize("layout", STRIDED)
def test_gather_strided_input(layout, dtype):
    index = gather_index((2, 3, 4), (2, 3, 5), 2)
    check_parity(lambda t, i: t.gather(2, i), lambda t, i: t.gather(2, i), [randn(2, 3, 4), index], dtype,
                 layout=[layout, None])


@DTYPES
def test_gather_0d(dtype):
    check_parity(lambda t, i: t.gather(0, i), lambda t, i: t.gather(0, i), [np.asarray(2.5), np.asarray(0)], dtype)


@DTYPES
@pytest.mark.parametrize("shape, start, end", [((2, 3, 4), 0, 1), ((2, 3, 4), -2, -1), ((2, 3, 4), 1, 1), ((), 0, -1),
                                               ((0, 3, 2), 1, 2), ((1, 3, 1, 2), 0, 2)], ids=str)
def test_flatten_torch_signature(shape, start, end, dtype):
    """flatten(start_dim=0, end_dim=-1), as a method and as minimix.flatten."""
    x = np.asarray(randn(*shape))
    check_parity(lambda t: t.flatten(start_dim=start, end_dim=end), lambda t: t.flatten(start_dim=start, end_dim=end),
                 [x], dtype)
    check_parity(lambda t: mm.flatten(t, start, end), lambda t: torch.flatten(t, start, end), [x], dtype)
    check_parity(lambda t: mm.flatten(t), lambda t: torch.flatten(t), [x], dtype)
