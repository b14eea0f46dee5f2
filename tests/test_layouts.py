"""Every op on inputs in any memory layout, and on empty batches, against torch (issue 14, item 7).

NumPy arrays need not be C-contiguous: a Fortran-order array, a channels-last transpose, a view
with negative strides or a strided slice hold the same values in another layout, and torch
accepts all of them. So must every minimix op, forward and backward, on both paths (the Numba
kernels read flat memory: the fast path copies what it cannot read in place). Each case runs
through tests/parity.py with ``layout=``, which hands minimix the strided view itself.
An empty batch (N = 0) gives empty outputs and zero parameter gradients, as in torch.
"""
import numpy as np
import pytest
from parity import LAYOUTS, check_parity, randn, relayout, torch

import minimix as mm
import minimix.nn as nn
import minimix.nn.functional as F

pytestmark = pytest.mark.usefixtures("each_path")  # every test on the fast and the reference path

TF = torch.nn.functional


def _positive(*shape, seed=0):
    return 0.5 + np.abs(randn(*shape, seed=seed))


def _params(module, names):
    """A function of (x, *params) that runs ``module`` with the parameters ``names`` (dotted) replaced."""
    def run(x, *params):
        for name, p in zip(names, params):
            *path, attr = name.split(".")
            owner = module
            for part in path:
                owner = owner[int(part)] if part.isdigit() else getattr(owner, part)
            setattr(owner, attr, p)
        return module(x)
    return run


