"""max_pool2d, avg_pool2d, adaptive_max_pool2d and their modules against PyTorch: odd shapes (batch 1, an
empty batch, non-square, unbatched), stride 2, overlapping windows, padding, dilation, ceil_mode, memory
layouts; ties, NaN and -inf windows (the gradient goes where torch sends it); torch's indices; bad arguments.

(No fast implementation exists for these ops, so unlike the conv tests they run on the one reference path.)
"""
import numpy as np
import pytest
from parity import DTYPES, LAYOUTS, check_parity, randn, torch

import minimix as mm
import minimix.nn as nn
import minimix.nn.functional as F

TF = torch.nn.functional

# (input shape, keyword arguments): given alike to minimix and torch
MAX_CASES = [
    ((2, 3, 7, 6), dict(kernel_size=2)),  # stride defaults to kernel_size; 7 rows: the last one unused
    ((1, 2, 5, 7), dict(kernel_size=3, stride=2, padding=1)),  # batch 1, non-square, stride 2, padding
    ((0, 2, 5, 5), dict(kernel_size=2)),  # empty batch
    ((2, 2, 6, 5), dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1))),
    ((2, 1, 6, 6), dict(kernel_size=3, stride=1)),  # overlapping windows
    ((1, 2, 9, 8), dict(kernel_size=2, stride=1, padding=1, dilation=3)),
    ((1, 2, 9, 8), dict(kernel_size=(3, 2), stride=2, dilation=(1, 2), padding=(1, 0))),
    ((2, 2, 7, 6), dict(kernel_size=3, stride=2, ceil_mode=True)),
    ((1, 1, 6, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),  # last window dropped
    ((3, 5, 7), dict(kernel_size=2, stride=1)),  # unbatched (C, H, W)
    ((1, 1, 1, 1), dict(kernel_size=1)),
]

AVG_CASES = [
    ((2, 3, 7, 6), dict(kernel_size=2)),
    ((1, 2, 5, 7), dict(kernel_size=3, stride=2, padding=1)),
    ((1, 2, 5, 7), dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
    ((0, 2, 5, 5), dict(kernel_size=2)),
    ((2, 2, 6, 5), dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1))),
    ((2, 1, 6, 6), dict(kernel_size=3, stride=1)),
    ((2, 2, 7, 6), dict(kernel_size=3, stride=2, ceil_mode=True)),
    ((2, 2, 7, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ((2, 2, 7, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ((1, 2, 5, 6), dict(kernel_size=2, padding=1, divisor_override=3)),
    ((3, 5, 7), dict(kernel_size=2, stride=1)),
]

ADAPTIVE_CASES = [
    ((2, 3, 7, 6), 1),
    ((2, 3, 7, 6), (3, 4)),  # bins of unequal size, neighbours sharing rows
    ((1, 2, 5, 5), 2),
    ((1, 2, 5, 5), (7, 9)),  # more bins than rows: every row serves several bins
    ((0, 2, 6, 4), (3, 2)),
    ((2, 2, 5, 6), (None, 4)),  # None: keep the input's height
    ((3, 6, 5), (2, 3)),  # unbatched
]


def _ids(case):
    shape, kwargs = case
    return f"{shape}-{kwargs}"


@DTYPES
@pytest.mark.parametrize("case", MAX_CASES, ids=_ids)
def test_max_pool2d_matches_torch(case, dtype):
    shape, kwargs = case
    check_parity(lambda x: F.max_pool2d(x, **kwargs), lambda x: TF.max_pool2d(x, **kwargs), [randn(*shape)], dtype)


@DTYPES
@pytest.mark.parametrize("case", AVG_CASES, ids=_ids)
def test_avg_pool2d_matches_torch(case, dtype):
    shape, kwargs = case
    check_parity(lambda x: F.avg_pool2d(x, **kwargs), lambda x: TF.avg_pool2d(x, **kwargs), [randn(*shape)], dtype)


@DTYPES
@pytest.mark.parametrize("case", ADAPTIVE_CASES, ids=_ids)
def test_adaptive_max_pool2d_matches_torch(case, dtype):
    shape, size = case
    check_parity(lambda x: F.adaptive_max_pool2d(x, size), lambda x: TF.adaptive_max_pool2d(x, size),
                 [randn(*shape)], dtype)


def test_adaptive_max_pool2d_to_an_empty_output():
    """torch allows output_size 0 (forward only: its backward refuses an empty output)."""
    check_parity(lambda x: F.adaptive_max_pool2d(x, (0, 2)), lambda x: TF.adaptive_max_pool2d(x, (0, 2)),
                 [randn(1, 2, 5, 5)], np.float64, check_grad=False)


POOLS = {
    "max_pool2d": (lambda x: F.max_pool2d(x, 3, 2, 1), lambda x: TF.max_pool2d(x, 3, 2, 1)),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
                   lambda x: TF.avg_pool2d(x, 3, 2, 1, count_include_pad=False)),
    "adaptive_max_pool2d": (lambda x: F.adaptive_max_pool2d(x, (3, 2)), lambda x: TF.adaptive_max_pool2d(x, (3, 2))),
}


@DTYPES
@pytest.mark.parametrize("layout", [lay for lay in LAYOUTS if lay != "C"])
@pytest.mark.parametrize("op", list(POOLS))
def test_pooling_reads_any_memory_layout(op, layout, dtype):
    mm_fn, torch_fn = POOLS[op]
    check_parity(mm_fn, torch_fn, [randn(2, 3, 7, 5)], dtype, layout=layout)


def _ties(*shape, seed=0):
    """Values from {-1, 0, 1}: most windows hold several equal maxima."""
    return np.random.default_rng(seed).integers(-1, 2, shape).astype(np.float64)


TIE_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=1),  # overlapping windows: one element is the maximum of several
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=2, stride=1, padding=1, dilation=2),
    dict(kernel_size=3, stride=2, ceil_mode=True),
]


