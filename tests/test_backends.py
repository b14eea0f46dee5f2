"""The two paths: every registered fast implementation against the reference it replaces, the
registry itself, whole training steps on both paths, and a reference path without Numba.

The op tests (test_ops_*, test_conv2d, test_mixconv, test_norm*, test_layers_conv, test_fuse...)
already run every case on both paths against PyTorch (the ``each_path`` fixture); here each
fast implementation is compared with the reference directly, in float64 with tight tolerances,
on odd shapes: batch 1, an empty batch, non-square planes, stride 2, non-contiguous input and
channel counts that the kernel groups do not divide evenly.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
from parity import randn

import minimix as mm
import minimix.nn as nn
import minimix.nn.functional as F
from minimix import backends
from minimix.nn.squeeze_excite import excite
from minimix.tensor import profile_ops


def _strided(x):
    """The same values as x (N, C, H, W), as a non-contiguous view (channels-last storage)."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def _module_case(make, x_shape, label, no_grad=False, strided=False, train=True):
    """A case that runs a module built by ``make()`` on x of ``x_shape``."""
    def build():
        mm.manual_seed(3)
        module = make().train(train)
        for p in module.parameters():  # float64, and random enough that every tap matters
            p.data = randn(*p.shape, seed=p.numel()).astype(np.float64) + (1.0 if p.ndim == 1 else 0.0)
        x = randn(*x_shape, seed=7)
        return module, [_strided(x) if strided else x], lambda m, x: m(x)
    return dict(build=build, label=label, no_grad=no_grad)


def _function_case(fn, arrays, label, no_grad=False):
    def build():
        return None, [a() if callable(a) else a for a in arrays], lambda m, *xs: fn(*xs)
    return dict(build=build, label=label, no_grad=no_grad)


def _fused(channels, kernel_sizes, stride, act):
    def make():
        conv = nn.MixConv2d(channels, kernel_sizes, stride=stride)
        bn = nn.BatchNormAct2d(channels, act_layer=act, dtype=np.float64)
        for c in conv.convs:
            c.weight.data = c.weight.data.astype(np.float64)
        bn.running_mean[:] = randn(channels, seed=1)
        bn.running_var[:] = 0.5 + randn(channels, seed=2) ** 2
        return nn.MixConvBNAct(conv, bn)
    return make


def _block(block_string, fused=False):
    """A MixNet block (float64, eval mode, random running statistics); ``fused``: after ``nn.fuse``."""
    def make():
        from minimix.models.blockstring import decode_block_string
        from minimix.models.blocks import make_block

        block = make_block(decode_block_string(block_string))
        block.to(np.float64)
        for i, (name, b) in enumerate(block.named_buffers()):
            if name.endswith("running_mean"):
                b[:] = randn(*b.shape, seed=20 + i)
            elif name.endswith("running_var"):
                b[:] = 0.5 + randn(*b.shape, seed=40 + i) ** 2
        return nn.fuse(block) if fused else block.eval()
    return make


_BLOCK_LABEL = "1x1 conv + BN + act (inference)"

