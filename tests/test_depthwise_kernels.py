"""The raw Numba depthwise kernels against torch.nn.functional.conv2d(groups=C) and its autograd.

These are array kernels (no minimix autograd), so torch is called directly; the
Conv2d op built on them is checked separately through tests/parity.py.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import require

torch = require("torch", "PyTorch is the reference for the depthwise kernels")
require("numba", "the kernels are written in Numba")

from minimix.kernels import depthwise_dense, depthwise_rows  # noqa: E402
from minimix.kernels.depthwise_numba import (  # noqa: E402
    depthwise_backward_input,
    depthwise_backward_weight,
    depthwise_forward,
)

DTYPES = pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
RTOL = {np.float64: 1e-10, np.float32: 2e-5}

# (N, C, H, W, (KH, KW), stride, padding, dilation)
CASES = [
    # MixConv's geometry: odd k, stride 1, "same" padding, on square and non-square planes
    (3, 4, 8, 8, (3, 3), 1, 1, 1),
    (1, 3, 7, 5, (3, 3), 1, 1, 1),
    (3, 2, 9, 12, (5, 5), 1, 2, 1),
    (6, 5, 11, 10, (7, 7), 1, 3, 1),
    (3, 2, 10, 13, (9, 9), 1, 4, 1),
    (2, 3, 8, 7, (9, 9), 1, 4, 1),  # 56 pixels, 81 taps: depthwise_dense
    (1, 2, 12, 9, (11, 11), 1, 5, 1),
    (3, 6, 6, 6, (1, 1), 1, 0, 1),
    # planes 16 wide or more: the row kernels (depthwise_rows) for 3x3 too; a plane lower than its kernel
    (2, 3, 16, 17, (3, 3), 1, 1, 1),
    (1, 2, 5, 32, (9, 9), 1, 4, 1),
    # the weight gradient's row kernels: planes 16 wide or more, k >= 5 at stride 1, every k at stride 2
    (2, 3, 9, 16, (5, 5), 1, 2, 1),
    (1, 2, 16, 20, (7, 7), 1, 3, 1),
    (2, 2, 7, 18, (11, 11), 1, 5, 1),
    (2, 3, 8, 16, (3, 3), 2, 1, 1),
    (1, 2, 16, 18, (5, 5), 2, 2, 1),
    (3, 2, 6, 16, (7, 7), 2, 3, 1),
    (1, 2, 10, 20, (9, 9), 2, 4, 1),
    (2, 2, 4, 16, (11, 11), 2, 5, 1),  # 64 pixels onto 2x8: depthwise_dense
    (1, 2, 8, 16, (11, 11), 2, 5, 1),
    # dilation (same padding d*(k-1)//2) and stride 2
    (3, 3, 9, 8, (3, 3), 1, 2, 2),
    (1, 2, 11, 12, (5, 5), 1, 4, 2),
    (3, 3, 8, 8, (3, 3), 2, 1, 1),
    (1, 4, 9, 7, (5, 5), 2, 2, 1),
    # stride 2 on even planes 8 wide or more: the row kernels (depthwise_rows) for every k; a plane lower than its kernel
    (1, 2, 10, 8, (5, 5), 2, 2, 1),
    (3, 2, 6, 12, (7, 7), 2, 3, 1),
    (1, 3, 8, 10, (9, 9), 2, 4, 1),
    (2, 2, 12, 14, (11, 11), 2, 5, 1),
    (1, 2, 2, 16, (7, 7), 2, 3, 1),
    (3, 2, 12, 11, (7, 7), 2, 3, 1),
    (1, 2, 13, 10, (9, 9), 2, 4, 1),
    (3, 2, 10, 9, (3, 3), 2, 2, 2),
    (1, 3, 6, 5, (1, 1), 2, 0, 1),
    # padding 0 (output smaller) and larger than "same" (output bigger)
    (3, 3, 8, 7, (3, 3), 1, 0, 1),
    (1, 2, 10, 11, (5, 5), 1, 0, 1),
    (3, 2, 9, 9, (5, 5), 2, 0, 1),
    (1, 2, 6, 7, (3, 3), 1, 3, 1),
    (3, 2, 5, 6, (5, 5), 2, 4, 1),
    (1, 2, 7, 7, (3, 3), 1, 1, 3),
    # batches that are not a multiple of the 4 images the weight gradient sums per sweep
    (19, 3, 8, 8, (5, 5), 1, 2, 1),
    (17, 2, 4, 4, (7, 7), 1, 3, 1),
    (33, 2, 6, 7, (3, 3), 1, 2, 2),
    # tiny planes
    (3, 4, 1, 1, (3, 3), 1, 1, 1),
    (1, 3, 2, 2, (5, 5), 1, 2, 1),
    (5, 5, 4, 4, (3, 3), 1, 1, 1),
    (1, 2, 4, 4, (9, 9), 1, 4, 1),
    (3, 2, 2, 2, (3, 3), 2, 1, 1),
    (1, 3, 4, 4, (7, 7), 2, 3, 1),
    (3, 2, 1, 3, (1, 3), 1, 0, 1),
    (2, 3, 2, 2, (2, 2), 1, 2, 4),  # every tap reads padding only: all zeros
    # even and rectangular kernels, per-axis stride/padding/dilation
    (3, 2, 8, 9, (2, 2), 1, 0, 1),
    (1, 3, 9, 8, (4, 4), 2, 1, 1),
    (3, 2, 10, 8, (3, 5), (1, 2), (1, 2), 1),
    (1, 2, 9, 11, (5, 3), (2, 1), (0, 3), (2, 1)),
]


def _ids(case):
    N, C, H, W, k, s, p, d = case
    return f"n{N}c{C}_{H}x{W}_k{k[0]}x{k[1]}_s{s}_p{p}_d{d}"


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _torch_reference(x, w, gy, stride, padding, dilation):
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w[:, None], requires_grad=True)
    y = torch.nn.functional.conv2d(xt, wt, stride=stride, padding=padding, dilation=dilation,
                                   groups=x.shape[1])
    y.backward(torch.tensor(gy))
    return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()[:, 0]


def _close(name, actual, expected, dtype):
    assert actual.dtype == dtype and actual.shape == expected.shape, (name, actual.dtype, actual.shape)
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=RTOL[dtype] * scale, err_msg=name)


@DTYPES
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_matches_torch(case, dtype):
    N, C, H, W, kernel, stride, padding, dilation = case
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    rng = np.random.default_rng(sum(map(ord, _ids(case))))
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((C, *kernel)).astype(dtype)
    OH = (H + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    OW = (W + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    gy = rng.standard_normal((N, C, OH, OW)).astype(dtype)
    y_ref, gx_ref, gw_ref = _torch_reference(x, w, gy, stride, padding, dilation)

    geometry = dict(stride=stride, padding=padding, dilation=dilation)
    _close("forward", depthwise_forward(x, w, **geometry), y_ref, dtype)
    _close("grad input", depthwise_backward_input(gy, w, (H, W), **geometry), gx_ref, dtype)
    _close("grad weight", depthwise_backward_weight(x, gy, kernel, **geometry), gw_ref, dtype)


def _output_hw(case):
    from minimix.kernels.geometry import output_size

    N, C, H, W, kernel, stride, padding, dilation = case
    return tuple(output_size(*axis) for axis in zip((H, W), kernel, _pair(stride), _pair(padding), _pair(dilation)))


DENSE_CASES = [c for c in CASES if depthwise_dense.applies(c[2], c[3], *_output_hw(c), *c[4])]
ROW_CASES = [c for c in CASES if depthwise_rows.applies(c[2], c[3], *c[4], _pair(c[5]), _pair(c[6]), _pair(c[7]))
             and c not in DENSE_CASES]


def test_row_kernels_are_tested():
    """The cases above reach depthwise_rows ("same" padding; stride 1 on planes wide enough, stride 2 on even
    planes 8 wide or more) with every k from 3 to 11 at both strides, and the other kernels with the rest, stride
    2 on even planes included (depthwise_numba's in-block phase split): all are compared with torch."""
    for stride in (1, 2):
        assert sorted({c[4][0] for c in ROW_CASES if c[5] == stride}) == [3, 5, 7, 9, 11], stride
    flat = [c for c in CASES if c not in ROW_CASES]
    assert any(c[5] == 2 and c[2] % 2 == c[3] % 2 == 0 and c[4][0] % 2 == 1 for c in flat)
    assert not depthwise_rows.applies(8, 8, 3, 3, (1, 1), (1, 1), (1, 1))  # 3x3 on 8x8 planes: the flat sweeps
    assert not depthwise_rows.applies(4, 4, 5, 5, (1, 1), (2, 2), (1, 1))  # 4x4 planes
    assert not depthwise_rows.applies(4, 4, 3, 3, (2, 2), (1, 1), (1, 1))  # stride 2 on 4x4 planes
    assert not depthwise_rows.applies(9, 8, 3, 3, (2, 2), (1, 1), (1, 1))  # stride 2, odd height


def test_weight_gradient_row_kernels_are_tested():
    """The weight gradient takes depthwise_rows on a subset of those planes: the cases above reach it with every k
    from 5 to 11 at stride 1 and from 3 to 11 at stride 2, and leave it where it is slower."""
    weight_cases = [c for c in CASES if depthwise_rows.applies_to_weight_gradient(
        c[2], c[3], *c[4], _pair(c[5]), _pair(c[6]), _pair(c[7])) and c not in DENSE_CASES]
    assert sorted({c[4][0] for c in weight_cases if c[5] == 1}) == [5, 7, 9, 11]
    assert sorted({c[4][0] for c in weight_cases if c[5] == 2}) == [3, 5, 7, 9, 11]
    assert not depthwise_rows.applies_to_weight_gradient(32, 32, 3, 3, (1, 1), (1, 1), (1, 1))  # 3x3, stride 1
    assert not depthwise_rows.applies_to_weight_gradient(8, 8, 7, 7, (1, 1), (3, 3), (1, 1))  # 8x8 planes
    assert not depthwise_rows.applies_to_weight_gradient(8, 8, 5, 5, (2, 2), (2, 2), (1, 1))


def test_dense_kernels_are_tested():
    """Kernels from 5x5 on, on planes of at most 64 pixels with at most as many pixels as taps or onto at most 16,
    take depthwise_dense: the cases above reach it with kernels from 5 to 11, stride 2, 56 output pixels and a batch
    of 17, and leave it elsewhere."""
    assert {c[4][0] for c in DENSE_CASES} == {5, 7, 9, 11}
    assert any(c[5] == 2 for c in DENSE_CASES) and any(c[0] > 16 for c in DENSE_CASES)
    assert any(np.prod(_output_hw(c)) > 16 for c in DENSE_CASES)
    assert depthwise_dense.applies(4, 4, 4, 4, 5, 5) and depthwise_dense.applies(8, 8, 4, 4, 5, 5)
    assert depthwise_dense.applies(8, 8, 8, 8, 9, 9) and not depthwise_dense.applies(8, 8, 8, 8, 7, 7)
    assert not depthwise_dense.applies(4, 4, 4, 4, 3, 3) and not depthwise_dense.applies(8, 8, 4, 4, 3, 5)
    assert not depthwise_dense.applies(5, 4, 5, 4, 3, 3) and not depthwise_dense.applies(10, 8, 5, 4, 5, 5)


def test_dense_matrix_of_a_row_kernel():
    """A (P, Q) with A[q, p] = w[tap[q, p]] and y = x @ A: for a 1x3 kernel with padding 1 on a row of 3 pixels,
    y[p] = w0 * x[p-1] + w1 * x[p] + w2 * x[p+1], so column p of A holds w0, w1, w2 in rows p-1, p, p+1 (tap 3:
    no tap, a zero); the weight gradient adds up the entries of G = x^T gy that each tap links."""
    w = np.array([[[2.0, 3.0, 5.0]]])  # w0, w1, w2
    L = depthwise_dense.links(1, 3, 1, 3, (1, 1), (0, 1), (1, 1))
    np.testing.assert_array_equal(L.tap, [[1, 0, 3],
                                          [2, 1, 0],
                                          [3, 2, 1]])
    assert not L.tap.flags.writeable and list(L.present) == [0, 1, 2] and list(L.order) == [1, 5, 0, 4, 8, 3, 7]
    A = depthwise_dense._matrices(w, L.tap)[0]
    np.testing.assert_array_equal(A, [[3.0, 2.0, 0.0],
                                      [5.0, 3.0, 2.0],
                                      [0.0, 5.0, 3.0]])
    x = np.array([[[[1.0, 10.0, 100.0]]]])
    y = np.full((1, 1, 1, 3), np.nan)
    assert depthwise_dense.forward(x, y, 0, w, ((1, 1), (0, 1), (1, 1)))
    np.testing.assert_array_equal(y, [[[[3 + 50, 2 + 30 + 500, 20 + 300]]]])
    gy = np.array([[[[1.0, 2.0, 4.0]]]])  # dL/dw0 = x[0] gy[1] + x[1] gy[2], dL/dw1 = x . gy, dL/dw2 = x[1] gy[0] + x[2] gy[1]
    gw = depthwise_dense.backward_weight(x, gy, 0, 1, (1, 3), ((1, 1), (0, 1), (1, 1)))
    np.testing.assert_array_equal(gw, [[[2 + 40, 1 + 20 + 400, 10 + 200]]])


def test_dense_kernels_where_every_tap_reads_padding():
    """A 1x1 plane, a 5x5 kernel with dilation 2, padding 5, stride 3: the one output pixel's taps read rows and
    columns -5, -3, -1, 1, 3, all padding. No pair of pixels is linked (``links`` has nothing to sum for the weight
    gradient), and by the definition the output, dL/dx and dL/dw are all zero."""
    geometry = ((3, 3), (5, 5), (2, 2))
    L = depthwise_dense.links(1, 1, 5, 5, *geometry)
    assert L.tap.shape == (1, 1) and L.tap[0, 0] == 25 and L.order.size == 0 and L.present.size == 0
    assert depthwise_dense.applies(1, 1, 1, 1, 5, 5)
    rng = np.random.default_rng(0)
    x, w, gy = (rng.standard_normal(shape) for shape in ((2, 3, 1, 1), (3, 5, 5), (2, 3, 1, 1)))
    y, gx = np.full((2, 3, 1, 1), np.nan), np.full((2, 3, 1, 1), np.nan)
    assert depthwise_dense.forward(x, y, 0, w, geometry) and depthwise_dense.backward_input(gy, gx, 0, w, geometry)
    np.testing.assert_array_equal(y, 0.0)
    np.testing.assert_array_equal(gx, 0.0)
    np.testing.assert_array_equal(depthwise_dense.backward_weight(x, gy, 0, 3, (5, 5), geometry), 0.0)
    np.testing.assert_array_equal(depthwise_forward(x, w, *geometry), 0.0)  # the public function takes this path


def test_row_kernels_module_is_generated_once_and_reused():
    """The generated source is written once (its file name carries a hash of the source) and imported from
    that file, so Numba's cache can find it again in the next process; stride 1 has one module for all heights."""
    module = depthwise_rows._kernels(3, 1, 16, 16)
    assert module is depthwise_rows._kernels(3, 1, 20, 16)
    assert module.__file__.endswith(".py") and "w0 * xp[b + 0]" in open(module.__file__).read()
    assert "def forward" in depthwise_rows._source(5, 1, None, 8) and "w24 *" in depthwise_rows._source(5, 1, None, 8)
    stride2 = depthwise_rows._source(3, 2, 8, 10)
    assert "def backward_input" in stride2 and "w8 * xq[" in stride2 and "8x10 planes" in stride2


def _same_with_nonfinite(name, actual, expected):
    """Equal values, inf and NaN at the same places (float64: torch's float64 CPU kernels read padding as
    zeros, the definition; the kernels must agree with it, module docstring of depthwise_numba)."""
    assert actual.shape == expected.shape, name
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(actual[~finite], expected[~finite], err_msg=f"{name}: inf/NaN")
    scale = max([1.0, *np.abs(expected[finite])])
    np.testing.assert_allclose(actual[finite], expected[finite], rtol=1e-10, atol=1e-10 * scale, err_msg=name)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_inf_and_nan_match_torch(case):
    """inf at the edges and corners of planes (where masked taps read the opposite edge and the next
    channel), NaN inside, in x and in gy: every kernel equals torch, which reads padding as zeros."""
    N, C, H, W, kernel, stride, padding, dilation = case
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    rng = np.random.default_rng(sum(map(ord, _ids(case))))
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((C, *kernel))
    x[0, 0, 0, W - 1] = np.inf
    x[N - 1, C - 1, H - 1, 0] = -np.inf
    x[0, C - 1, H // 2, W // 2] = np.nan
    geometry = dict(stride=stride, padding=padding, dilation=dilation)
    y = depthwise_forward(x, w, **geometry)
    gy = rng.standard_normal(y.shape)
    gy[0, 0, 0, 0] = np.inf
    gy[N - 1, C - 1, -1, -1] = -np.inf
    y_ref, _, gw_ref = _torch_reference(x, w, np.ones_like(gy), stride, padding, dilation)
    _same_with_nonfinite("forward", y, y_ref)
    _same_with_nonfinite("grad weight", depthwise_backward_weight(x, np.ones_like(gy), kernel, **geometry), gw_ref)
    _, gx_ref, _ = _torch_reference(np.nan_to_num(x, posinf=0, neginf=0), w, gy, stride, padding, dilation)
    _same_with_nonfinite("grad input", depthwise_backward_input(gy, w, (H, W), **geometry), gx_ref)


@pytest.mark.parametrize("hw", [8, 4])  # 4x4: depthwise_dense
def test_batch_of_many_channels_float32(hw):
    """A training-sized layout (many channel blocks, several threads) at float32 rounding."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 48, hw, hw)).astype(np.float32)
    w = rng.standard_normal((48, 5, 5)).astype(np.float32)
    gy = rng.standard_normal((16, 48, hw, hw)).astype(np.float32)
    y_ref, gx_ref, gw_ref = _torch_reference(x, w, gy, (1, 1), (2, 2), (1, 1))
    geometry = dict(stride=(1, 1), padding=(2, 2), dilation=(1, 1))
    _close("forward", depthwise_forward(x, w, **geometry), y_ref, np.float32)
    _close("grad input", depthwise_backward_input(gy, w, (hw, hw), **geometry), gx_ref, np.float32)
    _close("grad weight", depthwise_backward_weight(x, gy, (5, 5), **geometry), gw_ref, np.float32)


@pytest.mark.parametrize("H, W, k", [(6, 7, 3), (4, 4, 5)], ids=["6x7", "4x4-dense"])
def test_same_result_for_any_thread_count(H, W, k):
    """The channel blocks (the dense kernels' chunks of channels) depend on the thread count; the numbers must not."""
    import numba

    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 40, H, W))
    w = rng.standard_normal((40, k, k))
    gy = rng.standard_normal((5, 40, H, W))
    geometry = dict(stride=(1, 1), padding=(k // 2, k // 2), dilation=(1, 1))
    results = []
    before = numba.get_num_threads()
    for threads in (1, 2):
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        try:
            results.append((depthwise_forward(x, w, **geometry), depthwise_backward_input(gy, w, (H, W), **geometry),
                            depthwise_backward_weight(x, gy, (k, k), **geometry)))
        finally:
            numba.set_num_threads(before)
    for name, one, two in zip(("forward", "grad input", "grad weight"), *results):
        np.testing.assert_array_equal(one, two, err_msg=name)
    y_ref, gx_ref, gw_ref = _torch_reference(x, w, gy, (1, 1), (k // 2, k // 2), (1, 1))
    for name, actual, expected in zip(("forward", "grad input", "grad weight"), results[0], (y_ref, gx_ref, gw_ref)):
        _close(name, actual, expected, np.float64)


def test_non_contiguous_input_and_int_geometry():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 6, 7, 3)).transpose(0, 1, 3, 2)  # (2, 6, 3, 7), not C-contiguous
    w = rng.standard_normal((6, 3, 3))
    y_ref = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w[:, None]), padding=1, groups=6)
    _close("forward", depthwise_forward(x, w, stride=1, padding=1, dilation=1), y_ref.numpy(), np.float64)


@DTYPES
# stride 2 on 8x6: the in-block phase split; on 6x8: depthwise_rows (as stride 1 with k >= 5 there)
@pytest.mark.parametrize("H, W", [(9, 6), (8, 6), (6, 8)], ids=["9x6", "8x6", "6x8"])
@pytest.mark.parametrize("stride, dilation", [(1, 1), (2, 1), (1, 2)], ids=["s1", "s2", "d2"])
def test_channel_groups_work_in_place_on_whole_arrays(stride, dilation, H, W, dtype):
    """MixConv's groups: channels=slice(a, b) reads and writes channels [a, b) of whole-layer arrays,
    leaving every other channel of out untouched; equal to the kernels on the group's own slices."""
    rng = np.random.default_rng(7)
    N, C = 3, 7
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    groups = [(slice(0, 3), 3), (slice(3, 5), 5), (slice(5, 7), 7)]  # 7 channels: 3 + 2 + 2
    y = np.full((N, C, -(-H // stride), -(-W // stride)), np.nan, dtype=dtype)
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx = np.full_like(x, np.nan)
    for channels, k in groups:
        w = rng.standard_normal((channels.stop - channels.start, k, k)).astype(dtype)
        geometry = dict(stride=stride, padding=dilation * (k - 1) // 2, dilation=dilation)
        assert depthwise_forward(x, w, **geometry, channels=channels, out=y) is y
        depthwise_backward_input(gy, w, (H, W), **geometry, channels=channels, out=gx)
        gw = depthwise_backward_weight(x, gy, (k, k), **geometry, channels=channels)
        y_ref, gx_ref, gw_ref = _torch_reference(x[:, channels], w, gy[:, channels], _pair(stride),
                                                 _pair(geometry["padding"]), _pair(dilation))
        _close(f"forward {channels}", y[:, channels], y_ref, dtype)
        _close(f"grad input {channels}", gx[:, channels], gx_ref, dtype)
        _close(f"grad weight {channels}", gw, gw_ref, dtype)
    assert np.isfinite(y).all() and np.isfinite(gx).all()  # every group wrote exactly its channels


@pytest.mark.parametrize("call, message", [
    (lambda: depthwise_forward(np.zeros((1, 4, 4, 4)), np.zeros((2, 3, 3)), channels=slice(1, 4)), "w has 2"),
    (lambda: depthwise_forward(np.zeros((1, 4, 4, 4)), np.zeros((2, 3, 3)), channels=slice(3, 5)), "within"),
    (lambda: depthwise_forward(np.zeros((1, 4, 4, 4)), np.zeros((2, 3, 3)), channels=(0, 2)), "slice"),
    (lambda: depthwise_forward(np.zeros((1, 4, 4, 4)), np.zeros((2, 3, 3)), padding=1, channels=slice(0, 2),
                               out=np.zeros((1, 2, 4, 4))), "out must be"),
    (lambda: depthwise_forward(np.zeros((1, 2, 4, 4)), np.zeros((2, 3, 3)), padding=1,
                               out=np.zeros((1, 2, 4, 4), np.float32)), "out must be"),
    (lambda: depthwise_forward(np.zeros((1, 2, 4, 4)), np.zeros((3, 3, 3))), "channels"),
    (lambda: depthwise_forward(np.zeros((1, 2, 4, 4)), np.zeros((2, 3, 3), np.float32)), "dtype"),
    (lambda: depthwise_forward(np.zeros((2, 4, 4)), np.zeros((2, 3, 3))), "4-d"),
    (lambda: depthwise_forward(np.zeros((1, 2, 4, 4), np.int64), np.zeros((2, 3, 3))), "float32"),
    (lambda: depthwise_forward(np.zeros((1, 2, 2, 2)), np.zeros((2, 5, 5))), "too small"),
    (lambda: depthwise_forward(np.zeros((1, 2, 4, 4)), np.zeros((2, 3, 3)), stride=0), "stride"),
    (lambda: depthwise_forward(np.zeros((1, 2, 4, 4)), np.zeros((2, 3, 3)), padding=(1, 2, 3)), "padding"),
    (lambda: depthwise_backward_input(np.zeros((1, 2, 3, 3)), np.zeros((2, 3, 3)), (4, 4), padding=1), "gy"),
    (lambda: depthwise_backward_weight(np.zeros((1, 2, 4, 4)), np.zeros((1, 2, 4, 4)), (3, 3)), "gy"),
])
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_geometry_helpers_shared_by_every_convolution():
    """minimix.kernels.geometry: the one output-size formula and the one (h, w) argument parser."""
    from minimix.kernels import geometry, im2col, naive

    assert naive.output_size is geometry.output_size and im2col.output_size is geometry.output_size
    assert geometry.output_size(32, 3, 1, 1, 1) == 32 and geometry.output_size(32, 3, 2, 1, 1) == 16
    assert geometry.output_size(9, 5, 2, 3, 2) == 4  # (9 + 6 - 8 - 1) // 2 + 1
    assert geometry.as_pair(3, "stride") == (3, 3) and geometry.as_pair([np.int64(1), 2], "stride") == (1, 2)
    assert all(type(v) is int for v in geometry.as_pair(np.int32(2), "padding"))
    for bad in (True, 1.0, "1", (1, 2, 3), (1, True), None):
        with pytest.raises(ValueError, match=r"^conv2d: stride must be an int or a pair of ints, got "):
            geometry.as_pair(bad, "stride")
    with pytest.raises(ValueError, match=r"^depthwise: padding must be an int or a pair of ints"):
        depthwise_forward(np.zeros((1, 2, 4, 4)), np.zeros((2, 3, 3)), padding=1.5)


@DTYPES
@pytest.mark.parametrize("N, Cx, H, W, c0, C", [(3, 5, 8, 6, 1, 3), (2, 4, 2, 2, 0, 4), (1, 3, 4, 10, 2, 1)])
def test_stride2_polyphase_equals_the_general_one(N, Cx, H, W, c0, C, dtype):
    """The fast polyphase split and merge for stride (2, 2) on even planes (``_phases_stride2``) against
    the general ``_phases`` they stand in for: the same canvas, bit for bit, and the same merged array."""
    from minimix.kernels.depthwise_numba import _phases, _phases_stride2

    rng = np.random.default_rng(3)
    x = rng.standard_normal((N, Cx, H, W)).astype(dtype)
    Hc, Wc = H // 2, W // 2
    fast, general = (np.full((4, N, C * Hc * Wc), np.nan, dtype) for _ in range(2))
    _phases_stride2(x, c0, fast, Hc, Wc, True)
    _phases(x, c0, general, 2, 2, Hc, Wc, True)
    np.testing.assert_array_equal(fast, general)
    assert np.isfinite(fast).all()  # every canvas element written
    np.testing.assert_array_equal(fast[1, 0, :Wc], x[0, c0, 0, 1::2])  # phase (0, 1): even rows, odd columns
    merged_fast, merged_general = np.full_like(x, np.nan), np.full_like(x, np.nan)
    _phases_stride2(merged_fast, c0, fast, Hc, Wc, False)
    _phases(merged_general, c0, general, 2, 2, Hc, Wc, False)
    np.testing.assert_array_equal(merged_fast, merged_general)
    np.testing.assert_array_equal(merged_fast[:, c0:c0 + C], x[:, c0:c0 + C])  # only the group's channels
    assert np.isnan(np.delete(merged_fast, np.s_[c0:c0 + C], axis=1)).all()


@DTYPES
@pytest.mark.parametrize("N, Cx, H, W, c0, C, k", [(7, 5, 8, 6, 1, 3, 3), (4, 300, 8, 8, 0, 300, 5),
                                                   (2, 4, 4, 4, 2, 2, 9), (9, 40, 16, 12, 8, 32, 3),
                                                   (3, 6, 4, 8, 0, 6, 1)])
def test_stride2_per_block_equals_the_whole_layer_canvas(N, Cx, H, W, c0, C, k, dtype, monkeypatch):
    """For stride (2, 2) on even planes the kernels split (forward, weight gradient) and merge (input
    gradient) each block's phase planes themselves. Given the whole-layer phase canvas instead
    (``_phases_stride2``, as for other strides: ``_shifted_sum`` per phase plane of gx, then the merge)
    they must give the same results bit for bit: same taps, same order of the sums. The cases cover a
    channel group inside a larger layer, many blocks, taps that read only padding, a 1x1 kernel (three
    phase planes of gx get no tap) and batches that are not a multiple of the four images per sweep. The
    public functions are held to the flat sweeps here (``depthwise_rows``, which they use for most of these
    planes, sums in another order and is compared with torch above, as is ``depthwise_dense``, which they use for
    kernels from 5x5 on onto 4x4 planes)."""
    monkeypatch.setattr(depthwise_rows, "applies", lambda *geometry: False)
    monkeypatch.setattr(depthwise_dense, "applies", lambda *geometry: False)
    from minimix.kernels.depthwise_numba import _NO_PIXELS, _epilogue, _phases_stride2, _plan, _shifted_sum, \
        _tap_products

    rng = np.random.default_rng(4)
    x = rng.standard_normal((N, Cx, H, W)).astype(dtype)
    w = rng.standard_normal((C, k, k)).astype(dtype)
    part, no_pixels, no_epilogue = slice(c0, c0 + C), _NO_PIXELS[np.dtype(dtype)], _epilogue(None, C, np.dtype(dtype))
    y = depthwise_forward(x, w, 2, k // 2, channels=part)
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx = depthwise_backward_input(gy, w, (H, W), 2, k // 2, channels=part, out=np.full_like(x, 7))
    gw = depthwise_backward_weight(x, gy, k, 2, k // 2, channels=part)

    plan = _plan(H, W, k, k, 2, k // 2, 1)
    assert plan.stride2_exact and plan.input_canvas(x, c0, C)[2].shape == (N, Cx * H * W)
    canvas = np.empty((4, N, C * plan.Hc * plan.Wc), dtype)
    _phases_stride2(x, c0, canvas, plan.Hc, plan.Wc, True)
    taps = (plan.tap_phase, plan.tap_u, plan.tap_v, plan.tap_k, plan.Hc, plan.Wc, plan.block(C))
    offset, w2 = c0 * plan.OH * plan.OW, w.reshape(C, -1)
    y_canvas = np.zeros_like(y)
    _shifted_sum(canvas, 0, y_canvas.reshape(N, -1), offset, w2, *taps, *no_epilogue, no_pixels)
    np.testing.assert_array_equal(y[:, part], y_canvas[:, part])
    gw_canvas = np.zeros((C, k * k), dtype)
    _tap_products(canvas, 0, gy.reshape(N, -1), offset, gw_canvas, *taps, no_pixels)
    np.testing.assert_array_equal(gw, gw_canvas.reshape(C, k, k))
    for phase in range(4):  # the input gradient on a canvas, as the kernels compute it for other strides
        sel = plan.tap_phase == phase
        _shifted_sum(gy.reshape(1, N, -1), offset, canvas[phase], 0, w2, np.zeros(sel.sum(), np.int64),
                     -plan.tap_u[sel], -plan.tap_v[sel], plan.tap_k[sel], plan.Hc, plan.Wc, plan.block(C),
                     *no_epilogue, no_pixels)
    gx_canvas = np.full_like(x, 7)
    _phases_stride2(gx_canvas, c0, canvas, plan.Hc, plan.Wc, False)
    np.testing.assert_array_equal(gx, gx_canvas)  # the group's channels, and no other channel touched
    # and all three are the convolution's (the torch comparisons above cover the rest)
    xt = torch.from_numpy(x[:, part]).requires_grad_()
    yt = torch.nn.functional.conv2d(xt, torch.from_numpy(w[:, None]), stride=2, padding=k // 2, groups=C)
    yt.backward(torch.from_numpy(gy[:, part]))
    np.testing.assert_allclose(y[:, part], yt.detach().numpy(), rtol=RTOL[dtype], atol=RTOL[dtype] * 10)
    np.testing.assert_allclose(gx[:, part], xt.grad.numpy(), rtol=RTOL[dtype], atol=RTOL[dtype] * 10)


def test_level2_cache_size_is_read_from_the_operating_system_or_defaults(tmp_path):
    """The block size depends on one core's level-2 cache: read from Linux's cache listing (level 2,
    any of "1024K", "2M", plain bytes), the default where the listing is missing or unreadable."""
    from minimix.kernels.depthwise_numba import _DEFAULT_L2_BYTES, _l2_cache_bytes

    for index, level, size in [("index0", "1", "32K"), ("index2", "2", "2M"), ("index3", "3", "32768K")]:
        (tmp_path / index).mkdir()
        (tmp_path / index / "level").write_text(level + "\n")
        (tmp_path / index / "size").write_text(size + "\n")
    assert _l2_cache_bytes.__wrapped__(str(tmp_path)) == 2 << 20
    (tmp_path / "index2" / "size").write_text("1048576\n")
    assert _l2_cache_bytes.__wrapped__(str(tmp_path)) == 1 << 20
    (tmp_path / "index2" / "size").write_text("lots\n")
    assert _l2_cache_bytes.__wrapped__(str(tmp_path)) == _DEFAULT_L2_BYTES
    assert _l2_cache_bytes.__wrapped__(str(tmp_path / "missing")) == _DEFAULT_L2_BYTES


# One process compiles the row kernels into an empty cache, a second one loads them from it; both save what the
# kernels compute on the same arrays. (The stride-2 gradients rounded differently when loaded from the cache, the
# weight gradient on 16x16 planes with k = 3, so a training run's first start and its later starts took different
# steps: depthwise_rows' docstring.)
_ROWS_IN_A_PROCESS = """
import sys
import numpy as np
from minimix.kernels import depthwise_rows

rng = np.random.default_rng(0)
results, loaded = {}, 0
for k, H in ((3, 32), (3, 16), (5, 16), (11, 8)):
    w = rng.standard_normal((6, k, k), dtype=np.float32)
    x = rng.standard_normal((3, 6, H, H), dtype=np.float32)
    for stride in (1, 2):
        y = np.zeros((3, 6, H // stride, H // stride), dtype=np.float32)
        depthwise_rows.forward(x, y, 0, w, stride)
        gy = rng.standard_normal(y.shape, dtype=np.float32)
        gx = np.zeros_like(x)
        depthwise_rows.backward_input(gy, gx, 0, w, stride)
        gw = depthwise_rows.backward_weight(x, gy, 0, 6, k, stride)
        for name, result in (("forward", y), ("input gradient", gx), ("weight gradient", gw)):
            results[f"{name} k{k} s{stride} {H}x{H}"] = result
        module = depthwise_rows._kernels(k, stride, H, H)
        kernels = (module.forward, module.backward_weight) + ((module.backward_input,) if stride == 2 else ())
        loaded += sum(sum(kernel.stats.cache_hits.values()) for kernel in kernels)
np.savez(sys.argv[1], **results)
print(loaded)
"""


def test_row_kernels_compute_the_same_compiled_and_loaded_from_the_cache(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    loaded = {}
    for run in ("compiled", "loaded"):
        done = subprocess.run([sys.executable, "-c", _ROWS_IN_A_PROCESS, str(tmp_path / f"{run}.npz")], env=env,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr
        loaded[run] = int(done.stdout.split()[-1])
    compiled, cached = np.load(tmp_path / "compiled.npz"), np.load(tmp_path / "loaded.npz")
    for name in compiled.files:
        np.testing.assert_array_equal(cached[name], compiled[name], err_msg=name)
    # the first process loaded the 8 stride-2 gradients (a child process compiled them into the cache first), the
    # second also the 8 forwards and the 4 stride-1 weight gradients
    assert loaded == {"compiled": 8, "loaded": 20}


_READ_ONLY_INPUT = """
import warnings
import numpy as np
from minimix.kernels import depthwise_rows

gy, gx, w = np.ones((2, 3, 4, 4), np.float32), np.zeros((2, 3, 8, 8), np.float32), np.ones((3, 3, 3), np.float32)
gy.setflags(write=False)  # a signature the child process (arrays of zeros) does not compile
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    depthwise_rows.backward_input(gy, gx, 0, w, 2)
print([str(c.message) for c in caught])
print(gx[0, 0, :3, :3].tolist())
"""


def test_a_kernel_compiled_here_instead_of_loaded_says_so(tmp_path):
    done = subprocess.run([sys.executable, "-c", _READ_ONLY_INPUT], env=dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path)),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    messages, corner = done.stdout.strip().splitlines()
    assert "backward_input" in messages and "compiled in this process instead of loaded" in messages
    assert "differ from the parent's" in messages  # the child's reason: it compiled for writable arrays
    # still the right gradient: with all ones, gx counts the (output, tap) pairs that reach each pixel; at stride 2
    # with padding 1, rows (and columns) 0, 1, 2 of the input are reached by 1, 2, 1 kernel rows
    assert corner == "[[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]"
