"""BatchNorm1d, LayerNorm, GroupNorm and the BatchNorm options (momentum=None, affine, track_running_stats,
num_batches_tracked, buffer dtype, checkpoints without the counter) against PyTorch."""
import numpy as np
import pytest
from parity import DTYPES, check_parity, randn, torch

import minimix as mm
import minimix.nn as nn
import minimix.nn.functional as F

pytestmark = pytest.mark.usefixtures("each_path")  # BatchNorm2d has a fast path; the rest runs twice, cheaply
TF = torch.nn.functional


def _tight(dtype):
    return dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)


# -- F.batch_norm on (N, C) and (N, C, L) -----------------------------------------------------------------
@DTYPES
@pytest.mark.parametrize("x_shape", [(6, 3), (1, 4, 5), (5, 2, 7), (0, 3), (0, 2, 4)])
@pytest.mark.parametrize("layout", ["C", "F", "reversed", "sliced"])
def test_batch_norm_1d_train_matches_torch(x_shape, layout, dtype):
    c = x_shape[1]
    mean0, var0 = randn(c, seed=5), 0.5 + randn(c, seed=6) ** 2
    ours, theirs = [mean0.astype(dtype), var0.astype(dtype)], [torch.tensor(mean0.astype(dtype)),
                                                              torch.tensor(var0.astype(dtype))]
    check_parity(
        lambda x, w, b: F.batch_norm(x, *ours, w, b, training=True, momentum=0.3, eps=1e-3),
        lambda x, w, b: TF.batch_norm(x, *theirs, w, b, training=True, momentum=0.3, eps=1e-3),
        [2.0 + 3.0 * randn(*x_shape), 1.0 + randn(c, seed=1), randn(c, seed=2)], dtype, layout=layout)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b.numpy(), **_tight(dtype))


@DTYPES
@pytest.mark.parametrize("x_shape", [(1, 3), (4, 3, 5)])
def test_batch_norm_1d_eval_and_no_affine_match_torch(x_shape, dtype):
    c = x_shape[1]
    mean, var = randn(c, seed=5).astype(dtype), (0.5 + randn(c, seed=6) ** 2).astype(dtype)
    check_parity(lambda x: F.batch_norm(x, mean, var),  # weight and bias default to None
                 lambda x: TF.batch_norm(x, torch.tensor(mean), torch.tensor(var)),
                 [randn(*x_shape)], dtype, layout="F")
    check_parity(lambda x: F.batch_norm(x, None, None, training=True),
                 lambda x: TF.batch_norm(x, None, None, training=True), [randn(3, *x_shape[1:], seed=3) + 1], dtype)


# -- the modules against torch's, over several training steps -----------------------------------------------
def _copy_affine(ours, theirs, seed=0):
    """Random weight and bias, the same in both modules (when they have them)."""
    if theirs.weight is None:
        return
    c = theirs.weight.shape[0]
    for name, value in (("weight", 1.0 + randn(c, seed=seed + 1)), ("bias", randn(c, seed=seed + 2))):
        if getattr(theirs, name) is not None:
            with torch.no_grad():
                getattr(theirs, name).copy_(torch.tensor(value))
            getattr(ours, name).data[...] = getattr(theirs, name).detach().numpy()


def _assert_same_state(ours, theirs, dtype):
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert list(ours_state) == list(theirs_state)
    for k, v in theirs_state.items():
        assert ours_state[k].dtype == v.numpy().dtype, k
        np.testing.assert_allclose(ours_state[k], v.numpy(), **_tight(dtype), err_msg=k)


def _train_steps(ours, theirs, shapes, dtype):
    """Forward and backward through both modules for every shape in ``shapes`` (one step each)."""
    for step, shape in enumerate(shapes):
        x = (1.0 + step + (2.0 + step) * randn(*shape, seed=step)).astype(dtype)
        g = randn(*shape, seed=step + 50).astype(dtype)
        y, expected = ours(mm.Tensor(x)), theirs(torch.tensor(x))
        np.testing.assert_allclose(y.data, expected.detach().numpy(), **_tight(dtype), err_msg=f"step {step}")
        if ours.weight is not None:
            ours.zero_grad()
            theirs.zero_grad()
            (y * mm.Tensor(g)).sum().backward()
            expected.backward(torch.tensor(g))
            for name in ("weight", "bias")[:1 if ours.bias is None else 2]:
                np.testing.assert_allclose(getattr(ours, name).grad, getattr(theirs, name).grad.numpy(),
                                           rtol=1e-10 if dtype == np.float64 else 1e-4, atol=1e-10, err_msg=name)
        _assert_same_state(ours, theirs, dtype)


