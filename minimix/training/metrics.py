"""Classification metrics and the run's metrics log (a CSV file, one row per epoch)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from .checkpoint import atomic_write

LOG_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds", "images_per_s")
# Where an epoch's time went (``Trainer``): optional, since runs of older versions did not record it.
# ``seconds`` = step + data + checkpoint seconds; the test-set evaluation comes on top.
PHASE_COLUMNS = ("step_seconds", "data_seconds", "eval_seconds", "checkpoint_seconds")


def count_correct(logits: np.ndarray, labels: np.ndarray) -> int:
    """Number of rows whose largest logit is at the true label (top-1)."""
    return int((np.argmax(logits, axis=1) == labels).sum())


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``M[i, j]`` = number of images of true class i predicted as class j, shape (C, C) int64."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """Recall of each class: diagonal / row sum (NaN for a class with no images)."""
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(matrix) / totals, np.nan)


def write_log(path, history: list) -> Path:
    """Write the per-epoch ``history`` (list of dicts) as a CSV with ``LOG_COLUMNS`` and
    ``PHASE_COLUMNS`` (empty for epochs that did not record them).

    The whole file is rewritten atomically from the history saved in the checkpoint, so after a
    crash and ``--resume`` the log never holds rows of epochs that were lost.
    """
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=LOG_COLUMNS + PHASE_COLUMNS, extrasaction="ignore", restval="",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    data = text.getvalue().encode()
    return atomic_write(path, lambda f: f.write(data))


def read_log(path) -> dict:
    """Read a metrics CSV into ``{column: np.ndarray of floats}``: every ``LOG_COLUMNS`` column, and
    the ``PHASE_COLUMNS`` a log has (NaN for epochs that did not record them)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metrics log not found: {path}")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"metrics log {path} has no epochs yet")
    missing = [c for c in LOG_COLUMNS if c not in rows[0]]
    if missing:
        raise ValueError(f"metrics log {path} lacks the columns {missing}; expected {list(LOG_COLUMNS)}")
    log = {c: np.array([float(r[c]) for r in rows]) for c in LOG_COLUMNS}
    log.update({c: np.array([float(r[c]) if r.get(c) else np.nan for r in rows])
                for c in PHASE_COLUMNS if c in rows[0]})
    return log


def time_to_accuracy(log: dict, threshold: float) -> float | None:
    """Seconds from the start of training until the end of the first epoch whose test accuracy is at
    least ``threshold`` (a fraction), counting each epoch's ``seconds`` and, where recorded, its
    ``eval_seconds`` (the test that measured it); None if no epoch reached it."""
    eval_seconds = np.nan_to_num(log.get("eval_seconds", np.zeros_like(log["seconds"])))
    elapsed = np.cumsum(log["seconds"] + eval_seconds)
    reached = np.flatnonzero(log["test_acc"] >= threshold)
    return float(elapsed[reached[0]]) if reached.size else None


def describe_run(log: dict, thresholds=(0.80, 0.85)) -> str:
    """A few lines summing up a metrics log: epochs, last and best test accuracy, the training time
    (steps + data + checkpoints, and test-set evaluation where recorded), images/s over the whole run,
    and the time to reach each accuracy in ``thresholds``."""
    last, best = len(log["epoch"]) - 1, int(np.argmax(log["test_acc"]))
    train_s = float(log["seconds"].sum())
    images = float((log["seconds"] * log["images_per_s"]).sum())
    eval_s = log.get("eval_seconds")
    recorded = eval_s is not None and not np.isnan(eval_s).any()
    lines = [f"{len(log['epoch'])} epochs; test accuracy {log['test_acc'][last]:.2%} after the last "
             f"(best {log['test_acc'][best]:.2%}, epoch {int(log['epoch'][best])})",
             f"training {train_s:.0f} s ({train_s / 60:.1f} min) at {images / train_s:.0f} images/s"
             + (f", plus {eval_s.sum():.0f} s of test-set evaluation: {(train_s + eval_s.sum()) / 60:.1f} min"
                if recorded else " (test-set evaluation not recorded)")]
    for threshold in thresholds:
        seconds = time_to_accuracy(log, threshold)
        lines.append(f"time to {threshold:.0%} test accuracy: "
                     + (f"{seconds:.0f} s ({seconds / 60:.1f} min)" if seconds is not None else "not reached"))
    return "\n".join(lines)
