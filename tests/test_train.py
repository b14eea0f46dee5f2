"""Training loop, checkpoints and exact resume (minimix.training).

The models are tiny MLPs on small synthetic images whose class is decided by their colour, so a
few steps of training visibly reduce the loss and every test runs in about a second.
"""
import json
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import rewrite_checkpoint_arrays

from minimix.training.metrics import PHASE_COLUMNS

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


def make_trainer(build, config, run_dir=None, seed=0, on_step=None, train_size=96, test_size=40, **options):
    minimix.manual_seed(seed)
    model = build()
    return Trainer(model, colour_dataset(train_size, seed=1), colour_dataset(test_size, seed=2), config,
                   run_dir=run_dir, progress=False, log=lambda line: None, on_step=on_step, **options)


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


def test_each_epoch_records_where_its_time_went(tmp_path):
    """The epoch summary and the history split the epoch's time into phases: the steps, waiting for
    data, the test-set evaluation and checkpoint writes (mid-epoch ones in the history; the summary
    line adds the end-of-epoch write)."""
    lines = []
    trainer = make_trainer(mlp, small_config(epochs=2), run_dir=tmp_path, checkpoint_every=0)
    trainer.log = lines.append
    history = trainer.fit()
    for record in history:
        assert all(record[key] >= 0 for key in PHASE_COLUMNS), record
        assert record["checkpoint_seconds"] > 0  # checkpoint_every=0: a write after every step but the last
        parts = record["step_seconds"] + record["data_seconds"] + record["checkpoint_seconds"]
        assert parts == pytest.approx(record["seconds"], rel=1e-9)
    assert all("[steps" in line and "data" in line and "test" in line and "checkpoints" in line for line in lines)
    log = read_log(tmp_path / "metrics.csv")
    np.testing.assert_allclose(log["eval_seconds"], [h["eval_seconds"] for h in history])


def test_a_log_without_phase_columns_still_reads(tmp_path):
    (tmp_path / "old.csv").write_text("epoch,lr,train_loss,train_acc,test_loss,test_acc,seconds,images_per_s\n"
                                      "1,0.1,2.0,0.1,1.9,0.2,3.0,100.0\n")
    log = read_log(tmp_path / "old.csv")
    assert log["test_acc"].tolist() == [0.2] and not any(c in log for c in PHASE_COLUMNS)


def test_time_to_accuracy_and_the_run_description():
    """Three epochs of 100 s (+ 10 s of testing each) at 50 images/s, test accuracy 0.5, 0.82, 0.86: 80% is
    reached after epoch 2 (220 s), 85% after epoch 3 (330 s), 90% never; an old log counts no test time."""
    from minimix.training.metrics import describe_run, time_to_accuracy

    log = {"epoch": np.array([1.0, 2, 3]), "test_acc": np.array([0.5, 0.82, 0.86]),
           "seconds": np.full(3, 100.0), "images_per_s": np.full(3, 50.0), "eval_seconds": np.full(3, 10.0)}
    assert time_to_accuracy(log, 0.80) == 220 and time_to_accuracy(log, 0.85) == 330
    assert time_to_accuracy(log, 0.90) is None
    text = describe_run(log, thresholds=(0.80, 0.90))
    assert "3 epochs; test accuracy 86.00% after the last" in text and "300 s (5.0 min) at 50 images/s" in text
    assert "plus 30 s of test-set evaluation: 5.5 min" in text
    assert "time to 80% test accuracy: 220 s (3.7 min)" in text and "time to 90% test accuracy: not reached" in text
    del log["eval_seconds"]
    assert time_to_accuracy(log, 0.80) == 200 and "(test-set evaluation not recorded)" in describe_run(log)


def _assert_same_weights_and_optimizer(resumed, straight):
    """Every weight, buffer and optimizer state array of the resumed run equals the straight run's exactly."""
    for name, value in straight.model.state_dict().items():
        np.testing.assert_array_equal(resumed.model.state_dict()[name], value, err_msg=name)
    for index, buffers in straight.optimizer.state_dict()["state"].items():
        for key, value in buffers.items():
            np.testing.assert_array_equal(resumed.optimizer.state_dict()["state"][index][key], value)


def _assert_same_history_but_timing(resumed, straight):
    """The per-epoch metrics are equal except the timings (wall clock differs between the runs)."""
    timing = ("seconds", "images_per_s") + PHASE_COLUMNS
    strip = [{k: v for k, v in h.items() if k not in timing} for h in straight.history]
    assert [{k: v for k, v in h.items() if k not in timing} for h in resumed.history] == strip