BATCH_NORMS = {  # name: (minimix class, torch class, input shapes of the training steps)
    "1d-NC": (nn.BatchNorm1d, torch.nn.BatchNorm1d, [(5, 3), (2, 3), (9, 3), (4, 3)]),
    "1d-NCL": (nn.BatchNorm1d, torch.nn.BatchNorm1d, [(4, 3, 5), (1, 3, 7), (3, 3, 2), (0, 3, 4)]),
    "2d": (nn.BatchNorm2d, torch.nn.BatchNorm2d, [(4, 3, 5, 3), (1, 3, 2, 5), (2, 3, 3, 3), (3, 3, 1, 4)]),
}


@DTYPES
@pytest.mark.parametrize("kind", BATCH_NORMS)
@pytest.mark.parametrize("momentum", [0.1, 0.4, None])
def test_batchnorm_modules_follow_torch_over_several_steps(kind, momentum, dtype):
    ours_cls, theirs_cls, shapes = BATCH_NORMS[kind]
    ours = ours_cls(3, eps=1e-3, momentum=momentum, dtype=dtype)
    theirs = theirs_cls(3, eps=1e-3, momentum=momentum, dtype=torch.float64 if dtype == np.float64 else torch.float32)
    _copy_affine(ours, theirs)
    assert ours.running_mean.dtype == ours.running_var.dtype == dtype  # the buffers follow the layer's dtype
    _train_steps(ours, theirs, shapes, dtype)
    assert int(ours.num_batches_tracked) == len(shapes)  # every training forward counts, even an empty batch
    ours.eval()
    theirs.eval()
    x = randn(*shapes[0], seed=9).astype(dtype)
    np.testing.assert_allclose(ours(mm.Tensor(x)).data, theirs(torch.tensor(x)).detach().numpy(), **_tight(dtype))
    _assert_same_state(ours, theirs, dtype)  # eval counts nothing


@pytest.mark.parametrize("kind", BATCH_NORMS)
@pytest.mark.parametrize("options", [dict(affine=False), dict(track_running_stats=False), dict(bias=False),
                                     dict(affine=False, track_running_stats=False, momentum=None)])
def test_batchnorm_options_match_torch(kind, options):
    ours_cls, theirs_cls, shapes = BATCH_NORMS[kind]
    ours = ours_cls(3, **options, dtype=np.float64)
    theirs = theirs_cls(3, **options, dtype=torch.float64)
    _copy_affine(ours, theirs)
    assert (ours.weight is None) == (theirs.weight is None)
    assert (ours.running_mean is None) == (theirs.running_mean is None)
    _train_steps(ours, theirs, shapes[:3], np.float64)
    ours.eval()
    theirs.eval()  # without running statistics, eval normalises with the batch's own
    _train_steps(ours, theirs, shapes[:2], np.float64)


def test_batchnormact2d_counts_and_momentum_none_matches_torch():
    ours = nn.BatchNormAct2d(3, momentum=None, act_layer=nn.SiLU, dtype=np.float64)
    theirs = torch.nn.BatchNorm2d(3, momentum=None, dtype=torch.float64)
    for step in range(3):
        x = 1.0 + step + randn(2, 3, 4, 5, seed=step)
        y, expected = ours(mm.Tensor(x)), TF.silu(theirs(torch.tensor(x)))
        np.testing.assert_allclose(y.data, expected.detach().numpy(), rtol=1e-12, atol=1e-13)
    _assert_same_state(ours, theirs, np.float64)


def test_batchnorm_reprs_and_input_dims():
    for options in [{}, dict(affine=False), dict(bias=False), dict(momentum=None, track_running_stats=False)]:
        assert repr(nn.BatchNorm1d(4, **options)) == repr(torch.nn.BatchNorm1d(4, **options))
        assert list(nn.BatchNorm2d(4, **options).state_dict()) == list(torch.nn.BatchNorm2d(4, **options).state_dict())
    with pytest.raises(ValueError, match=r"BatchNorm1d: x must be 2-D \(N, C\) or 3-D \(N, C, L\), got shape \(2, 3, 4, 4\)"):
        nn.BatchNorm1d(3)(mm.Tensor(np.zeros((2, 3, 4, 4), np.float32)))
    with pytest.raises(ValueError, match=r"more than one value per channel, got x \(1, 3\)"):
        nn.BatchNorm1d(3)(mm.Tensor(np.zeros((1, 3), np.float32)))
    with pytest.raises(ValueError, match=r"running_mean must have shape \(4,\) for x \(2, 4\), got \(3,\)"):
        nn.BatchNorm1d(3, affine=False)(mm.Tensor(np.zeros((2, 4), np.float32)))