# For every fast implementation (op, name): cases (id -> case). The label is the profile label of
# the op the fast implementation runs; the test checks it ran (except where it declines: empty batch).
CASES = {
    ("conv2d", "numba"): {
        "k3-batch1-nonsquare": _function_case(lambda x, w: F.conv2d(x, w, padding=1, groups=5),
                                              [randn(1, 5, 7, 6), randn(5, 1, 3, 3, seed=1)], "Conv2d depthwise"),
        "k5-stride2-odd": _function_case(lambda x, w: F.conv2d(x, w, stride=2, padding=2, groups=6),
                                         [randn(2, 6, 9, 8), randn(6, 1, 5, 5, seed=1)], "Conv2d depthwise"),
        "k3x5-dilation2-strided": _function_case(
            lambda x, w: F.conv2d(x, w, padding=(2, 4), dilation=2, groups=3),
            [_strided(randn(2, 3, 8, 9)), randn(3, 1, 3, 5, seed=1)], "Conv2d depthwise"),
        "empty-batch": _function_case(lambda x, w: F.conv2d(x, w, padding=1, groups=4),
                                      [randn(0, 4, 5, 5), randn(4, 1, 3, 3, seed=1)], None),
        # k >= 5 onto planes of at most 16 pixels: one small matrix per channel (kernels.depthwise_dense)
        "k7-4x4-dense": _function_case(lambda x, w: F.conv2d(x, w, padding=3, groups=5),
                                       [randn(3, 5, 4, 4), randn(5, 1, 7, 7, seed=1)], "Conv2d depthwise"),
        "k5-stride2-3x5-dense-strided": _function_case(lambda x, w: F.conv2d(x, w, stride=2, padding=2, groups=3),
                                                       [_strided(randn(1, 3, 3, 5)), randn(3, 1, 5, 5, seed=1)],
                                                       "Conv2d depthwise"),
    },
    ("conv2d", "pointwise"): {
        "batch1-nonsquare": _function_case(lambda x, w, b: F.conv2d(x, w, b),
                                           [randn(1, 5, 7, 6), randn(3, 5, 1, 1, seed=1), randn(3, seed=2)],
                                           "Conv2d 1x1"),
        "strided": _function_case(lambda x, w: F.conv2d(x, w), [_strided(randn(3, 4, 5, 6)), randn(7, 4, 1, 1)],
                                  "Conv2d 1x1"),
        "1x1-maps": _function_case(lambda x, w: F.conv2d(x, w), [randn(5, 6, 1, 1), randn(2, 6, 1, 1)],
                                   "Conv2d 1x1 on 1x1 maps"),
        # 4x4 planes: the weight gradient's products over 16 images side by side, and a group of 3 left over
        "4x4-19-images": _function_case(lambda x, w: F.conv2d(x, w), [randn(19, 6, 4, 4), randn(5, 6, 1, 1)],
                                        "Conv2d 1x1"),
    },
    ("mixconv2d", "in-place"): {
        "10-over-3-batch1": _module_case(lambda: nn.MixConv2d(10, (3, 5, 7)), (1, 10, 9, 7), "MixedConv2d depthwise"),
        "stride2-exponential": _module_case(lambda: nn.MixConv2d(11, (3, 5, 7, 9), stride=2, split="exponential"),
                                            (2, 11, 9, 10), "MixedConv2d depthwise"),
        "dilation2-strided": _module_case(lambda: nn.MixConv2d(7, (3, 5), dilation=2), (2, 7, 8, 8),
                                          "MixedConv2d depthwise", strided=True),
        "empty-batch": _module_case(lambda: nn.MixConv2d(6, (3, 5)), (0, 6, 5, 5), None),
        "4x4-dense-odd-split": _module_case(lambda: nn.MixConv2d(10, (3, 5, 7, 9)), (2, 10, 4, 4),
                                            "MixedConv2d depthwise"),
    },
    ("grouped_conv2d", "in-place"): {
        "7-to-9-over-2-bias": _module_case(lambda: nn.GroupedConv2d(7, 9, groups=2, bias=True), (2, 7, 5, 6),
                                           "MixedConv2d 1x1"),
        "3-groups-strided": _module_case(lambda: nn.GroupedConv2d(10, 5, groups=3), (1, 10, 4, 3),
                                         "MixedConv2d 1x1", strided=True),
        "2-groups-4x4-18-images": _module_case(lambda: nn.GroupedConv2d(9, 4, groups=2), (18, 9, 4, 4),
                                               "MixedConv2d 1x1"),
    },
    ("mixed_conv2d", "in-place"): {
        "depthwise-dense-pointwise": _function_case(
            lambda x, w1, w2, w3: F.mixed_conv2d(x, [w1, w2, w3], [4, 4, 3]),
            [randn(2, 11, 6, 5), randn(4, 1, 3, 3, seed=1), randn(4, 2, 5, 5, seed=2), randn(3, 3, 1, 1, seed=3)],
            "MixedConv2d depthwise"),
        "stride2-bias": _function_case(
            lambda x, w1, w2, b1, b2: F.mixed_conv2d(x, [w1, w2], [3, 2], stride=2, biases=[b1, b2]),
            [randn(1, 5, 7, 8), randn(3, 1, 3, 3, seed=1), randn(2, 1, 5, 5, seed=2), randn(3, seed=3),
             randn(2, seed=4)], "MixedConv2d depthwise"),
    },
    ("batch_norm", "numba-fused"): {
        "train-batch1": _module_case(lambda: nn.BatchNorm2d(5, dtype=np.float64), (1, 5, 3, 4), "BatchNormAct"),
        "eval-strided": _module_case(lambda: nn.BatchNorm2d(3, dtype=np.float64), (4, 3, 5, 2), "BatchNormAct",
                                     strided=True, train=False),
    },
    ("batch_norm_act", "numba-fused"): {
        "relu-train": _module_case(lambda: nn.BatchNormAct2d(4, act_layer=nn.ReLU, dtype=np.float64), (3, 4, 5, 6),
                                   "BatchNormAct"),
        "silu-eval-batch1": _module_case(lambda: nn.BatchNormAct2d(3, act_layer=nn.SiLU, dtype=np.float64),
                                         (1, 3, 7, 5), "BatchNormAct", train=False),
        "silu-train-strided": _module_case(lambda: nn.BatchNormAct2d(6, act_layer=nn.SiLU, dtype=np.float64),
                                           (2, 6, 3, 3), "BatchNormAct", strided=True),
        "relu-train-planes-17x16": _module_case(
            lambda: nn.BatchNormAct2d(5, act_layer=nn.ReLU, dtype=np.float64), (2, 5, 17, 16), "BatchNormAct"),
        "none-train-planes-9x8": _module_case(
            lambda: nn.BatchNormAct2d(4, act_layer=None, dtype=np.float64), (3, 4, 9, 8), "BatchNormAct"),
        "silu-eval-planes-19x15": _module_case(lambda: nn.BatchNormAct2d(3, act_layer=nn.SiLU, dtype=np.float64),
                                                  (2, 3, 19, 15), "BatchNormAct", train=False),
        "silu-train-planes-19x15": _module_case(lambda: nn.BatchNormAct2d(3, act_layer=nn.SiLU, dtype=np.float64),
                                                   (2, 3, 19, 15), "BatchNormAct"),
    },
    ("excite", "numba"): {
        "batch1-nonsquare": _function_case(excite, [randn(1, 5, 7, 3), randn(1, 5, 1, 1, seed=1)], "Excite"),
        "strided": _function_case(excite, [_strided(randn(3, 4, 5, 6)), randn(3, 4, 1, 1, seed=1)], "Excite"),
    },
    ("adaptive_avg_pool2d", "numba"): {
        "batch1-nonsquare": _function_case(F.adaptive_avg_pool2d, [randn(1, 5, 7, 3)], "GlobalAvgPool"),
        "strided": _function_case(F.adaptive_avg_pool2d, [_strided(randn(2, 3, 4, 5))], "GlobalAvgPool"),
    },
    ("fused_mixconv_bn_act", "numba-epilogue"): {
        "relu-10-over-3": _module_case(_fused(10, (3, 5, 7), 1, nn.ReLU), (2, 10, 8, 7),
                                       "MixedConv2d depthwise + BN + act (inference)", no_grad=True),
        "silu-stride2-batch1": _module_case(_fused(9, (3, 5, 7, 9), 2, nn.SiLU), (1, 9, 9, 10),
                                            "MixedConv2d depthwise + BN + act (inference)", no_grad=True),
        "none-strided": _module_case(_fused(5, (3, 5), 1, None), (3, 5, 6, 6),
                                     "MixedConv2d depthwise + BN + act (inference)", no_grad=True, strided=True),
        "relu-stride2-rows": _module_case(_fused(9, (3, 5, 7), 2, nn.ReLU), (2, 9, 8, 10),  # depthwise_rows
                                          "MixedConv2d depthwise + BN + act (inference)", no_grad=True),
        "silu-4x4-dense": _module_case(_fused(11, (3, 5, 7, 9), 1, nn.SiLU), (2, 11, 4, 4),  # depthwise_dense
                                       "MixedConv2d depthwise + BN + act (inference)", no_grad=True),
    },
    ("mixnet_block", "fused-inference"): {  # the module's parameters are random: the SE gates too
        "ir-se-skip-silu-3-groups-batch1-nonsquare": _module_case(
            _block("r1_k3.5_a1.1.1_p1.1.1_s11_e3_i10_o10_se0.5_sw"), (1, 10, 7, 5), _BLOCK_LABEL, no_grad=True,
            train=False),
        "ir-fused-stride2-relu-strided": _module_case(
            _block("r1_k3.5.7_a1.1_p1.1_s22_e6_i7_o9", fused=True), (3, 7, 9, 8), _BLOCK_LABEL, no_grad=True,
            strided=True, train=False),
        "ds-fused-se-skip": _module_case(_block("r1_k3_a1_p1.1_s11_e1_i6_o6_se0.25_sw", fused=True), (2, 6, 6, 6),
                                         _BLOCK_LABEL, no_grad=True, train=False),
        "empty-batch": _module_case(_block("r1_k3_a1_p1_s11_e6_i4_o4"), (0, 4, 5, 5), None, no_grad=True,
                                    train=False),
        "train-ir-se-skip-3-groups-batch1": _module_case(  # the SE and the projection as one op
            _block("r1_k3.5_a1.1.1_p1.1.1_s11_e3_i10_o10_se0.5_sw"), (1, 10, 7, 5), "Squeeze-excite + MixedConv2d 1x1"),
        "train-ds-se-stride2-strided": _module_case(
            _block("r1_k3.5_a1_p1.1_s22_e1_i6_o8_se0.25"), (3, 6, 9, 8), "Squeeze-excite + MixedConv2d 1x1", strided=True),
        "eval-with-grad-ir-se": _module_case(_block("r1_k3_a1_p1_s11_e6_i5_o7_se0.5_sw"), (2, 5, 4, 6),
                                             "Squeeze-excite + MixedConv2d 1x1", train=False),
    },
}