def test_resume_continues_bit_for_bit(tmp_path):
    """Train 2 epochs straight vs 1 epoch, crash, resume: identical per-step losses and final state."""
    straight_losses = []
    straight = make_trainer(small_convnet, small_config(), run_dir=tmp_path / "straight",
                            on_step=lambda e, s, loss: straight_losses.append(loss))
    straight.fit()
    straight_rng = minimix.random.get_state()

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
    _assert_same_weights_and_optimizer(resumed, straight)
    # dropout draws from minimix's generator: the resumed run leaves it where the straight one did
    assert minimix.random.get_state() == straight_rng
    assert load_checkpoint(tmp_path / "run")["rng"] == load_checkpoint(tmp_path / "straight")["rng"]
    _assert_same_history_but_timing(resumed, straight)


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
    before = trainer.model.state_dict()
    with pytest.raises(FloatingPointError, match=r"the loss became non-finite \(nan\) at epoch 1, step 1 with "
                                                 r"finite weights.*lower learning rate") as info:
        trainer.fit()
    assert info.value.weights is False
    for name, value in trainer.model.state_dict().items():  # stopped before the update
        np.testing.assert_array_equal(value, before[name])


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_non_finite_weights_are_told_apart_from_a_diverging_loss():
    """Weights that are NaN before the step: the message says so (a lower learning rate would not help)."""
    trainer = make_trainer(mlp, small_config())
    trainer.model[3].weight.data[0, 0] = np.inf
    with pytest.raises(FloatingPointError, match="the weights are already non-finite before training \\('3.weight' "
                                                 "holds NaN or inf\\).*a lower learning rate would not help") as info:
        trainer.fit()
    assert info.value.weights is True

    trainer = make_trainer(mlp, small_config())  # finite at the start, non-finite after the first update

    def poison(epoch, step, loss):
        if step == 0:
            trainer.model[1].bias.data[3] = np.nan

    trainer.on_step = poison
    with pytest.raises(FloatingPointError, match="the weights are already non-finite \\('1.bias' holds NaN or inf\\) "
                                                 "at epoch 1, step 2, so the loss is nan: an earlier step") as info:
        trainer.fit()
    assert info.value.weights is True


# -- issue 14: reliability of runs and checkpoints ---------------------------------------------------
def _edit_record(meta, change):
    record = json.loads(meta.read_text())
    change(record)
    meta.write_text(json.dumps(record))


def test_a_checkpoint_naming_a_data_file_outside_its_directory_is_refused(tmp_path):
    """Item 3: a JSON whose "data" leads out of its run directory is neither read, nor lets a save delete
    the run's own data file as unreferenced."""
    run, other = tmp_path / "run", tmp_path / "other"
    save_checkpoint(run, _state(1), names=("last", "best"))
    own = run / json.loads((run / "best.json").read_text())["data"]
    outside = save_checkpoint(other, _state(7))
    foreign = json.loads(outside.read_text())
    for name in (f"../other/{foreign['data']}", str(other / foreign["data"])):
        def point_outside(record, name=name):  # size and checksum match the foreign file: only the path is wrong
            record.update(data=name, data_bytes=foreign["data_bytes"], data_sha256=foreign["data_sha256"])

        _edit_record(run / "best.json", point_outside)
        with pytest.raises(CheckpointError, match="best.json names the data file .*other.*not in its run directory"):
            load_checkpoint(run / "best.json")
    link = run / "epoch-007-0000beef.npz"  # a symbolic link inside the directory that leads out of it
    link.symlink_to(other / foreign["data"])
    _edit_record(run / "best.json", lambda r: r.update(data=link.name))
    with pytest.raises(CheckpointError, match="epoch-007-0000beef.npz.*not in its run directory"):
        load_checkpoint(run / "best.json")
    link.unlink()

    _edit_record(run / "best.json", lambda r: r.update(data=f"../other/{foreign['data']}"))
    save_checkpoint(run, _state(2))  # a later save must not delete what best.json once named
    assert own.is_file() and (other / foreign["data"]).is_file()
    assert load_checkpoint(run)["epoch"] == 2


