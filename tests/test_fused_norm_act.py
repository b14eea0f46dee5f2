"""The fused batch-norm + activation op (Numba kernels) against torch's batch_norm followed by the activation."""
import types

import numpy as np
import pytest
from parity import DTYPES, check_parity, randn, torch

import minimix as mm
import minimix.nn as nn
from minimix.nn.norm import BatchNormAct, batch_norm_act

pytest.importorskip("numba", reason="the fused kernels need Numba")

ACTIVATIONS = {None: (None, lambda z: z), "relu": (nn.ReLU(), torch.relu),
               "silu": (nn.SiLU(), torch.nn.functional.silu)}


def _bn(c, dtype, training, momentum=0.1, eps=1e-3, seed=5):
    """A stand-in for a BatchNorm2d module: the attributes batch_norm_act reads."""
    mean, var = randn(c, seed=seed).astype(dtype), (0.5 + randn(c, seed=seed + 1) ** 2).astype(dtype)
    return types.SimpleNamespace(running_mean=mean, running_var=var, training=training, momentum=momentum,
                                 eps=eps, weight=None, bias=None)


def _run(bn, activation):
    def fn(x, w, b):
        bn.weight, bn.bias = w, b
        out = batch_norm_act(x, bn, ACTIVATIONS[activation][0])
        assert isinstance(out._ctx, BatchNormAct)
        return out
    return fn


@DTYPES
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("x_shape", [(4, 3, 5, 6), (1, 5, 3, 2), (7, 2, 1, 1)])
def test_batch_norm_act_matches_torch(x_shape, training, activation, dtype):
    c = x_shape[1]
    bn = _bn(c, dtype, training)
    torch_stats = [torch.tensor(bn.running_mean.copy()), torch.tensor(bn.running_var.copy())]
    act = ACTIVATIONS[activation][1]
    inputs = [2.0 + 3.0 * randn(*x_shape), 1.0 + randn(c, seed=1), randn(c, seed=2)]
    check_parity(_run(bn, activation),
                 lambda x, w, b: act(torch.nn.functional.batch_norm(x, *torch_stats, w, b, training=training,
                                                                    momentum=0.1, eps=1e-3)),
                 inputs, dtype)
    tight = dtype == np.float64
    for ours, theirs in zip((bn.running_mean, bn.running_var), torch_stats):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-12 if tight else 1e-5, atol=1e-14 if tight else 1e-6)


@DTYPES
def test_silu_saturates_without_overflow(dtype):
    """Pre-activations of +-1000 (exp would overflow float32 and float64 at -z): finite, torch's values."""
    bn = _bn(2, dtype, training=False)
    bn.running_mean[:], bn.running_var[:] = 0, 1 - 1e-3  # z = gamma * x + beta exactly
    x = np.array([-1000.0, -30.0, -1.0, 0.0, 1e-30, 2.5, 30.0, 1000.0]).reshape(1, 2, 2, 2)
    with np.errstate(all="raise"):
        check_parity(_run(bn, "silu"),
                     lambda x, w, b: torch.nn.functional.silu(torch.nn.functional.batch_norm(
                         x, torch.zeros(2, dtype=x.dtype), torch.full((2,), 1 - 1e-3, dtype=x.dtype), w, b,
                         training=False, eps=1e-3)),
                     [x, np.ones(2), np.zeros(2)], dtype)


def test_module_keeps_its_parameters_and_statistics():
    """batch_norm_act(x, bn, act) == act(bn(x)) on a real BatchNorm2d, and updates bn's running stats alike."""
    mm.manual_seed(0)
    fused, plain = nn.BatchNorm2d(3), nn.BatchNorm2d(3)
    x = (1.0 + 2.0 * randn(4, 3, 5, 5)).astype(np.float32)
    y_fused = batch_norm_act(mm.Tensor(x), fused, nn.SiLU())
    y_plain = nn.SiLU()(plain(mm.Tensor(x)))
    np.testing.assert_allclose(y_fused.data, y_plain.data, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused.running_mean, plain.running_mean, rtol=1e-6)
    np.testing.assert_allclose(fused.running_var, plain.running_var, rtol=1e-6)
    assert fused.running_var.dtype == np.float32


def test_other_activations_fall_back_to_separate_ops():
    bn = nn.BatchNorm2d(2)
    out = batch_norm_act(mm.Tensor(randn(2, 2, 3, 3).astype(np.float32)), bn, nn.Tanh())
    assert not isinstance(out._ctx, BatchNormAct)