FAST = [impl for impl in backends.REGISTRY if impl.path == "fast"]


def test_every_fast_implementation_has_cases():
    """Registering a fast implementation without cases here is a test failure, not a silent gap."""
    assert sorted(CASES) == sorted((impl.op, impl.name) for impl in FAST)


@pytest.mark.parametrize("impl", FAST, ids=lambda impl: f"{impl.op}-{impl.name}")
def test_fast_implementation_imports(impl):
    """Numba is a dependency: every fast implementation must be available (None = it failed to import)."""
    assert impl.load() is not None, f"{impl.target} failed to import"


def _run(case, path, pin=None):
    module, arrays, call = case["build"]()
    if module is not None:
        state = module.state_dict()
    tensors = [mm.Tensor(a, requires_grad=not case["no_grad"]) for a in arrays]
    with backends.use_backend(path, **(pin or {})), profile_ops() as ops:
        if case["no_grad"]:
            with mm.no_grad():
                out = call(module, *tensors)
        else:
            out = call(module, *tensors)
            ops["kernels"] = getattr(out._ctx, "kernels", None)  # a conv2d's: which kernels ran
            out.backward(randn(*out.shape, seed=11))
    grads = [t.grad for t in tensors]
    if module is not None:
        grads += [p.grad for p in module.parameters()]
        stats = [b.copy() for _, b in module.named_buffers()]
        module.load_state_dict(state)
    else:
        stats = []
    return out.data, grads, stats, ops