def test_stale_temporaries_are_removed_when_a_run_starts_or_resumes(tmp_path):
    """Item 4: a kill during a write leaves .<name>.tmp files; the next process that takes the run's lock
    removes them, and nothing else."""
    make_trainer(mlp, small_config(epochs=1), run_dir=tmp_path).fit()
    stale = [".epoch-002-0badc0de.npz.tmp", ".last.json.tmp", ".best.json.tmp", ".metrics.csv.tmp",
             ".last.json.1a2b3c4d.tmp", ".epoch-003-1f2e3d4c.npz.0badc0de.tmp"]  # with atomic_write's token
    kept = [".notes.tmp", "epoch-002-0badc0de.npz.tmp", ".epoch-002-0badc0de.npz", "notes.txt"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"PK\x03\x04 partial")
    (tmp_path / ".epoch-003-deadbeef.npz.tmp").mkdir()  # not a file: left alone
    resumed = make_trainer(mlp, small_config(epochs=1), run_dir=tmp_path)
    resumed.resume(tmp_path)
    assert resumed.fit() == resumed.history  # the run was finished: fit only took the lock
    assert not [name for name in stale if (tmp_path / name).exists()]
    assert all((tmp_path / name).is_file() for name in kept) and (tmp_path / ".epoch-003-deadbeef.npz.tmp").is_dir()


LOCK_HOLDER = textwrap.dedent("""
    import sys
    from minimix.training import lock_run_dir
    with lock_run_dir(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.readline()
""")


def test_a_second_process_cannot_train_into_a_locked_run_directory(tmp_path):
    """Item 2: another process holds the run directory's lock; this process is refused with its PID,
    and the lock goes away with the holder, however it ends (here: SIGKILL)."""
    from minimix.training import RunDirectoryLocked, lock_run_dir

    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(run)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert (run / ".lock").read_text().strip() == str(holder.pid)
        with pytest.raises(RunDirectoryLocked, match=f"run directory {run} is in use by another minimix process "
                                                     f"\\(PID {holder.pid}\\)"):
            with lock_run_dir(run):
                pass
        trainer = make_trainer(mlp, small_config(epochs=1), run_dir=run)
        with pytest.raises(RunDirectoryLocked, match=f"PID {holder.pid}"):
            trainer.fit()
        assert not (run / "last.json").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    trainer.fit()  # the dead holder's lock is gone
    assert load_checkpoint(run)["epoch"] == 1
    with lock_run_dir(run) as lock, lock_run_dir(run):  # re-entrant within one process
        assert lock.run_dir == run


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_directory(tmp_path):
    from minimix.training import lock_run_dir

    with pytest.raises(RuntimeError, match="boom"):
        with lock_run_dir(tmp_path / "new" / "run"):
            raise RuntimeError("boom")
    assert not (tmp_path / "new" / "run").exists()


def _resumable_run(tmp_path, epochs=2):
    """A run directory whose last checkpoint is after epoch 1 of ``epochs``."""
    class Stop(Exception):
        pass

    def stop(epoch, step, loss):
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        make_trainer(mlp, small_config(epochs=epochs), run_dir=tmp_path, on_step=stop).fit()
    return tmp_path / "last.json"


def _trainer_from(meta):
    """What `train --resume` does: a trainer built from the checkpoint's own config."""
    state = load_checkpoint(meta)
    return make_trainer(mlp, TrainConfig.from_dict(state["config"])), state


@pytest.mark.parametrize("key, value, saved", [("lr", 0.1, "[0.05, 0.05]"), ("epochs", 3, "6"),
                                               ("weight_decay", 0.01, "0.0005"), ("momentum", 0.5, "0.9"),
                                               ("warmup_epochs", 1.0, "2")])
def test_resume_refuses_a_config_edited_against_the_saved_state(tmp_path, key, value, saved):
    """Item 5: the schedule keeps its saved rates and step counts on resume, so a config edited in the
    JSON would claim values the run does not use: refused, naming key, config value and saved value."""
    meta = _resumable_run(tmp_path)
    _edit_record(meta, lambda r: r["state"]["config"].update({key: value}))
    trainer, state = _trainer_from(meta)
    with pytest.raises(ValueError, match=f"{key} is {value!r} in the config.*, but the saved .* is {saved}"):
        trainer.load_state_dict(state, source=meta)
    with pytest.raises(ValueError, match=f"last.json: the config disagrees.*{key} is {value!r}"):
        trainer.resume(tmp_path)


def test_resume_refuses_an_epoch_count_that_disagrees_with_the_schedule(tmp_path):
    meta = _resumable_run(tmp_path)
    _edit_record(meta, lambda r: r["state"].update(epoch=0, history=[]))
    trainer, state = _trainer_from(meta)
    with pytest.raises(ValueError, match="scheduler step 'last_epoch' \\(epoch 0 x 3 batches\\) is 3"):
        trainer.load_state_dict(state, source=meta)


