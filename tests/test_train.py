"""Training loop, checkpoints and exact resume (minimix.training).

The models are tiny MLPs on small synthetic images whose class is decided by their colour, so a
few steps of training visibly reduce the loss and every test runs in about a second.
"""
import json

import numpy as np
import pytest

import minimix
from minimix import nn
from minimix.training import (CheckpointError, TrainConfig, Trainer, confusion_matrix, load_checkpoint,
                              per_class_accuracy, read_log, resolve_checkpoint, save_checkpoint, write_log)


# -- checkpoint files -------------------------------------------------------------------------------
def _state(epoch=1, scale=1.0):
    rng = np.random.default_rng(epoch)
    return {
        "epoch": epoch,
        "model": {"fc.weight": rng.standard_normal((3, 4)).astype(np.float32) * scale,
                  "bn.running_var": np.ones(3, np.float32)},
        "optimizer": {"state": {0: {"momentum_buffer": rng.standard_normal((3, 4))}, 2: {}},
                      "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0, 1]}]},
        "rng": {"minimix": minimix.random.get_state()},
        "history": [{"epoch": 1, "test_acc": 0.5}],
        "scalar": np.float64(0.25),
    }


def _assert_same_state(loaded, state):
    assert loaded["epoch"] == state["epoch"]
    for k, v in state["model"].items():
        assert loaded["model"][k].dtype == v.dtype
        np.testing.assert_array_equal(loaded["model"][k], v)
    np.testing.assert_array_equal(loaded["optimizer"]["state"][0]["momentum_buffer"],
                                  state["optimizer"]["state"][0]["momentum_buffer"])
    assert loaded["optimizer"]["state"][2] == {}
    assert loaded["optimizer"]["param_groups"][0]["betas"] == [0.9, 0.999]
    assert loaded["rng"]["minimix"] == state["rng"]["minimix"]
    assert loaded["history"] == state["history"] and loaded["scalar"] == 0.25


def test_checkpoint_round_trip_by_dir_json_and_npz(tmp_path):
    state = _state()
    meta = save_checkpoint(tmp_path, state, names=("last", "best"))
    assert meta == tmp_path / "last.json" and (tmp_path / "best.json").is_file()
    record = json.loads(meta.read_text())
    assert (tmp_path / record["data"]).stat().st_size == record["data_bytes"]
    for path in (tmp_path, meta, tmp_path / "best.json", tmp_path / record["data"]):
        _assert_same_state(load_checkpoint(path), state)


def test_old_data_files_are_removed_but_best_is_kept(tmp_path):
    save_checkpoint(tmp_path, _state(1), names=("last", "best"))
    save_checkpoint(tmp_path, _state(2))
    save_checkpoint(tmp_path, _state(3))
    assert len(list(tmp_path.glob("*.npz"))) == 2  # last (epoch 3) and best (epoch 1)
    assert load_checkpoint(tmp_path / "best.json")["epoch"] == 1
    assert load_checkpoint(tmp_path)["epoch"] == 3
    assert not list(tmp_path.glob(".*tmp"))


def test_truncated_data_file_names_the_file(tmp_path):
    meta = save_checkpoint(tmp_path, _state())
    data = tmp_path / json.loads(meta.read_text())["data"]
    data.write_bytes(data.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=f"{data.name}.*truncated"):
        load_checkpoint(tmp_path)


def test_corrupted_data_file_fails_its_checksum(tmp_path):
    meta = save_checkpoint(tmp_path, _state())
    data = tmp_path / json.loads(meta.read_text())["data"]
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=f"{data.name}.*SHA-256"):
        load_checkpoint(tmp_path)


def test_corrupted_or_missing_metadata_names_the_file(tmp_path):
    meta = save_checkpoint(tmp_path, _state())
    text = meta.read_text()
    meta.write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match="last.json.*not valid JSON"):
        load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty.*last.json"):
        load_checkpoint(tmp_path / "empty")


def test_missing_data_file_names_it(tmp_path):
    meta = save_checkpoint(tmp_path, _state())
    data = tmp_path / json.loads(meta.read_text())["data"]
    data.unlink()
    with pytest.raises(CheckpointError, match=f"{data.name}.*does not exist"):
        load_checkpoint(meta)


class Crash(Exception):
    pass


