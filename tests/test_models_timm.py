"""timm interop: reproduce timm's logits and BatchNorm statistics from the reference npz; load errors; files.

The reference npz files are in the shared folder (``../shared/reference``, or ``$MINIMIX_SHARED/reference``):
missing, the tests that read them skip locally and fail under CI (tests/conftest.py)."""
import numpy as np
import pytest
from conftest import require, require_shared

import minimix as mm
from minimix.models import (
    StateDictMismatchError,
    load_timm_checkpoint,
    load_timm_state_dict,
    mixnet_m,
    mixnet_s,
    read_checkpoint,
    timm_key_map,
    to_timm_state_dict,
)

REF = "timm_mixnet_{}_w0.25_c10.npz"  # in the shared reference folder
BUILDERS = {"s": mixnet_s, "m": mixnet_m}


def _reference(name):
    path = require_shared("reference", REF.format(name), what="timm reference outputs")
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _state(ref):
    return {k[len("state."):]: v for k, v in ref.items() if k.startswith("state.")}


def _model(name, ref):
    model = BUILDERS[name](num_classes=10, width_multiplier=0.25, dropout=0.0)  # timm's reference ran without dropout
    return load_timm_state_dict(model, _state(ref))


@pytest.mark.parametrize("name", ["s", "m"])
def test_reference_logits_eval_and_train(name):
    ref = _reference(name)
    model = _model(name, ref)
    x = mm.Tensor(ref["input"])
    model.eval()
    with mm.no_grad():
        eval_logits = model(x).data
    assert eval_logits.dtype == np.float32
    np.testing.assert_allclose(eval_logits, ref["logits_eval"], rtol=0, atol=1e-4)

    model.train()
    with mm.no_grad():
        train_logits = model(x).data
    np.testing.assert_allclose(train_logits, ref["logits_train"], rtol=0, atol=1e-4)

    after = to_timm_state_dict(model)
    stats = [k for k in ref if k.startswith("after_train_forward.")]
    assert len(stats) == 2 * sum(1 for k in after if k.endswith("running_mean"))
    for key in stats:
        timm_key = key[len("after_train_forward."):]
        np.testing.assert_allclose(after[timm_key], ref[key], rtol=1e-5, atol=1e-5, err_msg=timm_key)


@pytest.mark.parametrize("name", ["s", "m"])
def test_state_round_trip(name):
    ref = _reference(name)
    model = _model(name, ref)
    out = to_timm_state_dict(model)
    state = _state(ref)
    assert set(out) - set(state) == {k for k in out if k.endswith("num_batches_tracked")}
    for k, v in state.items():
        np.testing.assert_array_equal(out[k], v, err_msg=k)
    # and back into a fresh model
    fresh = load_timm_state_dict(BUILDERS[name](num_classes=10, width_multiplier=0.25), out)
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=k)


def test_key_map_rule():
    names = timm_key_map(mixnet_s(num_classes=10, width_multiplier=0.25))
    assert names["blocks.1.0.conv_pw.convs.1.weight"] == "blocks.1.0.conv_pw.1.weight"  # two groups
    assert names["blocks.2.0.conv_pw.convs.0.weight"] == "blocks.2.0.conv_pw.weight"    # one group
    assert names["blocks.2.0.conv_dw.convs.2.weight"] == "blocks.2.0.conv_dw.2.weight"  # three kernels
    assert names["blocks.0.0.conv_dw.convs.0.weight"] == "blocks.0.0.conv_dw.weight"
    assert names["blocks.2.0.se.conv_reduce.bias"] == "blocks.2.0.se.conv_reduce.bias"
    assert names["bn2.running_var"] == "bn2.running_var"
    assert len(set(names.values())) == len(names)


