"""minimix.save / minimix.load: .npz and .safetensors round trips, refusals, atomic writes, no pickling."""
import os
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
from conftest import require
from parity import torch

import minimix as mm
from minimix import nn



@pytest.fixture(params=[".npz", ".safetensors"])
def suffix(request):
    if request.param == ".safetensors":
        require("safetensors.numpy", "the .safetensors format")
    return request.param


def small_cnn():
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


def test_round_trip_keeps_keys_order_shapes_dtypes_and_values(tmp_path, suffix):
    rng = np.random.default_rng(0)
    state = OrderedDict([
        ("z.last.first", rng.standard_normal((2, 3)).astype(np.float32)),  # not alphabetical: order must survive
        ("a", rng.standard_normal(5)),                                     # float64
        ("half", rng.standard_normal((3, 1)).astype(np.float16)),
        ("counter", np.array(7, np.int64)),                                # 0-d, like num_batches_tracked
        ("labels", np.arange(4, dtype=np.int32)),
        ("mask", np.array([True, False])),
        ("empty", np.zeros((0, 3), np.float32)),
        ("strided", rng.standard_normal((4, 6))[::2, ::3]),                # a non-contiguous view
        ("file", np.ones(1, np.uint8)),                                    # np.savez's own argument names
        ("allow_pickle", np.ones(1, np.uint8)),
        ("tensor", mm.Tensor(np.ones((2, 2), np.float32), requires_grad=True)),
        ("scalar", np.float32(2.5)),
    ])
    path = tmp_path / f"state{suffix}"
    assert mm.save(state, path) is None
    loaded = mm.load(path)
    assert list(loaded) == list(state)
    for key, value in state.items():
        expected = value.data if isinstance(value, mm.Tensor) else np.asarray(value)
        assert type(loaded[key]) is np.ndarray, key
        assert loaded[key].dtype == expected.dtype and loaded[key].shape == expected.shape, key
        np.testing.assert_array_equal(loaded[key], expected, err_msg=key)
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "no temporary file is left behind"


def test_npz_is_plain_numpy_and_safetensors_is_readable_by_torch(tmp_path, suffix):
    """The files are the standard formats: np.load reads the .npz, safetensors' torch API the other."""
    state = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.array(3, np.int64)}
    path = tmp_path / f"m{suffix}"
    mm.save(state, str(path))  # a str path works too
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            assert npz.files == ["w", "n"]
            np.testing.assert_array_equal(npz["w"], state["w"])
    else:
        from safetensors.torch import load_file

        theirs = load_file(str(path))
        assert theirs["w"].dtype == torch.float32 and theirs["n"].dtype == torch.int64
        np.testing.assert_array_equal(theirs["w"].numpy(), state["w"])


def test_a_fresh_model_loaded_from_disk_gives_identical_outputs(tmp_path, suffix):
    mm.manual_seed(0)
    model = small_cnn()
    x = mm.Tensor(np.random.default_rng(1).standard_normal((2, 3, 7, 5)).astype(np.float32))
    model(x)  # training mode: BatchNorm's running statistics (buffers) move away from 0 and 1
    model.eval()
    expected = model(x).data
    path = tmp_path / f"model{suffix}"
    mm.save(model.state_dict(), path)

    mm.manual_seed(123)
    fresh = small_cnn().eval()
    assert not np.array_equal(fresh(x).data, expected)
    fresh.load_state_dict(mm.load(path))
    np.testing.assert_array_equal(fresh(x).data, expected)
    for (key, a), b in zip(model.state_dict().items(), mm.load(path).values()):
        assert a.dtype == b.dtype, key


