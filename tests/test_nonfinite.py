"""inf and NaN through depthwise convolutions, MixConv and the fused inference module, against torch.

The Numba depthwise kernels compute with *masked taps* (minimix/kernels/depthwise_numba.py): a tap
that falls into the padding still multiplies the neighbouring value it reads by 0, and inf * 0 is
NaN. One inf at the edge of a plane then turned outputs at the opposite edge of its row, or in the
next channel, into NaN where torch stays finite (issue 14, item 6). The kernels now check each
result and recompute exactly when it holds inf or NaN. Every case runs on both paths (the
reference path computes with zero padding, as torch) and compares forward values and gradients
with torch, inf and NaN position by position (tests/parity.py).
"""
import numpy as np
import pytest
from conftest import require
from parity import DTYPES, TOLERANCES, check_parity, randn, torch

import minimix as mm
import minimix.nn as nn
import minimix.nn.functional as F

pytestmark = pytest.mark.usefixtures("each_path")  # every test on the fast and the reference path

INF, NAN = np.inf, np.nan


def _poison(x, where):
    """A copy of x with x[index] = value for each (index, value) of ``where``."""
    x = x.copy()
    for index, value in where:
        x[index] = value
    return x


# (name, x shape, kernel, stride, padding, dilation, [(index, value)]): an inf at the edge or corner
# of a plane, where the masked taps would reach the opposite edge of the row and the next channel.
DEPTHWISE = [
    ("inf-left-edge-k3", (2, 4, 6, 7), 3, 1, 1, 1, [((0, 1, 2, 0), INF)]),
    ("inf-right-edge-k5", (2, 4, 6, 7), 5, 1, 2, 1, [((1, 2, 3, 6), INF)]),
    ("-inf-corner-k3", (2, 3, 5, 5), 3, 1, 1, 1, [((0, 0, 0, 0), -INF)]),
    ("inf-last-corner-k7", (2, 3, 8, 8), 7, 1, 3, 1, [((1, 2, 7, 7), INF)]),
    ("nan-inside-k3", (2, 4, 6, 7), 3, 1, 1, 1, [((0, 1, 3, 3), NAN)]),
    ("inf-and-nan-stride2", (2, 4, 9, 8), 3, 2, 1, 1, [((0, 1, 0, 7), INF), ((1, 3, 4, 4), NAN)]),
    ("inf-edge-stride2-k5", (1, 3, 10, 9), 5, 2, 2, 1, [((0, 2, 9, 0), -INF)]),
    ("inf-edge-dilation2", (2, 3, 9, 8), 3, 1, 2, 2, [((1, 0, 4, 0), INF)]),
    ("inf-edge-padding0", (2, 3, 7, 8), 3, 1, 0, 1, [((0, 1, 3, 7), INF)]),
    ("inf-edge-big-padding", (1, 3, 5, 6), 3, 1, 3, 1, [((0, 0, 4, 5), INF)]),
]
IDS = [case[0] for case in DEPTHWISE]


def _depthwise_inputs(case):
    _, x_shape, k, stride, padding, dilation, where = case
    x = _poison(randn(*x_shape), where)
    w = randn(x_shape[1], 1, k, k, seed=1)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=x_shape[1])
    return x, w, kw


@DTYPES
@pytest.mark.parametrize("backend", ["auto", "numba", "im2col"])
@pytest.mark.parametrize("case", DEPTHWISE, ids=IDS)
def test_depthwise_conv2d_with_inf_and_nan_input_matches_torch(case, backend, dtype):
    """Forward and both gradients (a finite upstream gradient; dL/dw sums x, so it holds inf/NaN)."""
    if backend == "numba":
        require("numba")
    x, w, kw = _depthwise_inputs(case)
    out = check_parity(lambda x, w: F.conv2d(x, w, backend=backend, **kw),
                       lambda x, w: torch.nn.functional.conv2d(x, w, **kw), [x, w], dtype)
    assert not np.isfinite(out[0].data).all()  # the case does reach the output


