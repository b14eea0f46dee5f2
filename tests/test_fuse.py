"""Inference fusion (``nn.fuse``): MixConv -> BatchNorm (eval) -> activation as one module, against
torch and against the unfused model, on both paths."""
import numpy as np
import pytest
from conftest import require
from parity import DTYPES, TOLERANCES, randn, torch

import minimix as mm
import minimix.nn as nn
from minimix.tensor import profile_ops

MixedDepthwiseBatchNormAct = require("minimix.fast.inference", "the fused inference op is a Numba kernel"
                                     ).MixedDepthwiseBatchNormAct

pytestmark = pytest.mark.usefixtures("each_path")  # every test on the fast and the reference path

ACTIVATIONS = {None: (None, lambda z: z), "relu": (nn.ReLU, torch.relu),
               "silu": (nn.SiLU, torch.nn.functional.silu)}
FUSED = MixedDepthwiseBatchNormAct(()).profile_label()


def _layers(channels, kernel_sizes, stride, dilation, dtype, activation="relu", seed=0):
    """A MixConv2d and a BatchNormAct2d in eval mode with random weights and running statistics."""
    conv = nn.MixConv2d(channels, kernel_sizes=kernel_sizes, stride=stride, dilation=dilation)
    for i, c in enumerate(conv.convs):
        c.weight.data = randn(*c.weight.shape, seed=seed + i).astype(dtype)
    bn = nn.BatchNormAct2d(channels, eps=1e-3, act_layer=ACTIVATIONS[activation][0], dtype=dtype)
    bn.weight.data = (1 + randn(channels, seed=seed + 10)).astype(dtype)
    bn.bias.data = randn(channels, seed=seed + 11).astype(dtype)
    bn.running_mean[:] = randn(channels, seed=seed + 12)
    bn.running_var[:] = 0.5 + randn(channels, seed=seed + 13) ** 2
    return conv.eval(), bn.eval()


def _torch_reference(conv, bn, activation, x):
    """torch: each group's depthwise conv2d, concatenated, then batch_norm (eval) and the activation."""
    parts, start = [], 0
    xt = torch.from_numpy(np.ascontiguousarray(x))
    for c, size in zip(conv.convs, conv.splits):
        w = torch.from_numpy(c.weight.data)
        parts.append(torch.nn.functional.conv2d(xt[:, start:start + size], w, stride=c.stride, padding=c.padding,
                                                dilation=c.dilation, groups=size))
        start += size
    z = torch.nn.functional.batch_norm(torch.cat(parts, 1), torch.from_numpy(bn.running_mean.astype(x.dtype)),
                                       torch.from_numpy(bn.running_var.astype(x.dtype)),
                                       torch.from_numpy(bn.weight.data), torch.from_numpy(bn.bias.data),
                                       training=False, eps=bn.eps)
    return ACTIVATIONS[activation][1](z).numpy()


@DTYPES
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("x_shape, kernel_sizes, stride, dilation", [
    ((3, 7, 9, 6), (3, 5), 1, 1),         # 7 channels over 2 groups: 4 + 3; non-square
    ((1, 10, 8, 8), (3, 5, 7), 2, 1),     # batch 1, stride 2, 10 over 3 groups
    ((2, 5, 7, 11), (3, 5, 7, 9), 2, 1),  # odd sizes at stride 2; a 9x9 kernel on a 7-row input
    ((2, 6, 9, 9), (3, 5), 1, 2),         # dilation 2
    ((4, 3, 5, 5), (3,), 1, 1),           # one group: a plain depthwise convolution
    ((0, 6, 5, 5), (3, 5), 1, 1),         # empty batch
])
def test_fused_module_matches_torch(x_shape, kernel_sizes, stride, dilation, activation, dtype, each_path):
    conv, bn = _layers(x_shape[1], kernel_sizes, stride, dilation, dtype, activation)
    fused = nn.MixConvBNAct(conv, bn)
    x = randn(*x_shape, seed=20).astype(dtype)
    with mm.no_grad(), profile_ops() as ops:
        y = fused(mm.Tensor(x))
    if each_path == "fast" and x_shape[0] > 0:
        assert list(ops) == [FUSED]  # one pass, nothing else
    else:
        assert FUSED not in ops
    expected = _torch_reference(conv, bn, activation, x)
    assert y.dtype == dtype and y.shape == expected.shape
    tol = TOLERANCES[dtype]
    scale = max(1, np.abs(expected).max()) if expected.size else 1
    np.testing.assert_allclose(y.data, expected, rtol=tol["rtol"], atol=tol["atol"] * scale)


