"""BatchNormAct2d (batch norm -> activation as one module) against torch, on both paths.

On the fast path it runs the fused Numba op (``minimix.fast.norm_act``), on the reference
path ``batch_norm`` then the activation module; both must equal torch's batch_norm followed
by the activation, and update the running statistics as torch does.
"""
import numpy as np
import pytest
from parity import DTYPES, check_parity, randn, torch

import minimix as mm
import minimix.nn as nn
from minimix.tensor import profile_ops

pytestmark = pytest.mark.usefixtures("each_path")  # every test on the fast and the reference path

ACTIVATIONS = {None: (None, lambda z: z), "relu": (nn.ReLU, torch.relu),
               "silu": (nn.SiLU, torch.nn.functional.silu)}


def _module(c, dtype, training, activation, momentum=0.1, eps=1e-3, seed=5):
    bn = nn.BatchNormAct2d(c, eps=eps, momentum=momentum, act_layer=ACTIVATIONS[activation][0], dtype=dtype)
    bn.running_mean[:] = randn(c, seed=seed)
    bn.running_var[:] = 0.5 + randn(c, seed=seed + 1) ** 2
    return bn.train(training)


def _run(bn):
    def fn(x, w, b):
        bn.weight, bn.bias = w, b
        return bn(x)
    return fn


@DTYPES
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("x_shape", [(4, 3, 5, 6), (1, 5, 3, 2), (7, 2, 1, 1)])
def test_batch_norm_act_matches_torch(x_shape, training, activation, dtype):
    c = x_shape[1]
    bn = _module(c, dtype, training, activation)
    torch_stats = [torch.tensor(bn.running_mean.astype(dtype)), torch.tensor(bn.running_var.astype(dtype))]
    act = ACTIVATIONS[activation][1]
    inputs = [2.0 + 3.0 * randn(*x_shape), 1.0 + randn(c, seed=1), randn(c, seed=2)]
    check_parity(_run(bn),
                 lambda x, w, b: act(torch.nn.functional.batch_norm(x, *torch_stats, w, b, training=training,
                                                                    momentum=0.1, eps=1e-3)),
                 inputs, dtype)
    for ours, theirs in zip((bn.running_mean, bn.running_var), torch_stats):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-6, atol=1e-7)  # float32 buffers


@DTYPES
@pytest.mark.parametrize("layout", ["channels_last", "reversed"])
def test_non_contiguous_input(layout, dtype):
    """A channels-last (transposed) or negatively strided view of x gives torch's numbers (the op gets
    the view itself: check_parity's ``layout``; tests/test_layouts.py covers every op)."""
    bn = _module(3, dtype, True, "silu")
    torch_stats = [torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)]
    check_parity(lambda x: bn(x), lambda x: torch.nn.functional.silu(torch.nn.functional.batch_norm(
        x, *[s.to(x.dtype) for s in torch_stats], torch.ones(3, dtype=x.dtype), torch.zeros(3, dtype=x.dtype), training=True, eps=1e-3)),
        [randn(2, 3, 4, 5)], dtype, layout=layout)


@DTYPES
def test_silu_saturates_without_overflow(dtype):
    """Pre-activations of +-1000 (exp would overflow float32 and float64 at -z): finite, torch's values."""
    bn = _module(2, dtype, False, "silu")
    bn.running_mean[:], bn.running_var[:] = 0, 1 - 1e-3  # z = gamma * x + beta exactly
    x = np.array([-1000.0, -30.0, -1.0, 0.0, 1e-30, 2.5, 30.0, 1000.0]).reshape(1, 2, 2, 2)
    with np.errstate(all="raise"):
        check_parity(_run(bn),
                     lambda x, w, b: torch.nn.functional.silu(torch.nn.functional.batch_norm(
                         x, torch.zeros(2, dtype=x.dtype), torch.full((2,), 1 - 1e-3, dtype=x.dtype), w, b,
                         training=False, eps=1e-3)),
                     [x, np.ones(2), np.zeros(2)], dtype)


@DTYPES
def test_relu_of_an_overflowing_pre_activation_is_torchs(dtype):
    """gamma * x beyond the dtype's range: z = -inf gives ReLU 0 (not 0 * -inf = NaN), z = +inf gives inf,
    and a NaN input stays NaN, as in torch; the gradient through them is torch's too."""
    bn = _module(2, dtype, False, "relu")
    bn.running_mean[:], bn.running_var[:] = 0, 1 - 1e-3  # z = gamma * x + beta exactly
    big = float(np.finfo(dtype).max) / 2
    x = np.array([-big, -1.0, 0.5, big, np.nan, -big, 2.0, 3.0]).reshape(1, 2, 2, 2)
    with np.errstate(over="ignore", invalid="ignore"):
        out = check_parity(_run(bn),
                           lambda x, w, b: torch.relu(torch.nn.functional.batch_norm(
                               x, torch.zeros(2, dtype=x.dtype), torch.full((2,), 1 - 1e-3, dtype=x.dtype), w, b,
                               training=False, eps=1e-3)),
                           [x, np.full(2, 10.0), np.zeros(2)], dtype)
    y = out[0].data.ravel()
    assert y[0] == 0 and y[5] == 0 and y[3] == np.inf and np.isnan(y[4])  # the case reaches the overflow


def test_module_equals_batch_norm_then_activation():
    """BatchNormAct2d(c, act_layer=SiLU)(x) == SiLU()(BatchNorm2d(c)(x)), running statistics included."""
    mm.manual_seed(0)
    fused, plain = nn.BatchNormAct2d(3, act_layer=nn.SiLU), nn.BatchNorm2d(3)
    x = (1.0 + 2.0 * randn(4, 3, 5, 5)).astype(np.float32)
    y_fused = fused(mm.Tensor(x))
    y_plain = nn.SiLU()(plain(mm.Tensor(x)))
    np.testing.assert_allclose(y_fused.data, y_plain.data, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused.running_mean, plain.running_mean, rtol=1e-6)
    np.testing.assert_allclose(fused.running_var, plain.running_var, rtol=1e-6)
    assert fused.running_var.dtype == np.float32
    assert list(fused.state_dict()) == list(plain.state_dict())  # same checkpoint keys as a BatchNorm2d


def test_other_activations_and_hooks_take_the_reference(each_path):
    """Tanh has no fused kernel, and a hook on the activation must see it run: both run the
    reference ops (batch norm, then the activation module)."""
    x = mm.Tensor(randn(2, 2, 3, 3).astype(np.float32))
    with profile_ops() as ops:
        nn.BatchNormAct2d(2, act_layer=nn.Tanh)(x)
    assert "Tanh" in ops and "BatchNorm" in ops
    bn, seen = nn.BatchNormAct2d(2, act_layer=nn.ReLU), []
    with bn.act.register_forward_hook(lambda module, args, out: seen.append(out.shape)):
        bn(x)
    assert seen == [(2, 2, 3, 3)]
    with profile_ops() as ops:
        bn(x)
    assert list(ops) == (["BatchNormAct"] if each_path == "fast" else ["BatchNorm", "ReLU"])
