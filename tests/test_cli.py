"""``python -m minimix train / evaluate / plot`` end to end on a tiny image-folder dataset.

The dataset is a CIFAR-10-style tree of 32x32 PNGs written to tmp_path (class = a brightened colour
channel, so it is learnable), read through minimix.data like the real one. Most tests use a tiny
registered model ("tiny") to stay fast; one runs the real mixnet_cifar at a small width.
"""
import json
import subprocess
import sys

import numpy as np
import pytest

import minimix
from minimix import nn
from minimix.cli import COMMANDS, build_parser, main

PIL = pytest.importorskip("PIL.Image", reason="Pillow writes the test dataset and reads the PNGs")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """train/<class>/*.png (8 per class) and test/<class>/*.png (3 per class), the ten CIFAR classes."""
    from minimix.data import CLASSES

    root = tmp_path_factory.mktemp("cifar_tree")
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 8), ("test", 3)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                image = rng.integers(0, 120, (32, 32, 3))
                image[:, :, label % 3] += 40 * (1 + label // 3)
                PIL.fromarray(image.astype(np.uint8)).save(folder / f"{i:04d}.png")
    return root


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """A private cache, no MINIMIX_DATA from the environment, and the "tiny" model registered."""
    import minimix.models

    monkeypatch.setenv("MINIMIX_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MINIMIX_DATA", raising=False)
    monkeypatch.setitem(minimix.models.MODELS, "tiny", tiny)


def tiny(num_classes=10, width_multiplier=1.0):
    c = max(1, round(4 * width_multiplier))
    return nn.Sequential(nn.Conv2d(3, c, 3, stride=4, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                         nn.Flatten(), nn.Dropout(0.2), nn.Linear(c * 8 * 8, num_classes))


def train(dataset, out, *extra):
    return main(["train", "--model", "tiny", "--data", str(dataset), "--out", str(out), "--no-progress",
                 "--epochs", "2", "--batch-size", "16", "--lr", "0.05", *extra])


def png_pixels(path):
    with PIL.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def test_train_evaluate_plot_end_to_end(dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(dataset, run, "--limit", "40", "--width", "2") == 0
    out = capsys.readouterr().out
    assert "40 training and 15 test images" in out  # --limit 40 of 80 -> the same half of the 30 test images
    assert out.count("epoch ") >= 2 and "best test accuracy" in out
    state = json.loads((run / "last.json").read_text())["state"]
    assert state["epoch"] == 2 and state["config"]["test_limit"] == 15
    assert state["config"]["model_kwargs"] == {"width_multiplier": 2.0}
    assert len(list(run.glob("*.npz"))) in (1, 2)
    assert len((run / "metrics.csv").read_text().splitlines()) == 1 + 2

    assert main(["evaluate", str(run), "--tta"]) == 0
    out = capsys.readouterr().out
    assert "with flip TTA" in out and "airplane" in out and "truck" in out
    report = json.loads((run / "evaluation.json").read_text())
    assert report["images"] == 30 and np.sum(report["confusion_matrix"]) == 30
    assert len(report["per_class_accuracy"]) == 10
    matrix = png_pixels(run / "confusion_matrix.png")
    assert matrix.shape[0] > 300 and matrix.shape[1] > 300 and matrix.std() > 10  # a drawn figure, not blank

    assert main(["plot", str(run)]) == 0
    assert "2 epochs" in capsys.readouterr().out
    curves = png_pixels(run / "curves.png")
    assert curves.shape == (400, 1000, 3) and curves.std() > 10  # figsize (10, 4) at 100 dpi


def test_limit_takes_every_class(dataset):
    """The tree is stored class by class: --limit must not give only airplanes."""
    from minimix.data import CIFAR10
    from minimix.training.recipe import balanced_subset

    data = CIFAR10(root=dataset, train=True)
    _, labels = balanced_subset(data.images, data.labels, 25)
    assert len(labels) == 25 and np.bincount(labels, minlength=10).tolist() == [3] * 5 + [2] * 5


def test_cli_resume_matches_an_uninterrupted_run(dataset, tmp_path, monkeypatch, capsys):
    from minimix.training import load_checkpoint
    from minimix.training.trainer import Trainer

    assert train(dataset, tmp_path / "straight") == 0
    real_train_epoch = Trainer.train_epoch

    def crash_in_epoch_2(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return real_train_epoch(self, epoch)

    monkeypatch.setattr(Trainer, "train_epoch", crash_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(dataset, tmp_path / "run")
    monkeypatch.setattr(Trainer, "train_epoch", real_train_epoch)

    assert main(["train", "--resume", str(tmp_path / "run"), "--no-progress"]) == 0
    assert "resuming" in capsys.readouterr().out
    straight, resumed = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "run")
    assert resumed["epoch"] == 2
    for name, value in straight["model"].items():
        np.testing.assert_array_equal(resumed["model"][name], value, err_msg=name)


def test_user_errors_are_one_clear_line(dataset, tmp_path, capsys):
    def error_of(argv):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"minimix {argv[0]}: error: ")
        return err

    assert "MINIMIX_DATA" in error_of(["train", "--data", str(tmp_path / "nowhere"), "--no-progress"])
    assert "available models" in error_of(["train", "--model", "resnet", "--data", str(dataset)])
    assert "does not accept ['head_channels']" in error_of(
        ["train", "--model", "tiny", "--head", "8", "--data", str(dataset), "--no-progress"])
    assert "no_such_run" in error_of(["evaluate", str(tmp_path / "no_such_run")])
    assert "metrics.csv" in error_of(["plot", str(tmp_path)])

    run = tmp_path / "run"
    assert train(dataset, run, "--limit", "20", "--epochs", "1") == 0
    capsys.readouterr()
    assert "--resume" in error_of(["train", "--model", "tiny", "--data", str(dataset), "--out", str(run)])
    assert "lr=0.3 (run has 0.05)" in error_of(["train", "--resume", str(run), "--lr", "0.3"])
    data = next(run.glob("*.npz"))
    data.write_bytes(data.read_bytes()[:100])
    assert f"{data.name} has 100 bytes" in error_of(["evaluate", str(run)])


def test_kernels_option_is_parsed_and_checked(capsys):
    args = build_parser().parse_args(["train", "--kernels", "3,5,7,9"])
    assert args.kernels == [3, 5, 7, 9]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--kernels", "3,4"])
    assert "odd" in capsys.readouterr().err


def test_missing_command_modules_are_skipped(monkeypatch, capsys):
    monkeypatch.setattr("minimix.cli.COMMANDS", COMMANDS + ["no_such_command"])
    parser = build_parser()
    assert parser.parse_args(["plot", "somewhere"]).command == "plot"
    with pytest.raises(SystemExit):
        parser.parse_args(["no_such_command"])
    assert "invalid choice: 'no_such_command'" in capsys.readouterr().err


def test_python_dash_m_minimix_runs():
    result = subprocess.run([sys.executable, "-m", "minimix", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "train" in result.stdout and "evaluate" in result.stdout


def test_train_the_real_mixnet_cifar_briefly(dataset, tmp_path):
    """The default model through the CLI, at a small width and head so it takes seconds."""
    pytest.importorskip("numba")
    run = tmp_path / "mixnet"
    assert main(["train", "--data", str(dataset), "--out", str(run), "--no-progress", "--limit", "20",
                 "--epochs", "1", "--batch-size", "10", "--width", "0.25", "--head", "64", "--kernels", "3,5"]) == 0
    state = json.loads((run / "last.json").read_text())["state"]
    assert state["config"]["model"] == "mixnet_cifar"
    # the recipe's initialisation is recorded in the run, so --resume rebuilds the same model
    assert state["config"]["model_kwargs"] == {"width_multiplier": 0.25, "head_channels": 64, "kernel_sizes": [3, 5],
                                               "init": "pytorch"}
    assert np.isfinite(state["history"][0]["train_loss"])