@pytest.mark.parametrize("op, name, case_id", [(op, name, cid) for (op, name), cases in CASES.items()
                                               for cid in cases])
def test_fast_equals_reference(op, name, case_id):
    case = CASES[(op, name)][case_id]
    fast_out, fast_grads, fast_stats, fast_ops = _run(case, "fast", {op: name})
    ref_out, ref_grads, ref_stats, ref_ops = _run(case, "reference")
    if op == "conv2d":  # one Function, different kernels: check which ran
        assert fast_ops["kernels"] is backends.get(op, name) or case["label"] is None
        assert ref_ops["kernels"] is backends.reference(op)
    elif case["label"] is not None:
        assert case["label"] in fast_ops, f"{op}/{name} did not run; ops run: {list(fast_ops)}"
        assert case["label"] not in ref_ops, f"the reference path ran {case['label']}"
    assert fast_out.dtype == ref_out.dtype == np.float64 and fast_out.shape == ref_out.shape
    scale = max(1.0, float(np.abs(ref_out).max())) if ref_out.size else 1.0
    np.testing.assert_allclose(fast_out, ref_out, rtol=1e-10, atol=1e-12 * scale, err_msg="output")
    for i, (a, b) in enumerate(zip(fast_grads, ref_grads)):
        assert (a is None) == (b is None), f"gradient {i}: fast {a is None}, reference {b is None}"
        if a is not None:
            scale = max(1.0, float(np.abs(b).max())) if b.size else 1.0
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12 * scale, err_msg=f"gradient {i}")
    for a, b in zip(fast_stats, ref_stats):  # BatchNorm's running statistics (float32 buffers)
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg="running statistics")