@pytest.mark.parametrize("crash_in", [".npz", ".json"])
def test_crash_in_the_middle_of_a_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, crash_in):
    """The write of the new .npz or .json dies after writing some bytes (disk full, kill...)."""
    import minimix.training.checkpoint as ckpt

    first = _state(1)
    save_checkpoint(tmp_path, first)
    real_write = ckpt.atomic_write

    def crashing_write(path, write):
        if not str(path).endswith(crash_in):
            return real_write(path, write)

        def half_then_crash(f):
            f.write(b"PK\x03\x04 partial")
            raise Crash(f"simulated crash while writing {path}")

        return real_write(path, half_then_crash)

    monkeypatch.setattr(ckpt, "atomic_write", crashing_write)
    with pytest.raises(Crash):
        save_checkpoint(tmp_path, _state(2, scale=5.0))
    monkeypatch.undo()
    _assert_same_state(load_checkpoint(tmp_path), first)
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was removed
    save_checkpoint(tmp_path, _state(3))
    assert load_checkpoint(tmp_path)["epoch"] == 3
    assert len(list(tmp_path.glob("*.npz"))) == 1  # a good save removes any orphan data file


def test_resolve_checkpoint_rejects_other_files(tmp_path):
    other = tmp_path / "weights.txt"
    other.write_text("x")
    with pytest.raises(CheckpointError, match="weights.txt"):
        resolve_checkpoint(other)
    stray = tmp_path / "stray.npz"
    np.savez(stray, a=np.zeros(1))
    with pytest.raises(CheckpointError, match="stray.npz.*names this data file"):
        resolve_checkpoint(stray)


# -- metrics -----------------------------------------------------------------------------------------
def test_confusion_matrix_and_per_class_accuracy():
    labels = np.array([0, 0, 1, 1, 1, 2])
    preds = np.array([0, 1, 1, 1, 0, 2])
    m = confusion_matrix(preds, labels, 4)
    np.testing.assert_array_equal(m[:3, :3], [[1, 1, 0], [1, 2, 0], [0, 0, 1]])
    assert m.sum() == 6 and m[3].sum() == 0
    acc = per_class_accuracy(m)
    np.testing.assert_allclose(acc[:3], [0.5, 2 / 3, 1.0])
    assert np.isnan(acc[3])


def test_metrics_log_round_trip(tmp_path):
    history = [{"epoch": e, "lr": 0.1 / e, "train_loss": 2.0 / e, "train_acc": 0.1 * e, "test_loss": 1.5 / e,
                "test_acc": 0.2 * e, "seconds": 3.0, "images_per_s": 100.0} for e in (1, 2)]
    write_log(tmp_path / "metrics.csv", history)
    log = read_log(tmp_path / "metrics.csv")
    np.testing.assert_array_equal(log["epoch"], [1, 2])
    np.testing.assert_allclose(log["test_acc"], [0.2, 0.4])
    (tmp_path / "bad.csv").write_text("epoch,loss\n1,2\n")
    with pytest.raises(ValueError, match="bad.csv.*lacks"):
        read_log(tmp_path / "bad.csv")


# -- the training loop ----------------------------------------------------------------------------------
def colour_dataset(n, seed=0, classes=3):
    """uint8 images (n, 32, 32, 3) of noise whose class c brightens colour channel c: learnable by an MLP
    from the first steps, and unaffected by crops and flips."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n).astype(np.int64)
    images = rng.integers(0, 140, (n, 32, 32, 3))
    images[np.arange(n), :, :, labels] += 100
    return images.astype(np.uint8), labels


def mlp(classes=3):
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 16), nn.ReLU(), nn.Linear(16, classes))


def small_convnet(classes=3):
    """Conv + BatchNorm (buffers) + Dropout (random masks): all the state a resume must restore."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=4, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Dropout(0.3), nn.Linear(4 * 8 * 8, classes))


def small_config(**overrides):
    return TrainConfig(**{"epochs": 2, "batch_size": 32, "lr": 0.05, "warmup_epochs": 0.5,
                          "eval_batch_size": 50, **overrides})


def make_trainer(build, config, run_dir=None, seed=0, on_step=None, train_size=96, test_size=40):
    minimix.manual_seed(seed)
    model = build()
    return Trainer(model, colour_dataset(train_size, seed=1), colour_dataset(test_size, seed=2), config,
                   run_dir=run_dir, progress=False, log=lambda line: None, on_step=on_step)


def test_training_reduces_the_loss():
    losses = []
    trainer = make_trainer(mlp, small_config(epochs=4, lr=0.02), on_step=lambda e, s, loss: losses.append(loss),
                           train_size=256)
    history = trainer.fit()
    assert len(losses) == 4 * 8 and len(history) == 4
    assert np.mean(losses[-4:]) < 0.7 * np.mean(losses[:2]), losses
    assert history[-1]["test_acc"] > 0.9  # 3 classes: chance is 1/3
    assert trainer.scheduler.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)  # cosine ends at 0