def _check_upstream_inf(mm_fn, torch_fn, x, weights, g, dtype):
    """mm_fn(x, *weights) against torch_fn, back-propagating ``g`` (which holds inf or NaN).

    A weight tap that reads zero padding at the inf's position gets inf * 0 = NaN in dL/dw. torch
    computes that in float64 (as minimix's im2col on both paths), but its float32 CPU kernel skips
    padding and reports a finite number there: so dL/dx is compared with torch in ``dtype``, and
    dL/dw with torch's float64 result (the one definition) at ``dtype``'s tolerance.
    """
    xt = torch.tensor(x, requires_grad=True)
    wt = [torch.tensor(w, requires_grad=True) for w in weights]
    torch_fn(xt, *wt).backward(torch.tensor(g))
    w_mm = [mm.Tensor(w.astype(dtype), requires_grad=True) for w in weights]
    check_parity(lambda x: mm_fn(x, *w_mm), lambda x: torch_fn(x, *[torch.tensor(w, dtype=x.dtype) for w in weights]),
                 [x], dtype, grad_outputs=[g])
    tol = TOLERANCES[dtype]
    for ours, theirs in zip(w_mm, wt):
        expected = theirs.grad.numpy()
        finite = np.isfinite(expected)
        np.testing.assert_array_equal(ours.grad[~finite], expected[~finite].astype(dtype))
        np.testing.assert_allclose(ours.grad[finite], expected[finite], rtol=tol["rtol"],
                                   atol=tol["atol"] * max([1, *np.abs(expected[finite])]))