def _float64_mixnet():
    from minimix.models import mixnet_cifar

    mm.manual_seed(0)
    model = mixnet_cifar()
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    return model


def _training_losses(path, steps=3):
    from minimix.optim import SGD, weight_decay_groups

    model = _float64_mixnet()
    opt = SGD(weight_decay_groups(model, 5e-4), lr=0.1, momentum=0.9, nesterov=True)
    rng = np.random.default_rng(0)
    losses = []
    with backends.use_backend(path):
        for _ in range(steps):
            x = mm.Tensor(rng.standard_normal((6, 3, 32, 32)))
            y = rng.integers(0, 10, 6)
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        model.eval()
        with mm.no_grad():
            logits = model(mm.Tensor(rng.standard_normal((2, 3, 32, 32)))).data
    return np.array(losses), logits


@pytest.mark.parametrize("activation", ["silu", "relu", None])
@pytest.mark.parametrize("grads_for", ["se", "all"])
def test_squeeze_excite_pointwise_against_the_reference_ops(activation, grads_for):
    """The fused SE + projection op against the reference ops it stands for (pool, the SE's two 1x1 convs
    with the activation and sigmoid between, excite, grouped 1x1), including the case where only the SE's
    parameters want gradients (then the kernel makes no dL/dh)."""
    from minimix.fast.blocks import SqueezeExcitePointwise

    arrays = [randn(3, 6, 4, 5), randn(2, 6, 1, 1, seed=1), randn(2, seed=2), randn(6, 2, 1, 1, seed=3),
              randn(6, seed=4), randn(4, 3, 1, 1, seed=5), randn(5, 3, 1, 1, seed=6)]
    wants = [grads_for == "all", True, True, True, True, grads_for == "all", grads_for == "all"]
    g = randn(3, 9, 4, 5, seed=7)

    def run(fused):
        h, wr, br, we, be, w1, w2 = ts = [mm.Tensor(a, requires_grad=w) for a, w in zip(arrays, wants)]
        if fused:
            y = SqueezeExcitePointwise.apply(*ts, in_splits=(3, 3), activation=activation)
        else:
            with backends.use_backend("reference"):
                z = F.conv2d(F.adaptive_avg_pool2d(h, 1), wr, br)
                z = {"silu": F.silu, "relu": F.relu, None: lambda t: t}[activation](z)
                y = F.mixed_conv2d(excite(h, F.sigmoid(F.conv2d(z, we, be))), [w1, w2], [3, 3])
        y.backward(g)
        return y.data, [t.grad for t in ts]

    (fast_y, fast_grads), (ref_y, ref_grads) = run(True), run(False)
    np.testing.assert_allclose(fast_y, ref_y, rtol=1e-10, atol=1e-12)
    for i, (a, b) in enumerate(zip(fast_grads, ref_grads)):
        assert (a is None) == (b is None) == (not wants[i]), f"gradient {i}"
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=f"gradient {i}")


