"""Conv2d (module), AdaptiveAvgPool2d and SqueezeExcite: construction, initialisation and torch parity."""
import math

import numpy as np
import pytest
from parity import DTYPES, check_parity, randn, torch

import minimix as mm
import minimix.nn as nn
import minimix.nn.functional as F

pytestmark = pytest.mark.usefixtures("each_path")  # every test on the fast and the reference path


def test_conv2d_attributes_like_torch():
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
    reference = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
    for name in ("kernel_size", "stride", "padding", "dilation", "groups", "in_channels", "out_channels"):
        assert getattr(conv, name) == getattr(reference, name), name
    assert conv.weight.shape == tuple(reference.weight.shape) and conv.bias.shape == (6,)
    assert nn.Conv2d(3, 3, 5, padding="same").padding == "same"
    assert nn.Conv2d(3, 3, 3, bias=False).bias is None
    assert list(nn.Conv2d(3, 3, 3).state_dict()) == ["weight", "bias"]


def test_conv2d_init_is_kaiming_uniform_float32_and_seeded():
    mm.manual_seed(3)
    conv = nn.Conv2d(16, 32, 3, groups=2)
    bound = 1 / math.sqrt(8 * 3 * 3)
    assert conv.weight.dtype == conv.bias.dtype == np.float32
    assert np.abs(conv.weight.data).max() <= bound and np.abs(conv.bias.data).max() <= bound
    assert np.abs(conv.weight.data).max() > 0.9 * bound  # fills the interval, not a narrower one
    np.testing.assert_allclose(conv.weight.data.std(), bound / math.sqrt(3), rtol=0.1)  # uniform's std
    mm.manual_seed(3)
    np.testing.assert_array_equal(nn.Conv2d(16, 32, 3, groups=2).weight.data, conv.weight.data)


def test_conv2d_bad_construction():
    with pytest.raises(ValueError, match="groups=3 must divide"):
        nn.Conv2d(4, 6, 3, groups=3)
    with pytest.raises(ValueError, match="odd kernel"):
        nn.Conv2d(4, 6, 2, padding="same")


@DTYPES
@pytest.mark.parametrize("kw", [dict(padding=1), dict(stride=2, padding="valid", groups=3),
                                dict(padding="same", dilation=2)])
def test_conv2d_module_matches_torch(kw, dtype):
    conv = nn.Conv2d(3, 6, 3, **kw)

    def run(x, w, b):
        conv.weight, conv.bias = w, b
        return conv(x)

    inputs = [randn(2, 3, 9, 7), randn(*conv.weight.shape, seed=1), randn(6, seed=2)]
    check_parity(run, lambda x, w, b: torch.nn.functional.conv2d(x, w, b, **kw), inputs, dtype)


@DTYPES
def test_adaptive_avg_pool_matches_torch(dtype, each_path):
    check_parity(lambda x: nn.AdaptiveAvgPool2d(1)(x), lambda x: torch.nn.functional.adaptive_avg_pool2d(x, 1),
                 [randn(2, 5, 3, 4)], dtype)
    check_parity(lambda x: F.adaptive_avg_pool2d(x, (1, 1)),
                 lambda x: torch.nn.functional.adaptive_avg_pool2d(x, 1), [randn(1, 3, 7, 2)], dtype)


def test_adaptive_avg_pool_only_output_one():
    with pytest.raises(ValueError, match="only output_size=1"):
        nn.AdaptiveAvgPool2d(2)
    with pytest.raises(ValueError, match="4-D"):
        F.adaptive_avg_pool2d(mm.Tensor(np.zeros((2, 3), np.float32)))


@DTYPES
@pytest.mark.parametrize("activation, torch_act", [(nn.SiLU, torch.nn.functional.silu),
                                                   (nn.ReLU, torch.nn.functional.relu)])
def test_squeeze_excite_matches_torch(activation, torch_act, dtype, each_path):
    se = nn.SqueezeExcite(6, 2, activation=activation)
    assert se.conv_reduce.weight.shape == (2, 6, 1, 1) and se.conv_expand.weight.shape == (6, 2, 1, 1)

    def run(x, w1, b1, w2, b2):
        se.conv_reduce.weight, se.conv_reduce.bias, se.conv_expand.weight, se.conv_expand.bias = w1, b1, w2, b2
        return se(x)

    def reference(x, w1, b1, w2, b2):
        s = x.mean((2, 3), keepdim=True)
        gate = torch.sigmoid(torch.nn.functional.conv2d(torch_act(torch.nn.functional.conv2d(s, w1, b1)), w2, b2))
        return x * gate

    inputs = [randn(3, 6, 5, 4), randn(2, 6, 1, 1, seed=1), randn(2, seed=2), randn(6, 2, 1, 1, seed=3),
              randn(6, seed=4)]
    check_parity(run, reference, inputs, dtype)


def test_squeeze_excite_state_dict_names():
    assert list(nn.SqueezeExcite(8, 2).state_dict()) == [
        "conv_reduce.weight", "conv_reduce.bias", "conv_expand.weight", "conv_expand.bias"]