def test_checkpoint_arrays_of_the_wrong_dtype_are_refused(tmp_path):
    """Item 9: int64 weights (or momentum buffers) are a damaged file, not something to cast."""
    meta = _resumable_run(tmp_path)
    rewrite_checkpoint_arrays(meta, lambda a: a.update({"model/1.weight": np.round(a["model/1.weight"] * 100).astype(np.int64)}))
    trainer, state = _trainer_from(meta)
    before = trainer.model.state_dict()
    with pytest.raises(CheckpointError, match="last.json: model arrays of the wrong dtype: 1.weight is int64, "
                                              "expected float32"):
        trainer.load_state_dict(state, source=meta)
    for name, value in trainer.model.state_dict().items():  # nothing was loaded
        np.testing.assert_array_equal(value, before[name])

    meta = _resumable_run(tmp_path / "momentum")
    rewrite_checkpoint_arrays(meta, lambda a: a.update({"optimizer/state/0/momentum_buffer": np.ones((16, 3072), np.int64)}))
    trainer, state = _trainer_from(meta)
    with pytest.raises(CheckpointError, match="momentum_buffer' of parameter 0 has dtype int64, expected float32"):
        trainer.load_state_dict(state, source=meta)


def test_non_finite_checkpoint_arrays_are_refused_on_load(tmp_path):
    """Item 9: NaN or inf weights are refused by load_checkpoint, naming the data file and the key."""
    meta = _resumable_run(tmp_path)

    def poison(arrays):
        arrays["model/3.bias"][1] = np.nan
        arrays["model/1.weight"][0, :3] = np.inf

    rewrite_checkpoint_arrays(meta, poison)
    data = json.loads(meta.read_text())["data"]
    with pytest.raises(CheckpointError, match=f"{data}: array 'model/1.weight' holds 3 non-finite values"):
        load_checkpoint(meta)
    assert load_checkpoint(meta, finite=False)["model"]["3.bias"][1] != 0  # read anyway when asked


def test_evaluate_refuses_non_finite_outputs():
    """Item 9: NaN weights no longer give "accuracy 10%, loss nan"."""
    from minimix.data import DataLoader
    from minimix.training import evaluate

    minimix.manual_seed(0)
    model = mlp()
    model[1].bias.data[2] = np.nan
    images, labels = colour_dataset(30)
    with pytest.raises(FloatingPointError, match="outputs are not finite .* for 7 of the 7 images of test batch 1: "
                                                 "the model's '1.bias' holds NaN or inf"):
        evaluate(model, DataLoader(images, labels, batch_size=7, shuffle=False))


def test_a_config_of_the_wrong_type_names_file_key_and_expectation(tmp_path):
    """Item 10: TypeError tracebacks become errors naming the file, the key and what was expected."""
    with pytest.raises(ValueError, match="run/last.json: config key 'lr' must be a finite number > 0, "
                                         "got 'fast' \\(str\\)"):
        TrainConfig.from_dict({"lr": "fast"}, source="run/last.json")
    for key, value, expected in [("epochs", 2.5, "an integer >= 1"), ("nesterov", "yes", "true or false"),
                                 ("limit", 0, "an integer >= 1, or null"), ("model_kwargs", [], "a dict"),
                                 ("label_smoothing", 1.0, "a finite number >= 0 and < 1"),
                                 ("batch_size", True, "an integer")]:
        with pytest.raises(ValueError, match=f"config key '{key}' must be {expected}"):
            TrainConfig.from_dict({key: value}, source="x.json")
    with pytest.raises(ValueError, match="x.json: unknown config fields \\['speed'\\]"):
        TrainConfig.from_dict({"speed": 1}, source="x.json")
    with pytest.raises(ValueError, match="x.json: the config must be a JSON object"):
        TrainConfig.from_dict(["lr"], source="x.json")

    meta = _resumable_run(tmp_path)
    _edit_record(meta, lambda r: r["state"]["config"].update(lr="fast"))
    trainer = make_trainer(mlp, small_config())
    with pytest.raises(ValueError, match="last.json: config key 'lr' must be a finite number > 0, got 'fast'"):
        trainer.resume(tmp_path)


def test_a_checkpoint_missing_a_key_or_an_array_names_it(tmp_path):
    """Item 10: no bare `error: config` / `error: model/...`."""
    from minimix.training import read_checkpoint

    meta = _resumable_run(tmp_path)
    text = meta.read_text()
    _edit_record(meta, lambda r: r["state"].pop("config"))
    with pytest.raises(CheckpointError, match="last.json: the checkpoint has no 'config' \\(expected the run's "
                                              "TrainConfig"):
        read_checkpoint(tmp_path)
    meta.write_text(text)
    _edit_record(meta, lambda r: r.pop("data"))
    with pytest.raises(CheckpointError, match="last.json: the checkpoint metadata has no 'data' \\(expected the "
                                              "data file's name\\)"):
        load_checkpoint(tmp_path)
    meta.write_text(text)
    _edit_record(meta, lambda r: r["state"].pop("scheduler"))
    read_checkpoint(tmp_path)  # enough to evaluate
    with pytest.raises(CheckpointError, match="last.json: the checkpoint has no 'scheduler'"):
        read_checkpoint(tmp_path, resume=True)
    meta.write_text(text)
    rewrite_checkpoint_arrays(meta, lambda a: a.pop("model/1.weight"))
    with pytest.raises(CheckpointError, match="last.json names the array 'model/1.weight', which the data file "
                                              "does not hold"):
        load_checkpoint(tmp_path)