# -- the counter in state dicts, checkpoints and dtype conversions -------------------------------------------
def _small_net(dtype=np.float32):
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=False, dtype=dtype), nn.BatchNorm2d(4, dtype=dtype), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4, 2, dtype=dtype), nn.BatchNorm1d(2, dtype=dtype))


def test_state_dict_without_the_counter_loads_and_keeps_it():
    """As torch: a state dict lacking num_batches_tracked (older minimix checkpoints) loads; the counter stays."""
    net = _small_net()
    net.train()
    net(mm.Tensor(randn(3, 3, 3, 3).astype(np.float32)))
    assert int(net[1].num_batches_tracked) == int(net[5].num_batches_tracked) == 1
    old = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    old["1.running_mean"] = old["1.running_mean"] + 1.0
    fresh = _small_net()
    fresh.load_state_dict(old)
    np.testing.assert_array_equal(fresh[1].running_mean, old["1.running_mean"])
    assert int(fresh[1].num_batches_tracked) == 0 and fresh[1].num_batches_tracked.dtype == np.int64
    fresh.load_state_dict(net.state_dict())  # and with it, it is loaded
    assert int(fresh[1].num_batches_tracked) == 1
    del old["1.running_var"]  # anything else missing is still reported
    with pytest.raises(KeyError, match=r"missing keys:\n  1.running_var$"):
        fresh.load_state_dict(old)


def test_training_checkpoint_without_the_counter_loads(tmp_path):
    from minimix.training import load_checkpoint, load_weights, save_checkpoint

    net = _small_net()
    old = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    meta = save_checkpoint(tmp_path, {"epoch": 1, "model": old})
    load_weights(_small_net(), load_checkpoint(meta)["model"], meta)
    net[1].num_batches_tracked += 5
    meta = save_checkpoint(tmp_path / "new", {"epoch": 1, "model": net.state_dict()})
    fresh = load_weights(_small_net(), load_checkpoint(meta)["model"], meta)
    assert fresh[1].num_batches_tracked.dtype == np.int64 and int(fresh[1].num_batches_tracked) == 5


def test_shipped_lesson_checkpoint_without_the_counter_loads():
    from minimix.lessons.course import SHIPPED_CHECKPOINT, load_trained_model

    with np.load(SHIPPED_CHECKPOINT.with_suffix(".npz")) as arrays:
        assert not any(k.endswith("num_batches_tracked") for k in arrays.files)  # an older checkpoint
    model, _, _ = load_trained_model(SHIPPED_CHECKPOINT)
    counters = [b for name, b in model.named_buffers() if name.endswith("num_batches_tracked")]
    assert counters and all(c.dtype == np.int64 and int(c) == 0 for c in counters)


def test_double_converts_the_running_statistics_not_the_counter():
    if not hasattr(nn.Module, "double"):
        pytest.fail("Module.double is part of issue 16 (item 7)")
    bn = nn.BatchNorm1d(3)
    bn.num_batches_tracked += 2
    bn.double()
    assert bn.weight.dtype == bn.running_mean.dtype == bn.running_var.dtype == np.float64
    assert bn.num_batches_tracked.dtype == np.int64 and int(bn.num_batches_tracked) == 2
    y = bn(mm.Tensor(randn(4, 3)))
    assert y.dtype == np.float64


# -- LayerNorm ----------------------------------------------------------------------------------------------
@DTYPES
@pytest.mark.parametrize("x_shape, normalized_shape", [((4, 7), (7,)), ((1, 3, 5), (5,)), ((2, 3, 4, 5), (4, 5)),
                                                       ((0, 6), (6,)), ((3, 2, 5), (3, 2, 5))])
@pytest.mark.parametrize("layout", ["C", "F", "channels_last", "reversed", "sliced"])
def test_layer_norm_matches_torch(x_shape, normalized_shape, layout, dtype):
    inputs = [2.0 + 3.0 * randn(*x_shape), 1.0 + randn(*normalized_shape, seed=1), randn(*normalized_shape, seed=2)]
    check_parity(lambda x, w, b: F.layer_norm(x, normalized_shape, w, b, eps=1e-4),
                 lambda x, w, b: TF.layer_norm(x, normalized_shape, w, b, eps=1e-4), inputs, dtype, layout=layout)