def test_load_errors_list_every_problem():
    ref = _reference("s")
    state = _state(ref)
    del state["conv_stem.weight"], state["blocks.2.0.se.conv_reduce.bias"]
    state["classifier.weight"] = np.zeros((11, 1536), np.float32)
    state["blocks.1.0.conv_dw.0.weight"] = np.zeros((48, 1, 3, 3), np.float32)  # timm has one kernel here
    state["head.fc.weight"] = np.zeros(3, np.float32)
    state["bn1.num_batches_tracked"] = np.array(7)  # a known key: neither missing nor unexpected
    model = mixnet_s(num_classes=10, width_multiplier=0.25)
    before = model.state_dict()
    with pytest.raises(StateDictMismatchError) as info:
        load_timm_state_dict(model, state)
    err = info.value
    assert isinstance(err, ValueError)
    assert sorted(err.missing) == ["blocks.2.0.se.conv_reduce.bias", "conv_stem.weight"]
    assert sorted(err.unexpected) == ["blocks.1.0.conv_dw.0.weight", "head.fc.weight"]
    assert len(err.mismatched) == 1 and "classifier.weight" in err.mismatched[0]
    message = str(err)
    for key in ["conv_stem.weight", "blocks.2.0.se.conv_reduce.bias", "head.fc.weight",
                "blocks.1.0.conv_dw.0.weight", "(11, 1536)", "(10, 1536)"]:
        assert key in message
    for k, v in model.state_dict().items():  # nothing was half-loaded
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_load_non_strict_still_rejects_shapes():
    state = _state(_reference("s"))
    state.pop("classifier.bias")
    state["extra"] = np.zeros(1)
    model = load_timm_state_dict(mixnet_s(num_classes=10, width_multiplier=0.25), state, strict=False)
    np.testing.assert_array_equal(model.conv_stem.weight.data, state["conv_stem.weight"])
    state["bn2.bias"] = np.zeros(5, np.float32)
    with pytest.raises(StateDictMismatchError, match="bn2.bias"):
        load_timm_state_dict(mixnet_s(num_classes=10, width_multiplier=0.25), state, strict=False)


def test_checkpoint_files(tmp_path):
    ref = _reference("s")
    state = _state(ref)
    safetensors_numpy = require("safetensors.numpy", "timm checkpoints in .safetensors files (the [test] extra)")
    path = tmp_path / "mixnet.safetensors"
    safetensors_numpy.save_file(state, str(path))
    model = load_timm_checkpoint(mixnet_s(num_classes=10, width_multiplier=0.25), path)
    np.testing.assert_array_equal(to_timm_state_dict(model)["classifier.weight"], state["classifier.weight"])

    torch = require("torch", "timm checkpoints in .pth files")
    pth = tmp_path / "mixnet.pth"
    torch.save({"state_dict": {k: torch.from_numpy(v) for k, v in state.items()}}, str(pth))
    model = load_timm_checkpoint(mixnet_s(num_classes=10, width_multiplier=0.25), pth)
    np.testing.assert_array_equal(to_timm_state_dict(model)["bn2.running_var"], state["bn2.running_var"])
    # tensors can also be passed directly
    load_timm_state_dict(mixnet_s(num_classes=10, width_multiplier=0.25), torch.load(str(pth))["state_dict"])

    npz = tmp_path / "mixnet.npz"
    np.savez(npz, **state)
    assert set(read_checkpoint(npz)) == set(state)

    unknown = tmp_path / "x.ckpt"
    unknown.write_bytes(b"")
    with pytest.raises(ValueError, match=r"\.ckpt"):
        read_checkpoint(unknown)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        read_checkpoint(tmp_path / "missing.pth")


def test_num_batches_tracked_is_exchanged_with_torch():
    """BatchNorm's counter: loaded from a torch/timm state dict, written back as int64 (torch loads it
    strictly); a state dict without counters (older files, the reference npz) loads and leaves them."""
    torch = require("torch", "the torch mirror of MixNet")
    from minimix.models import MIXNET_S
    from minimix.models.torch_mirror import torch_mixnet

    ref = torch_mixnet(table=MIXNET_S, width=0.25, stem=8, stem_stride=2, first_downsample_stride=None,
                       head=1536, num_classes=10).train()
    with torch.no_grad():
        for _ in range(3):
            ref(torch.randn(2, 3, 32, 32))
    theirs = ref.state_dict()
    counters = [k for k in theirs if k.endswith("num_batches_tracked")]
    assert counters and all(int(theirs[k]) == 3 for k in counters)
    model = load_timm_state_dict(mixnet_s(num_classes=10, width_multiplier=0.25), theirs)
    out = to_timm_state_dict(model)
    assert list(out) == list(theirs)
    for k in counters:
        assert out[k].dtype == np.int64 and int(out[k]) == 3, k
    for k, v in theirs.items():
        np.testing.assert_array_equal(out[k], v.numpy(), err_msg=k)
    ref.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in out.items()}, strict=True)

    without = {k: v for k, v in theirs.items() if k not in counters}
    fresh = load_timm_state_dict(mixnet_s(num_classes=10, width_multiplier=0.25), without)  # strict
    assert all(int(to_timm_state_dict(fresh)[k]) == 0 for k in counters)