def test_a_torch_model_loads_what_minimix_saved(tmp_path, suffix):
    """The saved keys and values are torch's: a torch twin loads them and computes the same outputs."""
    mm.manual_seed(0)
    model = small_cnn().eval()
    twin = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2, padding=1), torch.nn.BatchNorm2d(4),
                               torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(4, 3)).eval()
    path = tmp_path / f"model{suffix}"
    mm.save(model.state_dict(), path)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in mm.load(path).items()})
    x = np.random.default_rng(2).standard_normal((2, 3, 7, 5)).astype(np.float32)
    np.testing.assert_allclose(model(mm.Tensor(x)).data, twin(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["model.pt", "model.pth", "model", "model.npy", "model.json"])
def test_other_suffixes_are_refused(tmp_path, name):
    with pytest.raises(ValueError, match="cannot tell the file type .* expected .npz or .safetensors"):
        mm.save({"w": np.ones(2)}, tmp_path / name)
    with pytest.raises(ValueError, match="expected .npz or .safetensors"):
        mm.load(tmp_path / name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("state, message", [
    ({"w": np.ones(2), "opt": {"state": {}}}, "the value of key 'opt' is a dict; .*training checkpoint"),
    ({"lr": 0.1}, "the value of key 'lr' is a float; expected a NumPy array or a Tensor"),
    ({"ids": [1, 2]}, "the value of key 'ids' is a list"),
    ({0: np.ones(2)}, "keys must be str, got 0"),
    ({"o": np.array([object()])}, "the value of key 'o' has dtype object"),
    ([("w", np.ones(2))], "state_dict must be a dict"),
], ids=["nested dict", "python float", "list", "int key", "object array", "not a dict"])
def test_non_array_values_are_refused_naming_the_key(tmp_path, state, message):
    path = tmp_path / "x.npz"
    with pytest.raises(TypeError, match=message):
        mm.save(state, path)
    assert not path.exists()


def test_an_optimizer_state_dict_is_refused(tmp_path):
    params = [nn.Parameter(np.ones(2))]
    params[0].grad = np.ones(2)
    opt = mm.optim.Adam(params)
    opt.step()
    with pytest.raises(TypeError, match="key 'state' is a dict"):
        mm.save(opt.state_dict(), tmp_path / "opt.npz")


def test_pickled_npz_is_never_loaded(tmp_path):
    """An .npz with an object array (which np.load would unpickle if allowed) is refused."""
    path = tmp_path / "evil.npz"
    np.savez(path, payload=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="evil.npz' is not a readable .npz of arrays .*allow_pickle"):
        mm.load(path)


def test_damaged_and_missing_files(tmp_path, suffix):
    path = tmp_path / f"m{suffix}"
    mm.save({"w": np.arange(100, dtype=np.float64)}, path)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match=f"m{suffix}' is not a readable"):
        mm.load(path)
    with pytest.raises(FileNotFoundError, match="no file"):
        mm.load(tmp_path / f"missing{suffix}")


def test_an_interrupted_save_leaves_the_old_file_intact(tmp_path, monkeypatch, suffix):
    """A crash while writing (here: os.replace never happens) keeps the previous file and no temporary."""
    path = tmp_path / f"m{suffix}"
    mm.save({"w": np.ones(3)}, path)
    before = path.read_bytes()

    def crash(*args):
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        mm.save({"w": np.zeros(3), "more": np.ones(1000)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    np.testing.assert_array_equal(mm.load(path)["w"], np.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_npz_members_are_npy_files(tmp_path):
    mm.save({"a.b": np.ones(2)}, tmp_path / "m.npz")
    with zipfile.ZipFile(tmp_path / "m.npz") as archive:
        assert archive.namelist() == ["a.b.npy"]


def test_safetensors_written_elsewhere_load_in_file_order(tmp_path):
    st = require("safetensors.numpy", "the .safetensors format")
    path = tmp_path / "other.safetensors"
    st.save_file({"b": np.ones(2, np.float32), "a": np.zeros(3, np.float64)}, str(path))
    loaded = mm.load(path)
    assert sorted(loaded) == ["a", "b"] and loaded["a"].dtype == np.float64