@DTYPES
@pytest.mark.parametrize("case", DEPTHWISE, ids=IDS)
def test_depthwise_conv2d_with_inf_in_the_upstream_gradient_matches_torch(case, dtype):
    """x finite, an inf (or NaN) at the edges of dL/dy: dL/dx and dL/dw as torch."""
    x, w, kw = _depthwise_inputs(case[:-1] + ([],))
    n, c, oh, ow = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), **kw).shape
    g = _poison(randn(n, c, oh, ow, seed=3), [((0, c - 1, 0, ow - 1), INF), ((n - 1, 0, oh - 1, 0), -INF)])
    if case[0].startswith("nan"):
        g = _poison(g, [((0, 1, oh // 2, ow // 2), NAN)])
    _check_upstream_inf(lambda x, w: F.conv2d(x, w, **kw), lambda x, w: torch.nn.functional.conv2d(x, w, **kw),
                        x, [w], g, dtype)


def _torch_mixconv(splits, kernel_sizes, stride, dilation):
    def run(x, *weights):
        parts = torch.split(x, splits, dim=1)
        return torch.cat([torch.nn.functional.conv2d(p, w, stride=stride, padding=dilation * (k - 1) // 2,
                                                     dilation=dilation, groups=c)
                          for p, w, k, c in zip(parts, weights, kernel_sizes, splits)], dim=1)
    return run


# (channels, kernel sizes, stride, x shape (N, H, W), [(index, value)]): inf at the last channel of a group
# (the next channel belongs to the next group), at plane edges, NaN inside
MIXCONV = [
    (7, (3, 5), 1, (2, 6, 7), [((0, 3, 2, 6), INF), ((1, 4, 0, 0), -INF)]),
    (9, (3, 5, 7), 2, (2, 9, 8), [((0, 2, 8, 7), INF), ((1, 5, 4, 0), NAN)]),
    (6, (3, 5, 7), 2, (2, 8, 10), [((0, 1, 7, 9), INF), ((1, 4, 0, 0), -INF), ((0, 3, 3, 4), NAN)]),  # depthwise_rows
    (8, (3, 5, 7, 9), 1, (1, 9, 9), [((0, 1, 4, 8), -INF), ((0, 6, 4, 4), NAN)]),
]


@DTYPES
@pytest.mark.parametrize("channels, kernel_sizes, stride, x_shape, where", MIXCONV)
def test_mixconv_with_inf_and_nan_matches_torch(channels, kernel_sizes, stride, x_shape, where, dtype):
    module = nn.MixConv2d(channels, kernel_sizes, stride=stride)
    x = _poison(randn(x_shape[0], channels, *x_shape[1:]), where)
    weights = [randn(c, 1, k, k, seed=i + 1) for i, (c, k) in enumerate(zip(module.splits, kernel_sizes))]

    def run(x, *ws):
        for conv, w in zip(module.convs, ws):
            conv.weight = w
        return module(x)

    torch_fn = _torch_mixconv(module.splits, kernel_sizes, stride, 1)
    check_parity(run, torch_fn, [x] + weights, dtype)
    x = _poison(x, [(index, 0.5) for index, _ in where])
    y_shape = torch_fn(torch.tensor(x), *[torch.tensor(w) for w in weights]).shape
    g = _poison(randn(*y_shape, seed=4), [((0, 0, 0, y_shape[3] - 1), INF), ((0, channels - 1, 0, 0), NAN)])
    _check_upstream_inf(run, torch_fn, x, weights, g, dtype)


@DTYPES
@pytest.mark.parametrize("activation", [None, "relu", "silu"])
@pytest.mark.parametrize("where", [
    [((0, 3, 2, 0), INF)],                       # the last channel of group 1: the next one is group 2's
    [((1, 0, 0, 0), -INF), ((0, 5, 5, 6), INF)],  # corners; -inf through relu is 0, through silu NaN
    [((0, 2, 3, 3), NAN)],
])
@pytest.mark.parametrize("H, W, stride", [(6, 7, 1), (6, 16, 1), (8, 10, 2)],
                         ids=["6x7", "6x16-rows", "8x10-stride2-rows"])  # depthwise_numba, depthwise_rows
def test_fused_mixconv_bn_act_with_inf_and_nan_matches_torch(where, activation, dtype, H, W, stride):
    """``nn.fuse``'s MixConvBNAct (inference, no_grad): the Numba kernel's epilogue applies BatchNorm and
    the activation; with inf/NaN the result must still be torch's conv -> batch_norm -> activation."""
    channels, splits, kernel_sizes = 7, None, (3, 5)
    conv = nn.MixConv2d(channels, kernel_sizes, stride=stride)
    splits = conv.splits
    for i, c in enumerate(conv.convs):
        c.weight.data = randn(*c.weight.shape, seed=i + 1).astype(dtype)
    bn = nn.BatchNormAct2d(channels, eps=1e-3, act_layer={None: None, "relu": nn.ReLU, "silu": nn.SiLU}[activation],
                           dtype=dtype)
    bn.weight.data = (1 + randn(channels, seed=10)).astype(dtype)
    bn.bias.data = randn(channels, seed=11).astype(dtype)
    bn.running_mean[:] = randn(channels, seed=12)
    bn.running_var[:] = 0.5 + randn(channels, seed=13) ** 2
    fused = nn.MixConvBNAct(conv.eval(), bn.eval())
    if stride == 2:  # an odd row: at stride 2 an even row's pixel reaches only one output row, through one tap
        where = [((n, c, h + 1, w), value) for (n, c, h, w), value in where]
    x = _poison(randn(2, channels, H, W, seed=20), where).astype(dtype)
    with mm.no_grad():
        y = fused(mm.Tensor(x)).data

    xt = torch.from_numpy(x)
    z = _torch_mixconv(splits, kernel_sizes, stride, 1)(xt, *[torch.from_numpy(c.weight.data) for c in conv.convs])
    z = torch.nn.functional.batch_norm(z, torch.from_numpy(bn.running_mean.astype(dtype)),
                                       torch.from_numpy(bn.running_var.astype(dtype)), torch.from_numpy(bn.weight.data),
                                       torch.from_numpy(bn.bias.data), training=False, eps=bn.eps)
    expected = {None: z, "relu": torch.relu(z), "silu": torch.nn.functional.silu(z)}[activation].numpy()
    assert y.dtype == dtype and y.shape == expected.shape
    finite = np.isfinite(expected)
    assert not finite.all()
    np.testing.assert_array_equal(y[~finite], expected[~finite])
    tol = TOLERANCES[dtype]
    np.testing.assert_allclose(y, expected, rtol=tol["rtol"], atol=tol["atol"] * max(1, np.abs(expected[finite]).max()))


def test_finite_input_stays_on_the_fast_kernels(monkeypatch):
    """The exact recomputation (im2col) runs only for results that hold inf or NaN."""
    require("numba")
    from minimix.kernels import depthwise_numba, im2col

    calls = []
    for name in ("conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight"):
        real = getattr(im2col, name)
        monkeypatch.setattr(im2col, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    x = randn(2, 4, 6, 7)
    w = randn(4, 3, 3, seed=1)
    for poisoned in (False, True):
        if poisoned:
            x[0, 1, 2, 0] = INF
        runs = [lambda: depthwise_numba.depthwise_forward(x, w, 1, 1),
                lambda: depthwise_numba.depthwise_backward_input(y, w, (6, 7), 1, 1),
                lambda: depthwise_numba.depthwise_backward_weight(x, y, (3, 3), 1, 1)]
        for run, name in zip(runs, ("conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight")):
            calls.clear()
            result = run()
            assert calls[:1] == ([name] if poisoned else [])
            if name == "conv2d_forward":
                y = result