@DTYPES
@pytest.mark.parametrize("kwargs", TIE_CASES, ids=str)
def test_max_pool2d_ties_follow_torch(kwargs, dtype):
    """Each window's gradient goes to its first maximum in row-major order, gradients adding up where
    overlapping windows choose the same element; the indices equal torch's."""
    for x in (_ties(2, 3, 7, 6), np.ones((1, 2, 5, 5))):
        check_parity(lambda t: F.max_pool2d(t, **kwargs), lambda t: TF.max_pool2d(t, **kwargs), [x], dtype)
        _, ours = F.max_pool2d(mm.Tensor(x.astype(dtype)), return_indices=True, **kwargs)
        _, theirs = TF.max_pool2d(torch.tensor(x.astype(dtype)), return_indices=True, **kwargs)
        assert ours.dtype == np.int64
        np.testing.assert_array_equal(ours.data, theirs.numpy())


@DTYPES
@pytest.mark.parametrize("size", [1, (3, 4), (7, 9)], ids=str)
def test_adaptive_max_pool2d_ties_follow_torch(size, dtype):
    for x in (_ties(2, 3, 7, 6), np.ones((1, 2, 5, 5))):
        check_parity(lambda t: F.adaptive_max_pool2d(t, size), lambda t: TF.adaptive_max_pool2d(t, size), [x], dtype)
        _, ours = F.adaptive_max_pool2d(mm.Tensor(x.astype(dtype)), size, return_indices=True)
        _, theirs = TF.adaptive_max_pool2d(torch.tensor(x.astype(dtype)), size, return_indices=True)
        np.testing.assert_array_equal(ours.data, theirs.numpy())


@DTYPES
@pytest.mark.parametrize("op", ["max_pool2d", "adaptive_max_pool2d"])
def test_max_pooling_of_nan_and_minus_inf_windows(op, dtype):
    """A window holding NaN gives NaN (its gradient goes to the last NaN, as torch); a window of -inf
    (padding included) gives -inf with the gradient on its first element inside the input."""
    x = randn(1, 2, 6, 6)
    x[0, 0, 1, 1] = x[0, 0, 1, 2] = np.nan
    x[0, 1, :3, :3] = -np.inf
    x[0, 1, 4, 4] = np.nan
    mm_fn, torch_fn = ((lambda t: F.max_pool2d(t, 3, 2, 1), lambda t: TF.max_pool2d(t, 3, 2, 1)) if op == "max_pool2d"
                       else (lambda t: F.adaptive_max_pool2d(t, 4), lambda t: TF.adaptive_max_pool2d(t, 4)))
    out = check_parity(mm_fn, torch_fn, [x], dtype)
    assert np.isnan(out[0].data).any() and np.isneginf(out[0].data).any()


