"""The training loop: SGD + warmup/cosine schedule + label smoothing, with exact resume.

One optimisation step, as in every PyTorch training script::

    logits = model(x)                                   # forward, (B, classes)
    loss = cross_entropy(logits, y, label_smoothing)    # smoothed targets: (1 - eps) one-hot + eps / C
    optimizer.zero_grad(); loss.backward()              # dL/dparameter for every parameter
    optimizer.step()                                    # Nesterov momentum SGD with weight decay
    scheduler.step()                                    # the learning rate of the next step

After every epoch the model is evaluated on the test set (eval mode, no graph) and a checkpoint
is written. Resuming from it gives bit-for-bit the run that was not interrupted, because
everything that decides the next step is saved: weights and BatchNorm buffers, momentum buffers,
scheduler step, the library's random generator; and the data loader's shuffling and augmentation
of epoch ``e`` is a pure function of ``(seed, e)``.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np

from .. import random as mm_random
from ..ops import cross_entropy
from ..tensor import Tensor, no_grad
from .checkpoint import load_checkpoint, save_checkpoint
from .metrics import count_correct, write_log


@dataclasses.dataclass
class TrainConfig:
    """The recipe of a run. It is saved in every checkpoint, so a run can be resumed or evaluated
    from its checkpoint alone. Defaults: the CIFAR-10 recipe of the reduced MixNet."""

    model: str = "mixnet_cifar"
    model_kwargs: dict = dataclasses.field(default_factory=dict)  # e.g. {"width_multiplier": 0.5}
    epochs: int = 15
    batch_size: int = 256
    lr: float = 0.2  # peak learning rate, reached after the warmup
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4  # on conv/linear weights only (see minimix.optim.weight_decay_groups)
    label_smoothing: float = 0.1
    warmup_epochs: float = 1.0  # linear warmup (at most half the run), then cosine decay to 0, per step
    augment: bool = True  # random crop (4-pixel padding) + horizontal flip
    cutout: int = 0  # side of the square cut out of each training image (0: none)
    seed: int = 0  # model initialisation and data order/augmentation
    tta: bool = False  # evaluate on image + mirror (average logits)
    eval_batch_size: int = 500
    data: str | None = None  # dataset root (None: $MINIMIX_DATA)
    limit: int | None = None  # train on `limit` training images, as many per class (recipe.balanced_subset)
    test_limit: int | None = None  # evaluate on `test_limit` test images, chosen the same way

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"TrainConfig: lr must be > 0, got {self.lr}")
        if self.warmup_epochs < 0:
            raise ValueError(f"TrainConfig: warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"TrainConfig: label_smoothing must be in [0, 1), got {self.label_smoothing}")

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"TrainConfig: unknown fields {unknown}; known: {sorted(known)}")
        return cls(**values)


def evaluate(model, loader, tta: bool = False, progress: bool = False) -> dict:
    """Mean cross-entropy (no label smoothing) and top-1 accuracy of ``model`` over ``loader``.

    Runs an inference copy of the model (``nn.fuse``: eval mode, BatchNorm uses its running
    statistics and is folded into the MixConv before it) under ``no_grad`` (no graph is
    recorded), batch by batch; ``model`` itself is left as it was. With ``tta``, the logits are the average of the image's and of its
    mirror image's (flip test-time augmentation). Returns ``{"loss", "acc", "predictions", "labels"}``.
    """
    from tqdm import tqdm

    from ..nn import fuse

    model = fuse(model)
    total_loss, predictions, labels = 0.0, [], []
    with no_grad():
        for x, y in tqdm(loader, desc="test", unit="batch", leave=False, disable=not progress):
            logits = model(Tensor(x)).data
            if tta:
                mirrored = np.ascontiguousarray(x[..., ::-1])  # flip the width axis of (B, C, H, W)
                logits = 0.5 * (logits + model(Tensor(mirrored)).data)
            total_loss += cross_entropy(Tensor(logits), y).item() * len(y)
            predictions.append(np.argmax(logits, axis=1))
            labels.append(y)
    predictions, labels = np.concatenate(predictions), np.concatenate(labels)
    return {
        "loss": total_loss / len(labels),
        "acc": float((predictions == labels).mean()),
        "predictions": predictions,
        "labels": labels,
    }


class Trainer:
    """Train ``model`` on ``train_data`` = (images uint8 (N, H, W, 3), labels int64 (N,)), evaluate on
    ``test_data`` after every epoch, and checkpoint into ``run_dir`` (None: no files).

    ``on_step(epoch, step, loss)`` is called after every optimisation step (tests use it to record
    losses or to simulate a crash). ``log`` prints the one-line epoch summaries.
    """

    def __init__(self, model, train_data, test_data, config: TrainConfig, run_dir=None,
                 progress: bool = True, log=print, on_step=None):
        from ..data import DataLoader
        from ..optim import SGD, weight_decay_groups
        from ..optim.lr_scheduler import WarmupCosineLR

        self.model, self.config = model, config
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.progress, self.log, self.on_step = progress, log, on_step
        self.train_loader = DataLoader(*train_data, batch_size=config.batch_size, shuffle=True,
                                       augment=config.augment, cutout=config.cutout, seed=config.seed)
        self.test_loader = DataLoader(*test_data, batch_size=config.eval_batch_size, shuffle=False)
        if len(self.train_loader) == 0:
            raise ValueError(f"Trainer: no training batches ({len(train_data[1])} images, "
                             f"batch_size {config.batch_size})")
        self.optimizer = SGD(weight_decay_groups(model, config.weight_decay), lr=config.lr,
                             momentum=config.momentum, nesterov=config.nesterov)
        total_steps = config.epochs * len(self.train_loader)
        # A short run (e.g. --epochs 1) keeps at least half of its steps for the cosine decay.
        warmup_steps = min(round(config.warmup_epochs * len(self.train_loader)), total_steps // 2)
        self.scheduler = WarmupCosineLR(self.optimizer, warmup_steps=warmup_steps, total_steps=total_steps)
        self.epoch = 0  # number of finished epochs
        self.history: list = []  # one dict of metrics per finished epoch

    # -- the loop ------------------------------------------------------------------------------------
    def fit(self) -> list:
        """Train from ``self.epoch`` to ``config.epochs``; returns the metrics history."""
        for epoch in range(self.epoch, self.config.epochs):
            train = self.train_epoch(epoch)
            test = evaluate(self.model, self.test_loader, tta=self.config.tta, progress=self.progress)
            self.epoch = epoch + 1
            record = {
                "epoch": self.epoch,
                "lr": self.scheduler.get_last_lr()[0],
                "train_loss": train["loss"], "train_acc": train["acc"],
                "test_loss": test["loss"], "test_acc": test["acc"],
                "seconds": train["seconds"], "images_per_s": train["images_per_s"],
            }
            is_best = all(record["test_acc"] > h["test_acc"] for h in self.history)
            self.history.append(record)
            self.log(self._summary(record))
            if self.run_dir is not None:
                self.save(best=is_best)
        return self.history

    def train_epoch(self, epoch: int) -> dict:
        """One pass over the training set; returns mean loss, accuracy, seconds and images/s."""
        from tqdm import tqdm

        model, loader, cfg = self.model, self.train_loader, self.config
        model.train()
        loader.set_epoch(epoch)  # this epoch's shuffle and augmentation depend only on (seed, epoch)
        total_loss, correct, seen = 0.0, 0, 0
        start = time.perf_counter()
        bar = tqdm(loader, total=len(loader), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   leave=False, disable=not self.progress, dynamic_ncols=True)
        for step, (x, y) in enumerate(bar):
            logits = model(Tensor(x))
            loss = cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()

            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(f"loss is {value} at epoch {epoch + 1}, step {step + 1}; "
                                         f"try a lower learning rate (lr={cfg.lr})")
            total_loss += value * len(y)
            correct += count_correct(logits.data, y)
            seen += len(y)
            elapsed = time.perf_counter() - start
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.1%}",
                            img_s=f"{seen / elapsed:.0f}", refresh=False)
            if self.on_step is not None:
                self.on_step(epoch, step, value)
        bar.close()
        seconds = time.perf_counter() - start
        return {"loss": total_loss / seen, "acc": correct / seen, "seconds": seconds,
                "images_per_s": seen / seconds}

    def _summary(self, r: dict) -> str:
        return (f"epoch {r['epoch']:>3}/{self.config.epochs}  "
                f"train loss {r['train_loss']:.4f} acc {r['train_acc']:6.2%}  "
                f"test loss {r['test_loss']:.4f} acc {r['test_acc']:6.2%}  "
                f"lr {r['lr']:.4f}  {r['seconds']:.1f} s  {r['images_per_s']:.0f} img/s")

    # -- checkpoints ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue the run exactly (arrays and plain values)."""
        return {
            "epoch": self.epoch,
            "config": dataclasses.asdict(self.config),
            "history": self.history,
            "model": dict(self.model.state_dict()),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {"minimix": mm_random.get_state(), "numpy": np.random.get_state(legacy=False)},
        }

    def load_state_dict(self, state: dict):
        saved = {k: v for k, v in state["config"].items() if k != "data"}
        ours = {k: v for k, v in dataclasses.asdict(self.config).items() if k != "data"}
        changed = {k: (saved.get(k), v) for k, v in ours.items() if saved.get(k) != v}
        if changed:
            detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in changed.items())
            raise ValueError(f"cannot resume: the recipe differs from the checkpoint's ({detail})")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        mm_random.set_state(state["rng"]["minimix"])
        np.random.set_state(state["rng"]["numpy"])
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])
        return self

    def save(self, best: bool = False) -> Path:
        """Write ``last`` (and ``best``) checkpoints, then the metrics CSV, into ``run_dir``."""
        path = save_checkpoint(self.run_dir, self.state_dict(), names=("last", "best") if best else ("last",))
        write_log(self.run_dir / "metrics.csv", self.history)
        return path

    def resume(self, path) -> "Trainer":
        """Load the checkpoint at ``path`` (run directory, .json or .npz) and continue from it."""
        return self.load_state_dict(load_checkpoint(path))
