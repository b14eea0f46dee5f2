"""MixConv -> BatchNorm (eval) -> activation fused for inference, against torch and the unfused ops."""
import numpy as np
import pytest
from parity import DTYPES, TOLERANCES, randn, torch

import minimix as mm
import minimix.nn as nn
from minimix.kernels import depthwise_numba
from minimix.nn.fused import MixedDepthwiseBatchNormAct, mixconv_bn_act
from minimix.tensor import profile_ops

pytest.importorskip("numba", reason="the fused kernels need Numba")

ACTIVATIONS = {None: (None, lambda z: z), "relu": (nn.ReLU(), torch.relu),
               "silu": (nn.SiLU(), torch.nn.functional.silu)}


def _layers(channels, kernel_sizes, stride, dilation, dtype, seed=0):
    """A MixConv2d and a BatchNorm2d in eval mode with random weights and running statistics."""
    conv = nn.MixConv2d(channels, kernel_sizes=kernel_sizes, stride=stride, dilation=dilation)
    for i, c in enumerate(conv.convs):
        c.weight.data = randn(*c.weight.shape, seed=seed + i).astype(dtype)
    bn = nn.BatchNorm2d(channels, eps=1e-3)
    bn.weight.data = (1 + randn(channels, seed=seed + 10)).astype(dtype)
    bn.bias.data = randn(channels, seed=seed + 11).astype(dtype)
    bn.running_mean[:] = randn(channels, seed=seed + 12)
    bn.running_var[:] = 0.5 + randn(channels, seed=seed + 13) ** 2
    return conv.eval(), bn.eval()


def _torch_reference(conv, bn, activation, x):
    """torch: each group's depthwise conv2d, concatenated, then batch_norm (eval) and the activation."""
    parts, start = [], 0
    xt = torch.from_numpy(x)
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
])
def test_fused_inference_matches_torch(x_shape, kernel_sizes, stride, dilation, activation, dtype):
    conv, bn = _layers(x_shape[1], kernel_sizes, stride, dilation, dtype)
    x = randn(*x_shape, seed=20).astype(dtype)
    with mm.no_grad(), profile_ops() as ops:
        y = mixconv_bn_act(conv, mm.Tensor(x), bn, ACTIVATIONS[activation][0])
    assert list(ops) == [MixedDepthwiseBatchNormAct(()).profile_label()]  # the fused op ran, alone
    expected = _torch_reference(conv, bn, activation, x)
    assert y.dtype == dtype and y.shape == expected.shape
    tol = TOLERANCES[dtype]
    np.testing.assert_allclose(y.data, expected, rtol=tol["rtol"], atol=tol["atol"] * max(1, np.abs(expected).max()))


@pytest.mark.parametrize("activation", ["relu", "silu"])
def test_fused_equals_the_unfused_ops(activation):
    """Same numbers as the training-path ops in eval mode (float32, MixNet-like shape)."""
    conv, bn = _layers(40, (3, 5, 7), 1, 1, np.float32)
    x = mm.Tensor(randn(8, 40, 16, 16, seed=3).astype(np.float32))
    with mm.no_grad():
        fused = mixconv_bn_act(conv, x, bn, ACTIVATIONS[activation][0])
        separate = ACTIVATIONS[activation][0](bn(conv(x)))
    np.testing.assert_allclose(fused.data, separate.data, rtol=1e-5, atol=1e-5)


def test_training_or_gradients_use_the_separate_ops():
    """The fused op has no backward: with a graph to record, or in training, the usual ops run."""
    conv, bn = _layers(6, (3, 5), 1, 1, np.float32)
    x = mm.Tensor(randn(2, 6, 5, 5).astype(np.float32), requires_grad=True)
    y = mixconv_bn_act(conv, x, bn, nn.SiLU())  # eval mode, but gradients are on (e.g. an ERF)
    assert not isinstance(y._ctx, MixedDepthwiseBatchNormAct)
    y.sum().backward()
    assert x.grad is not None and np.isfinite(x.grad).all()
    conv.train(), bn.train()
    with mm.no_grad(), profile_ops() as ops:
        mixconv_bn_act(conv, mm.Tensor(x.data), bn, nn.SiLU())
    assert MixedDepthwiseBatchNormAct(()).profile_label() not in ops


def test_epilogue_rejects_bad_arguments():
    x = randn(2, 4, 5, 5).astype(np.float32)
    w = randn(4, 3, 3).astype(np.float32)
    with pytest.raises(ValueError, match=r"coef must be a \(2, 4\) array"):
        depthwise_numba.depthwise_forward(x, w, 1, 1, epilogue=(np.ones((2, 3), np.float32), "relu"))
    with pytest.raises(ValueError, match="activation must be one of"):
        depthwise_numba.depthwise_forward(x, w, 1, 1, epilogue=(np.ones((2, 4), np.float32), "tanh"))


def test_mixnet_inference_uses_the_fused_op_and_matches_the_unfused_model():
    """A whole mixnet_cifar in eval mode: every MixConv runs fused, and the logits equal those of
    the same model with its modules hooked (hooks make every block take the separate ops)."""
    from minimix.models import mixnet_cifar
    from minimix.viz.tracing import forward_hooks

    mm.manual_seed(0)
    model = mixnet_cifar().eval()
    x = mm.Tensor(randn(2, 3, 32, 32, seed=4).astype(np.float32))
    with mm.no_grad(), profile_ops() as ops:
        fused = model(x)
    assert ops[MixedDepthwiseBatchNormAct(()).profile_label()][0] == 16  # every MixConv of the model
    convs = [m for m in model.modules() if isinstance(m, nn.MixConv2d)]
    with mm.no_grad(), forward_hooks([(m, lambda module, inputs, out: None) for m in convs]):
        separate = model(x)
    np.testing.assert_allclose(fused.data, separate.data, rtol=1e-4, atol=1e-5)