def test_with_gradients_the_reference_forward_runs():
    """The one-pass op has no backward: with a graph to record (e.g. an ERF) the folded
    convolution and the activation run as ordinary ops, and x gets its gradient."""
    conv, bn = _layers(6, (3, 5), 1, 1, np.float64, "silu")
    fused = nn.MixConvBNAct(conv, bn)
    x = mm.Tensor(randn(2, 6, 5, 5), requires_grad=True)
    y = fused(x)
    assert not isinstance(y._ctx, MixedDepthwiseBatchNormAct)
    y.backward(randn(*y.shape, seed=1))
    xt = torch.tensor(x.data, requires_grad=True)
    parts = torch.split(xt, conv.splits, 1)
    z = torch.cat([torch.nn.functional.conv2d(p, torch.from_numpy(c.weight.data), padding=c.padding, groups=p.shape[1])
                   for p, c in zip(parts, conv.convs)], 1)
    z = torch.nn.functional.silu(torch.nn.functional.batch_norm(
        z, torch.from_numpy(bn.running_mean.astype(np.float64)), torch.from_numpy(bn.running_var.astype(np.float64)),
        torch.from_numpy(bn.weight.data), torch.from_numpy(bn.bias.data), training=False, eps=bn.eps))
    z.backward(torch.from_numpy(randn(*y.shape, seed=1)))
    np.testing.assert_allclose(x.grad, xt.grad.numpy(), rtol=1e-9, atol=1e-11)


def test_bad_pairs_are_refused():
    conv, _ = _layers(6, (3, 5), 1, 1, np.float32)
    with pytest.raises(ValueError, match="MixConvBNAct: needs a MixConv2d and a BatchNorm2d of its 6 channels"):
        nn.MixConvBNAct(conv, nn.BatchNorm2d(5))


def test_fuse_mixnet_matches_the_unfused_model(each_path):
    """A whole mixnet_cifar: ``fuse`` replaces every MixConv -> BN(+act) pair (16), leaves the model
    it was given untouched, and gives its eval-mode logits."""
    from minimix.models import mixnet_cifar

    mm.manual_seed(0)
    model = mixnet_cifar()
    x = mm.Tensor(randn(2, 3, 32, 32, seed=4).astype(np.float32))
    for _ in range(2):  # two training steps' worth of running statistics, so BN is not the identity
        model(mm.Tensor(randn(8, 3, 32, 32, seed=5).astype(np.float32)))
    before = model.state_dict()
    fused = nn.fuse(model)
    assert model.training and sum(isinstance(m, nn.MixConv2d) for m in model.modules()) == 16
    assert sum(isinstance(m, nn.MixConvBNAct) for m in fused.modules()) == 16
    assert not any(isinstance(m, nn.MixConv2d) for m in fused.modules())
    assert not fused.training
    model.eval()
    with mm.no_grad(), profile_ops() as ops:
        y_fused = fused(x)
    with mm.no_grad():
        y_model = model(x)
    assert (ops.get(FUSED, [0])[0] == 16) == (each_path == "fast")
    np.testing.assert_allclose(y_fused.data, y_model.data, rtol=1e-4, atol=1e-5)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


def test_epilogue_rejects_bad_arguments():
    from minimix.kernels import depthwise_numba

    x = randn(2, 4, 5, 5).astype(np.float32)
    w = randn(4, 3, 3).astype(np.float32)
    with pytest.raises(ValueError, match=r"coef must be a \(2, 4\) array"):
        depthwise_numba.depthwise_forward(x, w, 1, 1, epilogue=(np.ones((2, 3), np.float32), "relu"))
    with pytest.raises(ValueError, match="activation must be one of"):
        depthwise_numba.depthwise_forward(x, w, 1, 1, epilogue=(np.ones((2, 4), np.float32), "tanh"))