def test_mixnet_training_steps_give_the_same_losses_on_both_paths():
    """Three SGD steps of mixnet_cifar in float64 (dropout, BatchNorm statistics, momentum and all):
    the same losses, and the same eval-mode logits afterwards, on both paths."""
    fast_losses, fast_logits = _training_losses("fast")
    ref_losses, ref_logits = _training_losses("reference")
    assert np.all(np.isfinite(fast_losses)) and fast_losses[0] != fast_losses[-1]
    np.testing.assert_allclose(fast_losses, ref_losses, rtol=1e-9)
    np.testing.assert_allclose(fast_logits, ref_logits, rtol=1e-7, atol=1e-9)


def test_reference_path_imports_no_numba():
    """MINIMIX_BACKEND=reference: a MixNet training step and fused inference without importing Numba."""
    code = """
import sys
import numpy as np
import minimix as mm
import minimix.nn.functional as F
from minimix.models import mixnet_cifar
assert mm.backends.current_backend() == "reference"
model = mixnet_cifar()
x = mm.Tensor(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32))
F.cross_entropy(model(x), np.array([1, 2])).backward()
with mm.no_grad():
    mm.nn.fuse(model)(x)
loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'numba' or m.startswith('minimix.fast'))
print(loaded)
assert not loaded, loaded
"""
    env = dict(os.environ, MINIMIX_BACKEND="reference")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_use_backend_nests_and_restores():
    assert backends.current_backend() == "fast"
    with mm.use_backend("reference"):
        assert backends.current_backend() == "reference"
        assert backends.implementations("batch_norm", np.float32) == []
        with mm.use_backend("fast", conv2d="naive"):
            assert backends.current_backend() == "fast" and backends.pinned("conv2d") == "naive"
            assert backends.implementations("conv2d", np.float32) == []  # pinned to a reference
        assert backends.current_backend() == "reference" and backends.pinned("conv2d") is None
    assert backends.current_backend() == "fast"
    assert len(backends.implementations("conv2d", np.float64)) == 2
    assert backends.implementations("batch_norm", np.float16) == []  # the Numba kernels: float32/64 only


def test_use_backend_refuses_unknown_names():
    with pytest.raises(ValueError, match="path must be one of"):
        with mm.use_backend("turbo"):
            pass
    with pytest.raises(ValueError, match="conv2d has no implementation 'fft'"):
        with mm.use_backend(conv2d="fft"):
            pass
    with pytest.raises(ValueError, match="no op 'conv3d'"):
        with mm.use_backend(conv3d="naive"):
            pass


def test_environment_variable_chooses_the_path():
    code = "import minimix; print(minimix.backends.current_backend())"
    for value, expected in (("reference", "reference"), ("FAST", "fast"), ("", "fast")):
        out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, MINIMIX_BACKEND=value),
                             capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == expected, out.stderr
    bad = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, MINIMIX_BACKEND="gpu"),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "MINIMIX_BACKEND must be one of ('fast', 'reference'), got 'gpu'" in bad.stderr


def test_table_lists_every_implementation():
    text = backends.table()
    for impl in backends.REGISTRY:
        assert impl.op in text and impl.name in text and impl.replaces in text
    assert "current path: fast" in text


def test_reference_forward_is_reachable():
    """``fast_path`` keeps the textbook code callable as ``.reference``."""
    assert nn.MixConv2d.forward.reference.__name__ == "forward"
    assert "split" in nn.MixConv2d.forward.reference.__code__.co_names
