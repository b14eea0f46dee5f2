"""PNG figures of a run: loss/accuracy curves and the confusion matrix.

Built with ``matplotlib.figure.Figure`` directly (not ``pyplot``), so saving a figure needs no
display and changes no global matplotlib state: it works the same in scripts, tests and notebooks.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_curves(log: dict, path) -> Path:
    """Two panels against the epoch: train/test loss and train/test accuracy.

    ``log`` is ``minimix.training.read_log(...)``: arrays ``epoch``, ``train_loss``, ``test_loss``,
    ``train_acc``, ``test_acc``. The training loss includes label smoothing, so it cannot reach 0.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    epoch = log["epoch"]
    for split, style in (("train", "-o"), ("test", "-s")):
        loss_ax.plot(epoch, log[f"{split}_loss"], style, label=split, markersize=3)
        acc_ax.plot(epoch, 100 * log[f"{split}_acc"], style, label=split, markersize=3)
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    acc_ax.set(xlabel="epoch", ylabel="top-1 accuracy (%)", title="accuracy")
    best = int(np.argmax(log["test_acc"]))
    acc_ax.annotate(f"best {100 * log['test_acc'][best]:.2f}%", (epoch[best], 100 * log["test_acc"][best]),
                    textcoords="offset points", xytext=(0, -14), ha="center", fontsize=8)
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
        ax.legend()
    fig.savefig(path, dpi=100)
    return Path(path)


def plot_confusion_matrix(matrix: np.ndarray, classes, path, title: str = "confusion matrix") -> Path:
    """Heat map of ``matrix[true, predicted]`` normalised per row (each true class sums to 100%),
    with the counts' percentages written in the cells."""
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix)
    c = len(classes)
    if matrix.shape != (c, c):
        raise ValueError(f"plot_confusion_matrix: matrix has shape {matrix.shape}, expected ({c}, {c}) "
                         f"for {c} classes")
    totals = np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    percent = 100.0 * matrix / totals
    fig = Figure(figsize=(1.0 + 0.6 * c, 0.8 + 0.55 * c), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(percent, cmap="Blues", vmin=0, vmax=100)
    fig.colorbar(image, ax=ax, label="% of the true class")
    ax.set_xticks(range(c), classes, rotation=45, ha="right")
    ax.set_yticks(range(c), classes)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    for i in range(c):
        for j in range(c):
            ax.text(j, i, f"{percent[i, j]:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if percent[i, j] > 50 else "black")
    fig.savefig(path, dpi=100)
    return Path(path)