def _torch_groups(splits, kernel_sizes, stride=1, depthwise=True):
    def run(x, *weights):
        parts = torch.split(x, splits, dim=1)
        return torch.cat([TF.conv2d(p, w, stride=stride, padding=k // 2, groups=c if depthwise else 1)
                          for p, w, k, c in zip(parts, weights, kernel_sizes, splits)], dim=1)
    return run


def _mixconv(n, channels, kernel_sizes, stride=1):
    m = nn.MixConv2d(channels, kernel_sizes, stride=stride)
    weights = [randn(*c.weight.shape, seed=i + 1) for i, c in enumerate(m.convs)]
    return (_params(m, [f"convs.{i}.weight" for i in range(len(m.convs))]),
            _torch_groups(m.splits, kernel_sizes, stride), [randn(n, channels, 7, 6)] + weights)


def _grouped(n):
    m = nn.GroupedConv2d(6, 8, groups=2, bias=True)
    params = [randn(*c.weight.shape, seed=i + 1) for i, c in enumerate(m.convs)]
    params += [randn(*c.bias.shape, seed=i + 5) for i, c in enumerate(m.convs)]

    def reference(x, w0, w1, b0, b1):
        a, b = torch.split(x, m.in_splits, dim=1)
        return torch.cat([TF.conv2d(a, w0, b0), TF.conv2d(b, w1, b1)], dim=1)

    names = ["convs.0.weight", "convs.1.weight", "convs.0.bias", "convs.1.bias"]
    return _params(m, names), reference, [randn(n, 6, 5, 7)] + params


def _batch_norm(n, training, act=None):
    """BatchNorm2d, or BatchNormAct2d with activation ``act``."""
    if act is None:
        bn = nn.BatchNorm2d(5, eps=1e-3, dtype=np.float64)
    else:
        bn = nn.BatchNormAct2d(5, eps=1e-3, act_layer=act, dtype=np.float64)
    bn.train(training)
    bn.running_mean[:] = randn(5, seed=5)
    bn.running_var[:] = 0.5 + randn(5, seed=6) ** 2
    stats = [torch.tensor(bn.running_mean.astype(np.float64)), torch.tensor(bn.running_var.astype(np.float64))]
    torch_act = {None: lambda z: z, nn.ReLU: torch.relu, nn.SiLU: TF.silu}[act]

    def reference(x, w, b):
        return torch_act(TF.batch_norm(x, *[s.to(x.dtype) for s in stats], w, b, training=training, eps=1e-3))

    return _params(bn, ["weight", "bias"]), reference, [2 + randn(n, 5, 4, 3), 1 + randn(5, seed=1), randn(5, seed=2)]


def _squeeze_excite(n):
    se = nn.SqueezeExcite(6, 2)

    def reference(x, w1, b1, w2, b2):
        gate = torch.sigmoid(TF.conv2d(TF.silu(TF.conv2d(x.mean((2, 3), keepdim=True), w1, b1)), w2, b2))
        return x * gate

    names = ["conv_reduce.weight", "conv_reduce.bias", "conv_expand.weight", "conv_expand.bias"]
    return _params(se, names), reference, [randn(n, 6, 5, 4), randn(2, 6, 1, 1, seed=1), randn(2, seed=2),
                                           randn(6, 2, 1, 1, seed=3), randn(6, seed=4)]


def _dropout(n):
    shape = (n, 4, 5)
    mm.manual_seed(5)
    mask = F.dropout(mm.Tensor(np.ones(shape)), 0.3).data  # the mask minimix draws after the same seed

    def run(x):
        mm.manual_seed(5)
        return F.dropout(x, 0.3)

    return run, lambda x: x * torch.from_numpy(mask).to(x.dtype), [randn(*shape)]


def _conv(n, x_shape, w_shape, backend, **kw):
    return (lambda x, w: F.conv2d(x, w, backend=backend, **kw), lambda x, w: TF.conv2d(x, w, **kw),
            [randn(n, *x_shape), randn(*w_shape, seed=1)])


# name -> case(n): (minimix function, torch function, inputs with batch n)
CASES = {
    "add-broadcast": lambda n: (lambda a, b: a + b, lambda a, b: a + b, [randn(n, 3, 4, 5), randn(3, 1, 5, seed=1)]),
    "sub-mul-div": lambda n: (lambda a, b: (a - b) * a / b, lambda a, b: (a - b) * a / b,
                              [randn(n, 3, 4), _positive(n, 3, 4, seed=1)]),
    "pow-neg": lambda n: (lambda a, b: -(a ** b), lambda a, b: -(a ** b), [_positive(n, 3, 4), randn(n, 3, 4, seed=1)]),
    "exp-log-sqrt": lambda n: (lambda a: a.exp() + a.log() * a.sqrt(), lambda a: a.exp() + a.log() * a.sqrt(),
                               [_positive(n, 4, 3, 2)]),
    "activations": lambda n: (lambda a: a.relu() + a.sigmoid() * a.silu() - a.tanh(),
                              lambda a: a.relu() + a.sigmoid() * TF.silu(a) - a.tanh(), [randn(n, 4, 3, 2)]),
    "sum-mean": lambda n: (lambda a: a.sum(axis=(1, 3)) + a.mean(axis=3).sum(axis=1),
                           lambda a: a.sum((1, 3)) + a.mean(3).sum(1), [randn(n, 3, 4, 5)]),
    "max": lambda n: (lambda a: a.amax(axis=2), lambda a: a.amax(2), [randn(n, 3, 4, 5)]),
    "sum-all": lambda n: (lambda a: a.sum() * a.mean(axis=1, keepdims=True),
                          lambda a: a.sum() * a.mean(1, keepdim=True), [randn(n, 3, 4)]),
    "reshape-flatten": lambda n: (lambda a: a.reshape(a.shape[0], 12, 5).flatten(1),
                                  lambda a: a.reshape(a.shape[0], 12, 5).flatten(1), [randn(n, 3, 4, 5)]),
    "permute-transpose": lambda n: (lambda a: a.permute(2, 0, 3, 1).transpose(0, 1),
                                    lambda a: a.permute(2, 0, 3, 1).transpose(0, 1), [randn(n, 3, 4, 5)]),
    "getitem": lambda n: (lambda a: a[:, 1:, ::2, -1], lambda a: a[:, 1:, ::2, -1], [randn(n, 3, 4, 5)]),
    "cat-split": lambda n: (lambda a, b: mm.ops.cat(list(mm.ops.split(a, [1, 2], axis=1)[::-1]) + [b], axis=1),
                            lambda a, b: torch.cat(list(torch.split(a, [1, 2], dim=1)[::-1]) + [b], dim=1),
                            [randn(n, 3, 4, 5), randn(n, 2, 4, 5, seed=1)]),
    "pad": lambda n: (lambda a: F.pad(a, (1, 2, 0, 1)), lambda a: TF.pad(a, (1, 2, 0, 1)), [randn(n, 3, 4, 5)]),
    "linear": lambda n: (F.linear, TF.linear, [randn(n, 5), randn(4, 5, seed=1), randn(4, seed=2)]),
    "linear-3d": lambda n: (F.linear, TF.linear, [randn(n, 3, 5), randn(4, 5, seed=1)]),
    "matmul": lambda n: (lambda a, b: a @ b, lambda a, b: a @ b, [randn(n, 3, 5), randn(5, 4, seed=1)]),
    "softmax": lambda n: (lambda a: F.softmax(a, axis=1) * F.log_softmax(a, axis=-1),
                          lambda a: TF.softmax(a, dim=1) * TF.log_softmax(a, dim=-1), [randn(n, 4, 3)]),
    "cross-entropy": lambda n: (lambda a: F.cross_entropy(a, np.arange(n) % 5, label_smoothing=0.1),
                                lambda a: TF.cross_entropy(a, torch.arange(n) % 5, label_smoothing=0.1),
                                [randn(n, 5)]),
    "conv2d-depthwise-auto": lambda n: _conv(n, (6, 7, 8), (6, 1, 3, 3), None, padding=1, groups=6),
    "conv2d-depthwise-numba": lambda n: _conv(n, (6, 7, 8), (6, 1, 5, 5), "numba", padding=2, stride=2, groups=6),
    "conv2d-depthwise-im2col": lambda n: _conv(n, (6, 7, 8), (6, 1, 3, 3), "im2col", padding=1, groups=6),
    "conv2d-depthwise-naive": lambda n: _conv(n, (4, 5, 6), (4, 1, 3, 3), "naive", padding=1, groups=4),
    "conv2d-1x1-auto": lambda n: _conv(n, (6, 7, 8), (4, 6, 1, 1), None),
    "conv2d-1x1-pointwise": lambda n: _conv(n, (6, 7, 8), (4, 6, 1, 1), "pointwise"),
    "conv2d-3x3-im2col": lambda n: _conv(n, (6, 7, 8), (4, 3, 3, 3), "im2col", padding=1, stride=2, groups=2),
    "conv2d-3x3-naive": lambda n: _conv(n, (3, 5, 6), (4, 3, 3, 3), "naive", padding=1),
    "mixed_conv2d-depthwise": lambda n: (lambda x, a, b: F.mixed_conv2d(x, [a, b], [3, 4]),
                                         _torch_groups([3, 4], (3, 5)),
                                         [randn(n, 7, 6, 5), randn(3, 1, 3, 3, seed=1), randn(4, 1, 5, 5, seed=2)]),
    "mixed_conv2d-pointwise": lambda n: (lambda x, a, b: F.mixed_conv2d(x, [a, b], [3, 4]),
                                         _torch_groups([3, 4], (1, 1), depthwise=False),
                                         [randn(n, 7, 6, 5), randn(2, 3, 1, 1, seed=1), randn(5, 4, 1, 1, seed=2)]),
    "MixConv2d": lambda n: _mixconv(n, 7, (3, 5)),
    "MixConv2d-stride2": lambda n: _mixconv(n, 9, (3, 5, 7), stride=2),
    "MixConv2d-one-kernel": lambda n: _mixconv(n, 5, (3,)),
    "GroupedConv2d": _grouped,
    "BatchNorm2d-train": lambda n: _batch_norm(n, True),
    "BatchNorm2d-eval": lambda n: _batch_norm(n, False),
    "BatchNormAct2d-relu-train": lambda n: _batch_norm(n, True, nn.ReLU),
    "BatchNormAct2d-silu-eval": lambda n: _batch_norm(n, False, nn.SiLU),
    "SqueezeExcite": _squeeze_excite,
    "adaptive_avg_pool2d": lambda n: (lambda x: F.adaptive_avg_pool2d(x, 1), lambda x: TF.adaptive_avg_pool2d(x, 1),
                                      [randn(n, 4, 5, 3)]),
    "dropout": _dropout,
}


def _layout_params():
    return [pytest.param(name, layout, id=f"{name}-{layout}") for name in CASES for layout in LAYOUTS[1:]]


@pytest.mark.parametrize("name, layout", _layout_params())
def test_any_layout_matches_torch(name, layout):
    mm_fn, torch_fn, inputs = CASES[name](2)
    check_parity(mm_fn, torch_fn, inputs, np.float64, layout=layout)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_empty_batch_matches_torch(name, dtype):
    mm_fn, torch_fn, inputs = CASES[name](0)
    out = check_parity(mm_fn, torch_fn, inputs, dtype)
    if name not in ("sum-all", "cross-entropy"):
        assert out[0].shape[0] == 0


@pytest.mark.parametrize("layout", LAYOUTS[1:])
def test_strided_upstream_gradient(layout):
    """The gradient reaching an op may itself be strided (here: the ops' outputs are multiplied by
    a strided array): MixConv, BatchNormAct and the depthwise convolution read it through its strides."""
    for name in ("MixConv2d", "MixConv2d-stride2", "BatchNormAct2d-relu-train", "conv2d-depthwise-numba",
                 "SqueezeExcite", "GroupedConv2d"):
        mm_fn, torch_fn, inputs = CASES[name](2)
        shape = torch_fn(*[torch.tensor(a) for a in inputs]).shape
        g = relayout(randn(*shape, seed=9), layout)
        check_parity(mm_fn, torch_fn, inputs, np.float64, grad_outputs=[g], layout=layout)


def test_fused_inference_any_layout_and_empty_batch(each_path):
    """nn.fuse's MixConvBNAct (no_grad) on strided input and an empty batch equals the unfused layers."""
    conv = nn.MixConv2d(7, (3, 5))
    bn = nn.BatchNormAct2d(7, act_layer=nn.SiLU)
    bn.running_mean[:] = randn(7, seed=3)
    bn.running_var[:] = 1 + randn(7, seed=4) ** 2
    conv.eval(), bn.eval()
    fused = nn.MixConvBNAct(conv, bn)
    for n in (2, 0):
        x = randn(n, 7, 6, 5).astype(np.float32)
        with mm.no_grad():
            expected = bn(conv(mm.Tensor(x))).data
            for layout in LAYOUTS:
                y = fused(mm.Tensor(relayout(x, layout))).data
                assert y.shape == expected.shape
                np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
