"""conv2d against torch.nn.functional.conv2d: every backend, forward and all gradients, plus bad input."""
import numpy as np
import pytest
from conftest import require
from parity import DTYPES, check_parity, randn, torch

import minimix as mm
import minimix.nn.functional as F
from minimix.kernels import im2col, naive


# (x shape, weight shape, conv2d keyword arguments): a sweep chosen so that every
# kernel size 1/3/5/7/9/11, stride 1/2, padding 0/k//2/other, dilation 1/2,
# groups 1/2/depthwise, batch 1 and 2 and non-square inputs appear, without a full product.
CASES = {
    "1x1-batch1": ((1, 3, 7, 6), (4, 3, 1, 1), {}),
    "1x1-stride2": ((2, 4, 9, 7), (6, 4, 1, 1), dict(stride=2)),
    "1x1-groups2": ((2, 4, 5, 6), (6, 2, 1, 1), dict(groups=2)),
    "1x1-pad1-col2im": ((1, 2, 4, 5), (3, 2, 1, 1), dict(padding=1)),
    "3x3-pad1": ((2, 3, 8, 7), (5, 3, 3, 3), dict(padding=1)),
    "3x3-stride2-groups2": ((1, 4, 9, 8), (4, 2, 3, 3), dict(stride=2, padding=1, groups=2)),
    "5x5-valid": ((2, 3, 10, 9), (2, 3, 5, 5), dict(padding=0)),
    "3x5-dilation2-pair": ((2, 4, 11, 10), (4, 2, 3, 5), dict(dilation=2, padding=(2, 3), groups=2)),
    "4x2-even-stride21": ((2, 2, 7, 9), (3, 2, 4, 2), dict(stride=(2, 1), padding=(1, 0))),
    "3x3-same": ((2, 3, 8, 8), (4, 3, 3, 3), dict(padding="same")),
    "dw3-pad2-stride2": ((2, 4, 6, 5), (4, 1, 3, 3), dict(stride=2, padding=2, groups=4)),
    "dw5-dilation2": ((1, 3, 10, 9), (3, 1, 5, 5), dict(dilation=2, padding=4, groups=3)),
    "dw7": ((2, 5, 9, 11), (5, 1, 7, 7), dict(padding=3, groups=5)),
    "dw9-stride2": ((1, 3, 12, 10), (3, 1, 9, 9), dict(stride=2, padding=4, groups=3)),
    "dw11": ((2, 2, 13, 12), (2, 1, 11, 11), dict(padding=5, groups=2)),
    "dw-multiplier2": ((2, 3, 9, 8), (6, 1, 3, 3), dict(padding=1, groups=3)),
    "dw3-empty-batch": ((0, 4, 6, 5), (4, 1, 3, 3), dict(padding=1, groups=4)),
    "1x1-empty-batch": ((0, 3, 4, 5), (2, 3, 1, 1), {}),
}
pytestmark = pytest.mark.usefixtures("each_path")  # every test on the fast and the reference path


def _is_depthwise(x_shape, w_shape, kw):
    return kw.get("groups", 1) == x_shape[1] == w_shape[0]


def _backend_params():
    params = []
    for name, (x_shape, w_shape, kw) in CASES.items():
        backends = ["auto", "naive", "im2col"]
        if _is_depthwise(x_shape, w_shape, kw):
            backends.append("numba")
        if w_shape[2:] == (1, 1) and not kw:
            backends.append("pointwise")
        params += [pytest.param(name, b, id=f"{name}-{b}") for b in backends]
    return params


def _torch_conv(kw):
    return lambda x, w, b: torch.nn.functional.conv2d(x, w, b, **kw)


@DTYPES
@pytest.mark.parametrize("case, backend", _backend_params())
def test_conv2d_matches_torch(case, backend, dtype):
    if backend == "numba":
        require("numba", "the numba backend")
    x_shape, w_shape, kw = CASES[case]
    inputs = [randn(*x_shape), randn(*w_shape, seed=1), randn(w_shape[0], seed=2)]
    check_parity(lambda x, w, b: F.conv2d(x, w, b, backend=backend, **kw), _torch_conv(kw), inputs, dtype)


@pytest.mark.parametrize("case", ["3x3-stride2-groups2", "3x5-dilation2-pair", "dw9-stride2", "dw-multiplier2"])
def test_backends_agree_with_each_other(case):
    """The three backends are separate implementations of one formula: same numbers, same gradients."""
    x_shape, w_shape, kw = CASES[case]
    backends = ["naive", "im2col"] + (["numba"] if _is_depthwise(x_shape, w_shape, kw) else [])
    if "numba" in backends:
        require("numba", "the numba backend")
    results = []
    for backend in backends:
        x = mm.Tensor(randn(*x_shape), requires_grad=True)
        w = mm.Tensor(randn(*w_shape, seed=1), requires_grad=True)
        y = F.conv2d(x, w, backend=backend, **kw)
        y.backward(randn(*y.shape, seed=3))
        results.append((backend, y.data, x.grad, w.grad))
    for backend, *arrays in results[1:]:
        for what, a, b in zip(("output", "input grad", "weight grad"), arrays, results[0][1:]):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=f"{backend} vs naive: {what}")


