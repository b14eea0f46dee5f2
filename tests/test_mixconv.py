"""split_channels, MixConv2d and GroupedConv2d against the equivalent torch construction (split, conv, concat)."""
import numpy as np
import pytest
from conftest import require
from parity import DTYPES, check_parity, randn, torch

import minimix as mm
import minimix.nn as nn
import minimix.nn.functional as F

pytestmark = pytest.mark.usefixtures("each_path")  # every test on the fast and the reference path


@pytest.mark.parametrize("channels, groups, split, expected", [
    (40, 3, "equal", [14, 13, 13]),
    (32, 4, "equal", [8, 8, 8, 8]),
    (7, 1, "equal", [7]),
    (32, 4, "exponential", [16, 8, 4, 4]),
    (40, 3, "exponential", [20, 10, 10]),
    (10, 3, "exponential", [5, 2, 3]),
])
def test_split_channels(channels, groups, split, expected):
    assert nn.split_channels(channels, groups, split) == expected


def test_split_channels_bad_input():
    with pytest.raises(ValueError, match="too few"):
        nn.split_channels(2, 3)
    with pytest.raises(ValueError, match="too few"):
        nn.split_channels(6, 4, "exponential")
    with pytest.raises(ValueError, match="'equal' or 'exponential'"):
        nn.split_channels(8, 2, "random")


def _torch_mixconv(splits, kernel_sizes, stride, dilation):
    def run(x, *weights):
        parts = torch.split(x, splits, dim=1)
        outs = [torch.nn.functional.conv2d(p, w, stride=stride, padding=dilation * (k - 1) // 2,
                                           dilation=dilation, groups=c)
                for p, w, k, c in zip(parts, weights, kernel_sizes, splits)]
        return torch.cat(outs, dim=1)
    return run


def _with_weights(module, convs):
    """A function of (x, *weights) that runs ``module`` with its convs' weights replaced by the inputs."""
    def run(x, *params):
        for conv, w in zip(convs, params):
            conv.weight = w
        for conv, b in zip(convs, params[len(convs):]):
            conv.bias = b
        return module(x)
    return run


MIXCONV_CASES = [
    (40, (3, 5, 7), 1, 1, "equal", (2, 10, 9)),
    (13, (3, 5), 2, 1, "equal", (1, 9, 8)),
    (7, (3, 5, 7, 9), 1, 1, "equal", (2, 10, 11)),
    (10, (3, 5, 7), 1, 2, "equal", (2, 11, 10)),
    (32, (3, 5, 7, 9), 2, 1, "exponential", (2, 9, 9)),
]


@DTYPES
@pytest.mark.parametrize("channels, kernel_sizes, stride, dilation, split, x_shape", MIXCONV_CASES)
def test_mixconv_matches_torch_split_conv_concat(channels, kernel_sizes, stride, dilation, split, x_shape, dtype):
    module = nn.MixConv2d(channels, kernel_sizes, stride=stride, dilation=dilation, split=split)
    inputs = [randn(x_shape[0], channels, *x_shape[1:])]
    inputs += [randn(c, 1, k, k, seed=i + 1) for i, (c, k) in enumerate(zip(module.splits, kernel_sizes))]
    check_parity(_with_weights(module, module.convs), _torch_mixconv(module.splits, kernel_sizes, stride, dilation),
                 inputs, dtype)


@pytest.mark.parametrize("backend", ["naive", "im2col", "numba"])
def test_mixconv_every_backend_matches_torch(backend):
    if backend == "numba":
        require("numba")
    module = nn.MixConv2d(9, (3, 5, 7), stride=2)
    inputs = [randn(2, 9, 8, 7)] + [randn(c, 1, k, k, seed=k) for c, k in zip(module.splits, (3, 5, 7))]
    with F.conv_backend(backend):
        check_parity(_with_weights(module, module.convs), _torch_mixconv(module.splits, (3, 5, 7), 2, 1),
                     inputs, np.float64)