def test_train_config_refuses_non_finite_numbers():
    """Item 11."""
    for key, value in [("lr", float("nan")), ("lr", float("inf")), ("lr", 0.0), ("weight_decay", float("nan")),
                       ("warmup_epochs", float("inf")), ("momentum", -0.1), ("seed", -1), ("cutout", -2)]:
        with pytest.raises(ValueError, match=f"TrainConfig: key '{key}' must be"):
            TrainConfig(**{key: value})


def test_numpy_global_random_state_is_neither_used_nor_saved(tmp_path):
    """Item 14: nothing in training draws from NumPy's global generator, so checkpoints do not save it and a
    resume does not overwrite it (resume exactness is test_resume_continues_bit_for_bit)."""
    def global_state():
        return np.random.get_state()[1].copy()

    np.random.seed(1234)
    before = global_state()
    trainer = make_trainer(small_convnet, small_config(epochs=1), run_dir=tmp_path)
    trainer.fit()
    np.testing.assert_array_equal(global_state(), before)  # training drew nothing from it
    assert set(trainer.state_dict()["rng"]) == {"minimix"}
    assert set(load_checkpoint(tmp_path)["rng"]) == {"minimix"}
    np.random.seed(99)
    after_seed = global_state()
    make_trainer(small_convnet, small_config(epochs=1)).resume(tmp_path)
    np.testing.assert_array_equal(global_state(), after_seed)  # and a resume does not overwrite it


def test_resume_from_a_mid_epoch_checkpoint_continues_bit_for_bit(tmp_path):
    """Issue 15, item 7: with checkpoint_every, `last` is also written within an epoch; a run stopped
    after a mid-epoch checkpoint resumes from it exactly (same losses, weights, optimizer, random state)."""
    straight_losses = []
    straight = make_trainer(small_convnet, small_config(), run_dir=tmp_path / "straight",
                            on_step=lambda e, s, loss: straight_losses.append(loss))
    straight.fit()
    straight_rng = minimix.random.get_state()

    class Crash(Exception):
        pass

    losses = []

    def crash(epoch, step, loss):
        losses.append(loss)
        if (epoch, step) == (1, 1):
            raise Crash  # after the checkpoint of step 2 of epoch 2

    interrupted = make_trainer(small_convnet, small_config(), run_dir=tmp_path / "run", on_step=crash,
                               checkpoint_every=0)
    with pytest.raises(Crash):
        interrupted.fit()
    saved = load_checkpoint(tmp_path / "run")
    assert (saved["epoch"], saved["step"]) == (1, 2) and saved["partial"]["seen"] == 64

    resumed = make_trainer(small_convnet, small_config(), run_dir=tmp_path / "run", seed=123,
                           on_step=lambda e, s, loss: losses.append(loss))
    resumed.resume(tmp_path / "run")
    assert (resumed.epoch, resumed.step) == (1, 2)
    resumed.fit()

    assert losses == straight_losses  # exactly equal floats, 3 + 2 + 1 steps
    _assert_same_weights_and_optimizer(resumed, straight)
    assert minimix.random.get_state() == straight_rng
    final = load_checkpoint(tmp_path / "run")
    assert (final["epoch"], final["step"]) == (2, 0)
    _assert_same_history_but_timing(resumed, straight)


def test_a_mid_epoch_checkpoint_with_a_wrong_step_is_refused(tmp_path):
    def stop(epoch, step, loss):
        if (epoch, step) == (0, 1):
            raise KeyboardInterrupt

    trainer = make_trainer(small_convnet, small_config(), run_dir=tmp_path, checkpoint_every=0, on_step=stop)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    state = load_checkpoint(tmp_path)
    assert state["step"] == 2
    state["step"] = 1  # disagrees with the saved schedule (2 steps done)
    fresh = make_trainer(small_convnet, small_config())
    with pytest.raises(ValueError, match="last_epoch"):
        fresh.load_state_dict(state, source="x")