def test_fit_writes_last_best_and_the_metrics_log(tmp_path):
    trainer = make_trainer(mlp, small_config(epochs=3), run_dir=tmp_path)
    history = trainer.fit()
    last, best = load_checkpoint(tmp_path / "last.json"), load_checkpoint(tmp_path / "best.json")
    assert last["epoch"] == 3 and last["history"] == history
    best_epoch = max(history, key=lambda h: h["test_acc"])["epoch"]
    assert best["epoch"] == best_epoch  # the first epoch that reached the best test accuracy
    log = read_log(tmp_path / "metrics.csv")
    np.testing.assert_array_equal(log["epoch"], [1, 2, 3])
    np.testing.assert_allclose(log["train_loss"], [h["train_loss"] for h in history])
    assert len(list(tmp_path.glob("*.npz"))) == (1 if best_epoch == 3 else 2)


def test_resume_continues_bit_for_bit(tmp_path):
    """Train 2 epochs straight vs 1 epoch, crash, resume: identical per-step losses and final state."""
    straight_losses = []
    straight = make_trainer(small_convnet, small_config(), run_dir=tmp_path / "straight",
                            on_step=lambda e, s, loss: straight_losses.append(loss))
    straight.fit()

    class Crash(Exception):
        pass

    losses = []

    def crash_in_second_epoch(epoch, step, loss):
        if epoch == 1:
            raise Crash  # after one optimisation step that no checkpoint holds
        losses.append(loss)

    interrupted = make_trainer(small_convnet, small_config(), run_dir=tmp_path / "run",
                               on_step=crash_in_second_epoch)
    with pytest.raises(Crash):
        interrupted.fit()
    assert load_checkpoint(tmp_path / "run")["epoch"] == 1

    # a fresh process: other initial weights and random state, all replaced by the checkpoint's
    resumed = make_trainer(small_convnet, small_config(), run_dir=tmp_path / "run", seed=123,
                           on_step=lambda e, s, loss: losses.append(loss))
    resumed.resume(tmp_path / "run")
    assert resumed.epoch == 1
    resumed.fit()

    assert len(losses) == len(straight_losses) == 6
    assert losses == straight_losses  # exactly equal floats
    for name, value in straight.model.state_dict().items():
        np.testing.assert_array_equal(resumed.model.state_dict()[name], value, err_msg=name)
    for index, buffers in straight.optimizer.state_dict()["state"].items():
        for key, value in buffers.items():
            np.testing.assert_array_equal(resumed.optimizer.state_dict()["state"][index][key], value)
    assert minimix.random.get_state() is not None
    timing = ("seconds", "images_per_s")
    strip = [{k: v for k, v in h.items() if k not in timing} for h in straight.history]
    assert [{k: v for k, v in h.items() if k not in timing} for h in resumed.history] == strip


def test_resume_refuses_a_different_recipe(tmp_path):
    make_trainer(mlp, small_config(epochs=1), run_dir=tmp_path).fit()
    other = make_trainer(mlp, small_config(epochs=1, lr=0.1))
    with pytest.raises(ValueError, match="lr: checkpoint 0.05 vs now 0.1"):
        other.resume(tmp_path)


def test_evaluate_with_flip_tta_averages_image_and_mirror_logits():
    from minimix.data import DataLoader
    from minimix.training import evaluate

    minimix.manual_seed(0)
    model = mlp()
    images, labels = colour_dataset(30)
    loader = DataLoader(images, labels, batch_size=7, shuffle=False)
    x = np.concatenate([xb for xb, _ in loader])
    with minimix.no_grad():
        plain = model(minimix.Tensor(x)).data
        mirrored = model(minimix.Tensor(np.ascontiguousarray(x[..., ::-1]))).data
    result = evaluate(model, loader)
    tta = evaluate(model, loader, tta=True)
    assert model.training  # evaluate restores the mode it found
    np.testing.assert_array_equal(result["predictions"], plain.argmax(1))
    np.testing.assert_array_equal(tta["predictions"], (plain + mirrored).argmax(1))
    assert result["acc"] == pytest.approx((plain.argmax(1) == labels).mean())
    assert not np.array_equal(plain.argmax(1), (plain + mirrored).argmax(1))  # the TTA check can fail


def test_non_finite_loss_stops_training_with_a_clear_error():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = mlp()

        def forward(self, x):
            return self.inner(x) * float("nan")

    trainer = make_trainer(Broken, small_config())
    with pytest.raises(FloatingPointError, match="loss is nan at epoch 1, step 1"):
        trainer.fit()