@DTYPES
def test_layer_norm_without_weight_or_bias_matches_torch(dtype):
    check_parity(lambda x: F.layer_norm(x, 5), lambda x: TF.layer_norm(x, (5,)), [randn(3, 5)], dtype)
    check_parity(lambda x, w: F.layer_norm(x, [4], w), lambda x, w: TF.layer_norm(x, [4], w),
                 [randn(2, 3, 4), randn(4, seed=1)], dtype)


@pytest.mark.parametrize("options", [{}, dict(elementwise_affine=False), dict(bias=False), dict(eps=1e-2)])
def test_layernorm_module_matches_torch(options):
    ours, theirs = nn.LayerNorm((3, 4), **options), torch.nn.LayerNorm((3, 4), **options)
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for name in ("weight", "bias"):
        if getattr(theirs, name) is not None:
            value = randn(3, 4, seed=len(name)).astype(np.float32)
            getattr(ours, name).data[...] = value
            with torch.no_grad():
                getattr(theirs, name).copy_(torch.tensor(value))
    check_parity(lambda x: ours(x), lambda x: theirs(x), [randn(2, 5, 3, 4)], np.float32, check_grad=True)
    for name, p in theirs.named_parameters():  # the parameters' gradients too
        np.testing.assert_allclose(getattr(ours, name).grad, p.grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)


def test_layer_norm_bad_input():
    with pytest.raises(ValueError, match=r"layer_norm: input of shape \(2, 3\) must end with normalized_shape \(4,\)"):
        F.layer_norm(mm.Tensor(np.zeros((2, 3))), (4,))
    with pytest.raises(ValueError, match=r"layer_norm: weight must have shape normalized_shape \(3,\), got \(2,\)"):
        F.layer_norm(mm.Tensor(np.zeros((2, 3))), (3,), mm.Tensor(np.ones(2)))


# -- GroupNorm ----------------------------------------------------------------------------------------------
@DTYPES
@pytest.mark.parametrize("x_shape, groups", [((2, 6, 5, 3), 3), ((1, 4, 3, 7), 1), ((3, 4, 2, 2), 4),
                                             ((4, 6), 2), ((2, 6, 5), 3), ((0, 6, 3, 3), 2)])
@pytest.mark.parametrize("layout", ["C", "F", "channels_last", "reversed", "sliced"])
def test_group_norm_matches_torch(x_shape, groups, layout, dtype):
    c = x_shape[1]
    inputs = [2.0 + 3.0 * randn(*x_shape), 1.0 + randn(c, seed=1), randn(c, seed=2)]
    check_parity(lambda x, w, b: F.group_norm(x, groups, w, b, eps=1e-4),
                 lambda x, w, b: TF.group_norm(x, groups, w, b, eps=1e-4), inputs, dtype, layout=layout)


@DTYPES
def test_group_norm_without_weight_or_bias_matches_torch(dtype):
    check_parity(lambda x: F.group_norm(x, 2), lambda x: TF.group_norm(x, 2), [randn(3, 4, 3, 2)], dtype)


@pytest.mark.parametrize("options", [{}, dict(affine=False), dict(bias=False)])
def test_groupnorm_module_matches_torch(options):
    ours, theirs = nn.GroupNorm(2, 6, **options), torch.nn.GroupNorm(2, 6, **options)
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    if theirs.weight is not None:
        with torch.no_grad():
            theirs.weight.copy_(torch.tensor(1.0 + randn(6, seed=1)))
        ours.weight.data[...] = theirs.weight.detach().numpy()
    check_parity(lambda x: ours(x), lambda x: theirs(x), [randn(3, 6, 4, 5)], np.float32)
    for name, p in theirs.named_parameters():
        np.testing.assert_allclose(getattr(ours, name).grad, p.grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)


def test_group_norm_channels_not_divisible_by_groups():
    with pytest.raises(ValueError, match="GroupNorm: num_channels 6 must be divisible by num_groups 4"):
        nn.GroupNorm(4, 6)
    with pytest.raises(ValueError, match=r"group_norm: num_channels 6 \(input \(2, 6, 3, 3\)\) must be divisible "
                                         r"by num_groups 4"):
        F.group_norm(mm.Tensor(np.zeros((2, 6, 3, 3))), 4)
