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
