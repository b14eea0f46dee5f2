"""BatchNorm2d against torch: train and eval outputs, every gradient, running statistics over several steps."""
import numpy as np
import pytest
from parity import DTYPES, check_parity, randn, torch

import minimix as mm
import minimix.nn as nn
import minimix.nn.functional as F

pytestmark = pytest.mark.usefixtures("each_path")  # every test on the fast and the reference path


@DTYPES
@pytest.mark.parametrize("x_shape", [(4, 3, 5, 6), (1, 5, 3, 2), (7, 2, 1, 1)])
@pytest.mark.parametrize("momentum", [0.1, 0.35])
def test_batch_norm_train_matches_torch(x_shape, momentum, dtype):
    c = x_shape[1]
    mean0, var0 = randn(c, seed=5), 0.5 + randn(c, seed=6) ** 2
    mm_stats = [mean0.astype(dtype), var0.astype(dtype)]
    torch_stats = [torch.tensor(mean0.astype(dtype)), torch.tensor(var0.astype(dtype))]
    inputs = [2.0 + 3.0 * randn(*x_shape), 1.0 + randn(c, seed=1), randn(c, seed=2)]
    check_parity(
        lambda x, w, b: F.batch_norm(x, *mm_stats, w, b, training=True, momentum=momentum, eps=1e-3),
        lambda x, w, b: torch.nn.functional.batch_norm(x, *torch_stats, w, b, training=True,
                                                       momentum=momentum, eps=1e-3),
        inputs, dtype)
    for ours, theirs in zip(mm_stats, torch_stats):
        tight = dtype == np.float64
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-12 if tight else 1e-5, atol=1e-14 if tight else 1e-6)


@DTYPES
def test_batch_norm_eval_matches_torch(dtype):
    c = 4
    mean, var = randn(c, seed=5).astype(dtype), (0.5 + randn(c, seed=6) ** 2).astype(dtype)
    inputs = [randn(3, c, 5, 4), 1.0 + randn(c, seed=1), randn(c, seed=2)]
    before = mean.copy(), var.copy()
    check_parity(
        lambda x, w, b: F.batch_norm(x, mean, var, w, b, training=False),
        lambda x, w, b: torch.nn.functional.batch_norm(x, torch.tensor(mean), torch.tensor(var), w, b,
                                                       training=False),
        inputs, dtype)
    np.testing.assert_array_equal(mean, before[0])  # eval never touches the running statistics
    np.testing.assert_array_equal(var, before[1])


@pytest.mark.parametrize("momentum", [0.1, 0.5])
def test_batchnorm2d_running_stats_follow_torch_over_several_steps(momentum):
    ours = nn.BatchNorm2d(3, momentum=momentum)
    theirs = torch.nn.BatchNorm2d(3, momentum=momentum)
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor([0.5, 1.5, -1.0]))
        theirs.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    ours.weight.data = theirs.weight.detach().numpy().copy()
    ours.bias.data = theirs.bias.detach().numpy().copy()
    for step in range(5):
        x = (1.0 + step + (2.0 + step) * randn(4, 3, 5, 3, seed=step)).astype(np.float32)
        y = ours(mm.Tensor(x))
        expected = theirs(torch.tensor(x))
        np.testing.assert_allclose(y.data, expected.detach().numpy(), rtol=1e-4, atol=1e-5)
    assert ours.running_mean.dtype == ours.running_var.dtype == np.float32
    np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), rtol=1e-5)
    np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-5)
    ours.eval()
    theirs.eval()
    x = randn(2, 3, 4, 4, seed=9).astype(np.float32)
    np.testing.assert_allclose(ours(mm.Tensor(x)).data, theirs(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_batchnorm2d_updates_running_stats_under_no_grad_in_train_mode():
    bn = nn.BatchNorm2d(2)
    with mm.no_grad():
        bn(mm.Tensor(3.0 + randn(4, 2, 3, 3).astype(np.float32)))
    assert np.all(bn.running_mean > 0.1)


def test_batchnorm2d_state_dict_and_defaults():
    bn, theirs = nn.BatchNorm2d(4), torch.nn.BatchNorm2d(4)
    assert list(bn.state_dict()) == list(theirs.state_dict())  # ... running_var, num_batches_tracked
    for k, v in theirs.state_dict().items():
        assert bn.state_dict()[k].dtype == v.numpy().dtype, k  # float32, and int64 for the counter
        np.testing.assert_array_equal(bn.state_dict()[k], v.numpy(), err_msg=k)
    assert bn.eps == theirs.eps and bn.momentum == theirs.momentum


def test_batch_norm_bad_input():
    bn = nn.BatchNorm2d(3)
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\)"):
        bn(mm.Tensor(np.zeros((2, 4, 3, 3), np.float32)))
    with pytest.raises(ValueError, match="4-D"):
        bn(mm.Tensor(np.zeros((2, 3), np.float32)))
    with pytest.raises(ValueError, match="more than one value per channel"):
        bn(mm.Tensor(np.zeros((1, 3, 1, 1), np.float32)))