def test_mixconv_structure():
    module = nn.MixConv2d(40, (3, 5, 7))
    assert module.splits == [14, 13, 13] and module.kernel_sizes == (3, 5, 7)
    assert [c.weight.shape for c in module.convs] == [(14, 1, 3, 3), (13, 1, 5, 5), (13, 1, 7, 7)]
    assert [c.padding for c in module.convs] == [(1, 1), (2, 2), (3, 3)]
    assert all(c.bias is None and c.groups == c.in_channels for c in module.convs)
    assert list(module.state_dict()) == ["convs.0.weight", "convs.1.weight", "convs.2.weight"]
    assert module.convs[0].weight.dtype == np.float32


def test_mixconv_with_one_kernel_is_a_plain_depthwise_conv():
    """kernel_sizes=(3,) must give exactly (bit for bit) the depthwise convolution, forward and backward."""
    module = nn.MixConv2d(6, (3,))
    x1 = mm.Tensor(randn(2, 6, 7, 8), requires_grad=True)
    x2 = mm.Tensor(x1.data.copy(), requires_grad=True)
    w = mm.Tensor(randn(6, 1, 3, 3, seed=1), requires_grad=True)
    w2 = mm.Tensor(w.data.copy(), requires_grad=True)
    module.convs[0].weight = w
    y1 = module(x1)
    y2 = F.conv2d(x2, w2, padding=1, groups=6)
    g = randn(*y2.shape, seed=2)
    y1.backward(g)
    y2.backward(g)
    np.testing.assert_array_equal(y1.data, y2.data)
    np.testing.assert_array_equal(x1.grad, x2.grad)
    np.testing.assert_array_equal(w.grad, w2.grad)


def test_mixconv_bad_kernel_sizes():
    with pytest.raises(ValueError, match="odd"):
        nn.MixConv2d(8, (3, 4))
    with pytest.raises(ValueError, match=r"MixConv2d: x must be \(N, 8, H, W\).*got shape \(1, 6, 5, 5\)"):
        nn.MixConv2d(8, (3, 5))(mm.Tensor(np.zeros((1, 6, 5, 5), np.float32)))


def _torch_grouped(in_splits, stride, padding, has_bias):
    def run(x, *params):
        count = len(in_splits)
        weights, biases = params[:count], (params[count:] if has_bias else [None] * count)
        parts = torch.split(x, in_splits, dim=1)
        return torch.cat([torch.nn.functional.conv2d(p, w, b, stride=stride, padding=padding)
                          for p, w, b in zip(parts, weights, biases)], dim=1)
    return run


@DTYPES
@pytest.mark.parametrize("in_ch, out_ch, groups, kernel_size, stride, bias", [
    (10, 14, 3, 1, 1, False),
    (12, 20, 2, 1, 2, True),
    (7, 9, 1, 1, 1, False),
    (9, 6, 2, 3, 1, True),
])
def test_grouped_conv_matches_torch(in_ch, out_ch, groups, kernel_size, stride, bias, dtype):
    module = nn.GroupedConv2d(in_ch, out_ch, groups, kernel_size=kernel_size, stride=stride, bias=bias)
    assert [c.weight.shape for c in module.convs] == [
        (o, i, kernel_size, kernel_size) for i, o in zip(module.in_splits, module.out_splits)]
    inputs = [randn(2, in_ch, 7, 6)]
    inputs += [randn(*c.weight.shape, seed=i + 1) for i, c in enumerate(module.convs)]
    if bias:
        inputs += [randn(c.out_channels, seed=10 + i) for i, c in enumerate(module.convs)]
    check_parity(_with_weights(module, module.convs),
                 _torch_grouped(module.in_splits, stride, kernel_size // 2, bias), inputs, dtype)


def test_grouped_conv_splits():
    module = nn.GroupedConv2d(10, 14, 3)
    assert module.in_splits == [4, 3, 3] and module.out_splits == [6, 4, 4]
    assert len(module.convs) == 3 and module.convs[0].bias is None
    assert len(nn.GroupedConv2d(10, 14, 1).convs) == 1