def test_auto_backend_choice(each_path):
    """auto: on the fast path depthwise -> numba, 1x1 -> pointwise, everything else -> im2col;
    on the reference path im2col for all."""
    from minimix.fast import conv as fast_conv

    x = mm.Tensor(randn(1, 4, 6, 6), requires_grad=True)
    dense = F.conv2d(x, mm.Tensor(randn(4, 4, 3, 3), requires_grad=True))
    depthwise = F.conv2d(x, mm.Tensor(randn(4, 1, 3, 3), requires_grad=True), groups=4)
    pointwise = F.conv2d(x, mm.Tensor(randn(5, 4, 1, 1), requires_grad=True))
    assert dense._ctx.kernels is im2col
    fast = each_path == "fast"
    assert depthwise._ctx.kernels is (fast_conv.DEPTHWISE if fast else im2col)
    assert pointwise._ctx.kernels is (fast_conv.POINTWISE if fast else im2col)


def test_conv_backend_context_manager_switches_and_restores():
    x = mm.Tensor(randn(1, 2, 5, 5), requires_grad=True)
    w = mm.Tensor(randn(3, 2, 3, 3), requires_grad=True)
    with F.conv_backend("naive"):
        assert F.conv2d(x, w)._ctx.kernels is naive
        assert F.conv2d(x, w, backend="im2col")._ctx.kernels is im2col  # an explicit backend wins
    assert F.conv2d(x, w)._ctx.kernels is im2col
    with pytest.raises(ValueError, match="unknown backend 'fft'"):
        with F.conv_backend("fft"):
            pass


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_keeps_dtype(dtype):
    x = mm.Tensor(randn(2, 3, 6, 6).astype(dtype), requires_grad=True)
    w = mm.Tensor(randn(4, 3, 3, 3).astype(dtype), requires_grad=True)
    y = F.conv2d(x, w, padding=1)
    y.sum().backward()
    assert y.dtype == x.grad.dtype == w.grad.dtype == dtype


@pytest.mark.parametrize("w_shape, kw", [((4, 3, 3, 3), dict(padding=1, stride=2)), ((5, 3, 1, 1), {})])
def test_im2col_batch_chunks_give_the_same_result(monkeypatch, w_shape, kw):
    """With a tiny chunk budget every image is its own chunk; the reused cols buffer must not leak between them."""
    monkeypatch.setattr(im2col, "CHUNK_BYTES", 1)
    inputs = [randn(3, 3, 7, 6), randn(*w_shape, seed=1), randn(w_shape[0], seed=2)]
    check_parity(lambda x, w, b: F.conv2d(x, w, b, backend="im2col", **kw), _torch_conv(kw), inputs, np.float64)


def test_im2col_col2im_are_adjoint():
    """<im2col(x), c> == <x, col2im(c)>: the defining property that makes the backward correct."""
    x = randn(2, 3, 7, 6)
    geometry = ((3, 2), (2, 1), (1, 2), (2, 1))  # kernel, stride, padding, dilation
    cols = im2col.im2col(x, *geometry)
    c = randn(*cols.shape, seed=1)
    lhs = np.sum(cols * c)
    rhs = np.sum(x * im2col.col2im(c, x.shape[2:], *geometry[1:]))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


BAD_INPUTS = [
    ("x must be 4-D", (3, 5, 5), (2, 3, 3, 3), {}),
    ("weight must be 4-D", (1, 3, 5, 5), (2, 3, 3), {}),
    ("x has 4 channels", (1, 4, 5, 5), (2, 3, 3, 3), {}),
    ("groups=2 must divide", (1, 3, 5, 5), (2, 1, 3, 3), dict(groups=2)),
    ("groups must be a positive int", (1, 3, 5, 5), (2, 3, 3, 3), dict(groups=0)),
    ("odd kernel", (1, 3, 5, 5), (2, 3, 2, 2), dict(padding="same")),
    ("needs stride 1", (1, 3, 5, 5), (2, 3, 3, 3), dict(padding="same", stride=2)),
    ("padding must be >= 0", (1, 3, 5, 5), (2, 3, 3, 3), dict(padding=-1)),
    ("padding must be an int, a pair", (1, 3, 5, 5), (2, 3, 3, 3), dict(padding="full")),
    ("stride and dilation must be >= 1", (1, 3, 5, 5), (2, 3, 3, 3), dict(stride=0)),
    ("too small for kernel", (1, 3, 2, 5), (2, 3, 3, 3), {}),
    ("unknown backend 'fast'", (1, 3, 5, 5), (2, 3, 3, 3), dict(backend="fast")),
]


@pytest.mark.parametrize("message, x_shape, w_shape, kw", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_raises_value_error(message, x_shape, w_shape, kw):
    with pytest.raises(ValueError, match=message):
        F.conv2d(mm.Tensor(randn(*x_shape)), mm.Tensor(randn(*w_shape)), **kw)


def test_bad_bias_and_dtype():
    x, w = mm.Tensor(randn(1, 3, 5, 5)), mm.Tensor(randn(2, 3, 3, 3))
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        F.conv2d(x, w, mm.Tensor(randn(3)))
    with pytest.raises(TypeError, match="share one dtype"):
        F.conv2d(x, w.astype(np.float32))