# (module name, constructor arguments) given alike to minimix.nn and torch.nn
MODULES = [
    ("MaxPool2d", (2,), {}),
    ("MaxPool2d", (3, 2, 1), {}),
    ("MaxPool2d", ((2, 3),), dict(stride=1, padding=(1, 0), dilation=(1, 2), ceil_mode=True)),
    ("AvgPool2d", (2,), {}),
    ("AvgPool2d", (3,), dict(stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ("AvgPool2d", ((2, 3), (1, 2)), dict(divisor_override=4)),
    ("AdaptiveMaxPool2d", (1,), {}),
    ("AdaptiveMaxPool2d", ((3, None),), {}),
]


@DTYPES
@pytest.mark.parametrize("name, args, kwargs", MODULES, ids=str)
def test_pooling_module_matches_torch_module(name, args, kwargs, dtype):
    ours, theirs = getattr(nn, name)(*args, **kwargs), getattr(torch.nn, name)(*args, **kwargs)
    check_parity(lambda x: ours(x), lambda x: theirs(x), [randn(2, 3, 7, 6)], dtype)
    assert repr(ours) == repr(theirs)


@pytest.mark.parametrize("name, args", [("MaxPool2d", (3, 2, 1)), ("AdaptiveMaxPool2d", ((2, 3),))], ids=str)
def test_pooling_module_return_indices(name, args):
    ours = getattr(nn, name)(*args, return_indices=True)
    theirs = getattr(torch.nn, name)(*args, return_indices=True)
    x = _ties(2, 3, 7, 6)
    (y, i), (ty, ti) = ours(mm.Tensor(x)), theirs(torch.tensor(x))
    np.testing.assert_array_equal(y.data, ty.numpy())
    np.testing.assert_array_equal(i.data, ti.numpy())


def test_return_indices_without_a_graph():
    """Indices come back also where no gradient is recorded (no_grad, or an input without grad)."""
    x = _ties(1, 2, 6, 6)
    with mm.no_grad():
        _, ours = F.max_pool2d(mm.Tensor(x, requires_grad=True), 2, 1, return_indices=True)
    _, theirs = TF.max_pool2d(torch.tensor(x), 2, 1, return_indices=True)
    np.testing.assert_array_equal(ours.data, theirs.numpy())


def test_max_pool_in_a_small_cnn_matches_torch():
    """conv -> relu -> max pool -> avg pool -> flatten -> linear: every parameter's gradient as torch's."""
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                 torch.nn.AvgPool2d(2, ceil_mode=True), torch.nn.Flatten(),
                                 torch.nn.Linear(4 * 2 * 2, 3)).double()
    ours = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.AvgPool2d(2, ceil_mode=True),
                         nn.Flatten(), nn.Linear(4 * 2 * 2, 3))
    for (_, p), (_, q) in zip(sorted(ours.named_parameters()), sorted(theirs.named_parameters())):
        p.data = q.detach().numpy().copy()
    x = randn(2, 3, 7, 7)
    ours(mm.Tensor(x)).sum().backward()
    theirs(torch.tensor(x)).sum().backward()
    for (name, p), (_, q) in zip(sorted(ours.named_parameters()), sorted(theirs.named_parameters())):
        np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


# bad arguments: torch refuses each of them too (checked first), minimix with an error naming the argument
BAD = [
    ("max_pool2d", (2, 3, 9, 9), dict(kernel_size=3, padding=2), ValueError, ["padding", "kernel_size"]),
    ("max_pool2d", (2, 3, 9, 9), dict(kernel_size=(2, 3), padding=(1, 2)), ValueError, ["padding", "(1, 2)"]),
    ("max_pool2d", (2, 3, 9, 9), dict(kernel_size=0), ValueError, ["kernel_size", "0"]),
    ("max_pool2d", (2, 3, 9, 9), dict(kernel_size=2, stride=0), ValueError, ["stride", "0"]),
    ("max_pool2d", (2, 3, 9, 9), dict(kernel_size=2, padding=-1), ValueError, ["padding", "-1"]),
    ("max_pool2d", (2, 3, 9, 9), dict(kernel_size=2, dilation=0), ValueError, ["dilation", "0"]),
    ("max_pool2d", (2, 3, 9, 9), dict(kernel_size=20), ValueError, ["height", "9", "kernel_size"]),
    ("max_pool2d", (2, 3, 9, 9), dict(kernel_size=2.5), TypeError, ["kernel_size", "2.5"]),
    ("max_pool2d", (2, 3, 9, 9), dict(kernel_size=(2, 2, 2)), TypeError, ["kernel_size", "(2, 2, 2)"]),
    ("max_pool2d", (9, 9), dict(kernel_size=2), ValueError, ["(N, C, H, W)", "(9, 9)"]),
    ("max_pool2d", (2, 0, 9, 9), dict(kernel_size=2), ValueError, ["(N, C, H, W)", "(2, 0, 9, 9)"]),
    ("avg_pool2d", (2, 3, 9, 9), dict(kernel_size=3, padding=2), ValueError, ["padding", "kernel_size"]),
    ("avg_pool2d", (2, 3, 4, 9), dict(kernel_size=5), ValueError, ["height", "4", "kernel_size"]),
    ("avg_pool2d", (2, 3, 9, 9), dict(kernel_size=2, divisor_override=0), ValueError, ["divisor_override"]),
    ("adaptive_max_pool2d", (2, 3, 9, 9), dict(output_size=(2, 2, 2)), TypeError, ["output_size"]),
    ("adaptive_max_pool2d", (2, 3, 9, 9), dict(output_size=-1), ValueError, ["output_size", "-1"]),
    ("adaptive_max_pool2d", (3, 9), dict(output_size=2), ValueError, ["(N, C, H, W)", "(3, 9)"]),
]


@pytest.mark.parametrize("op, shape, kwargs, error, words", BAD, ids=lambda v: str(v))
def test_bad_pooling_arguments_are_refused_as_in_torch(op, shape, kwargs, error, words):
    with pytest.raises((RuntimeError, ValueError, TypeError)):
        getattr(TF, op)(torch.zeros(shape), **kwargs)
    with pytest.raises(error) as info:
        getattr(F, op)(mm.Tensor(np.zeros(shape)), **kwargs)
    for word in words:
        assert word in str(info.value), f"{word!r} not in: {info.value}"
