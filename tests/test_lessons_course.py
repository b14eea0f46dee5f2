"""Which trained network the lessons use (``minimix.lessons.find_checkpoint``): your completed
full-data run, else the small checkpoint shipped with minimix; never a --limit quick look or an
unfinished run."""
import dataclasses
import json

import numpy as np
import pytest

import minimix as mm
from minimix.lessons import course

KWARGS = {"width_multiplier": 0.25, "head_channels": 64}


def _run(root, name, epoch, epochs, limit=None, acc=0.5):
    """A checkpoint of a small mixnet_cifar in root/runs/name, as `train` writes it."""
    from minimix.models import mixnet_cifar
    from minimix.training import TrainConfig, save_checkpoint

    mm.manual_seed(5)
    model = mixnet_cifar(**KWARGS)
    config = TrainConfig(model="mixnet_cifar", model_kwargs=KWARGS, epochs=epochs, limit=limit)
    history = [{"epoch": e + 1, "test_acc": acc, "test_loss": 1.0} for e in range(epoch)]
    state = {"epoch": epoch, "config": dataclasses.asdict(config),
             "history": history, "model": dict(model.state_dict())}
    save_checkpoint(root / "runs" / name, state, names=("last", "best"))
    return model


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("MINIMIX_CHECKPOINT", raising=False)


def test_without_a_run_the_shipped_checkpoint_is_used(no_env, tmp_path, capsys):
    assert course.find_checkpoint(search_from=tmp_path) == course.SHIPPED_CHECKPOINT
    out = capsys.readouterr().out
    info = json.loads(course.SHIPPED_CHECKPOINT.read_text())
    assert "shipped with minimix" in out and f"{info['test_accuracy']:.2%}" in out


def test_quick_looks_and_unfinished_runs_are_not_a_trained_model(no_env, tmp_path, capsys):
    _run(tmp_path, "quick-look", epoch=3, epochs=3, limit=2048, acc=0.10)
    _run(tmp_path, "stopped", epoch=2, epochs=15, acc=0.60)
    assert course.find_checkpoint(search_from=tmp_path) == course.SHIPPED_CHECKPOINT
    assert "2 unfinished or --limit run(s) in runs/ not used" in capsys.readouterr().out


def test_a_completed_full_run_is_preferred_and_named_with_its_accuracy(no_env, tmp_path, capsys):
    _run(tmp_path, "quick-look", epoch=3, epochs=3, limit=2048, acc=0.10)
    model = _run(tmp_path, "done", epoch=2, epochs=2, acc=0.8123)
    (tmp_path / "lessons").mkdir()
    found = course.find_checkpoint(search_from=tmp_path / "lessons")  # looks in the parent too
    assert found == tmp_path / "runs" / "done" / "best.json"
    assert "your completed run: 2 epochs, best test accuracy 81.23%" in capsys.readouterr().out
    loaded, config, saved = course.load_trained_model(found)
    assert config.model_kwargs == KWARGS and not loaded.training and saved["epoch"] == 2
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_the_environment_variable_wins(monkeypatch, tmp_path):
    _run(tmp_path, "stopped", epoch=1, epochs=15)
    monkeypatch.setenv("MINIMIX_CHECKPOINT", str(tmp_path / "runs" / "stopped"))
    assert course.find_checkpoint(verbose=False) == tmp_path / "runs" / "stopped" / "last.json"
    monkeypatch.setenv("MINIMIX_CHECKPOINT", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="MINIMIX_CHECKPOINT"):
        course.find_checkpoint()


def test_the_shipped_checkpoint_is_a_trained_network():
    """Its record says how it was made, and its float16 weights load into a working float32 model that
    classifies real CIFAR-10-like input (checked on the record: its accuracy was measured with these weights)."""
    info = json.loads(course.SHIPPED_CHECKPOINT.read_text())
    for key in ("description", "test_accuracy", "epoch", "history", "config", "commit", "command"):
        assert key in info, key
    assert info["epoch"] == info["config"]["epochs"] and info["config"]["limit"] is None
    assert info["test_accuracy"] > 0.5
    size = course.SHIPPED_CHECKPOINT.with_suffix(".npz").stat().st_size
    assert size < 2.5e6
    model, config, state = course.load_trained_model(course.SHIPPED_CHECKPOINT)
    assert not model.training and state["history"] == info["history"]
    assert all(p.dtype == np.float32 for p in model.parameters())
    with mm.no_grad():
        logits = model(mm.Tensor(np.zeros((2, 3, 32, 32), np.float32))).data
    assert logits.shape == (2, 10) and np.isfinite(logits).all()
