"""The training loop: SGD + warmup/cosine schedule + label smoothing, with exact resume.

One optimisation step, as in every PyTorch training script::

    logits = model(x)                                   # forward, (B, classes)
    loss = cross_entropy(logits, y, label_smoothing=eps) # smoothed targets: (1 - eps) one-hot + eps / C
    optimizer.zero_grad(); loss.backward()              # dL/dparameter for every parameter
    optimizer.step()                                    # Nesterov momentum SGD with weight decay
    scheduler.step()                                    # the learning rate of the next step

After every epoch the model is evaluated on the test set (eval mode, no graph) and a checkpoint
is written; with ``checkpoint_every`` also within an epoch (``last`` only, recording the steps done
in the epoch: resuming skips those batches of the epoch's fixed order). Resuming from it gives
bit-for-bit the run that was not interrupted, because
everything that decides the next step is saved: weights and BatchNorm buffers, momentum buffers,
scheduler step, the library's random generator (``minimix.random``: initialisation, dropout);
and the data loader's shuffling and augmentation of epoch ``e`` is a pure function of
``(seed, e)``. NumPy's global random state is neither used nor saved.

A checkpoint is checked before anything of it is used: its config (types and ranges, naming the
key), its structure, the dtypes of its arrays against the model's, and that its optimizer and
scheduler state is the one its config gives (an edited ``lr`` is refused, not silently
overridden by the saved schedule). While ``fit`` runs it holds the run directory's lock
(``minimix.training.lock``): a second process cannot train into the same directory.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import os
import time
from pathlib import Path

import numpy as np

from .. import random as mm_random
from ..ops import cross_entropy
from ..tensor import Tensor, no_grad
from .checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint, save_checkpoint
from .lock import lock_run_dir
from .metrics import count_correct, write_log


def _integer(low):
    return (f"an integer >= {low}",
            lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low)


def _number(low, high=None, low_open=False):
    text = f"a finite number {'>' if low_open else '>='} {low}" + (f" and < {high}" if high is not None else "")

    def ok(v):
        if not isinstance(v, numbers.Real) or isinstance(v, bool) or not math.isfinite(v):
            return False
        return (v > low if low_open else v >= low) and (high is None or v < high)

    return text, ok


def _optional(rule):
    text, ok = rule
    return f"{text}, or null", lambda v: v is None or ok(v)


_BOOL = ("true or false", lambda v: isinstance(v, bool))
# TrainConfig field -> (what it must be, test). Checked on construction and on every load.
CONFIG_RULES = {
    "model": ("a model name (a non-empty string)", lambda v: isinstance(v, str) and bool(v)),
    "model_kwargs": ("a dict of the model builder's keyword arguments",
                     lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v)),
    "epochs": _integer(1),
    "batch_size": _integer(1),
    "lr": _number(0, low_open=True),
    "momentum": _number(0),
    "nesterov": _BOOL,
    "weight_decay": _number(0),
    "label_smoothing": _number(0, high=1),
    "warmup_epochs": _number(0),
    "augment": _BOOL,
    "cutout": _integer(0),
    "seed": _integer(0),
    "tta": _BOOL,
    "eval_batch_size": _integer(1),
    "data": ("a dataset path (a string), or null", lambda v: v is None or isinstance(v, str)),
    "limit": _optional(_integer(1)),
    "test_limit": _optional(_integer(1)),
}


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
        if isinstance(self.data, os.PathLike):
            self.data = os.fspath(self.data)
        for name, value in dataclasses.asdict(self).items():
            problem = config_problem(name, value)
            if problem:
                raise ValueError(f"TrainConfig: {problem}")

    @classmethod
    def from_dict(cls, values: dict, source=None) -> "TrainConfig":
        """The config saved in a checkpoint; ``source`` (the checkpoint file) is named in errors.
        Every value is checked (``CONFIG_RULES``); fields it lacks take their defaults."""
        where = f"{source}: " if source is not None else "TrainConfig: "
        if not isinstance(values, dict):
            raise ValueError(f"{where}the config must be a JSON object of the recipe's fields, "
                             f"got {type(values).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"{where}unknown config fields {unknown}; known: {sorted(known)}")
        for name, value in values.items():
            problem = config_problem(name, value)
            if problem:
                raise ValueError(f"{where}config {problem}")
        return cls(**values)


def config_problem(name: str, value) -> str | None:
    """``"key 'lr' must be ..., got ..."`` if ``value`` is not valid for the field ``name``, else None."""
    expected, ok = CONFIG_RULES[name]
    if ok(value):
        return None
    return f"key {name!r} must be {expected}, got {value!r}" + (
        f" ({type(value).__name__})" if value is not None and not isinstance(value, (int, float)) else "")


def non_finite_array(model) -> str | None:
    """The name of the model's first parameter or buffer holding NaN or inf (None: all finite)."""
    for name, value in model.state_dict().items():
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            return name
    return None


def read_checkpoint(path, resume: bool = False):
    """``(meta, state, config)`` of the checkpoint at ``path`` (run directory, .json or .npz):
    its JSON file, the saved state (checked by ``check_state``) and its ``TrainConfig``."""
    meta = resolve_checkpoint(path)
    state = load_checkpoint(meta)
    check_state(state, meta, resume=resume)
    return meta, state, TrainConfig.from_dict(state["config"], source=meta)


_STATE_KEYS = {"epoch": "the number of finished epochs", "config": "the run's TrainConfig (a JSON object)",
               "model": "the model's weights (arrays by name)"}
_RESUME_KEYS = {"history": "the metrics of every finished epoch (a list)",
                "optimizer": "the optimizer's state (with 'state' and 'param_groups')",
                "scheduler": "the learning-rate schedule's state", "rng": "the random generator's state"}


def check_state(state, source, resume: bool = False):
    """Refuse a saved state that lacks what evaluating (or, ``resume``, continuing) a run needs,
    naming ``source`` and the key."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{source}: the saved state must be a JSON object, got {type(state).__name__}")
    required = {**_STATE_KEYS, **_RESUME_KEYS} if resume else _STATE_KEYS
    kinds = {"epoch": int, "config": dict, "model": dict, "history": list, "optimizer": dict,
             "scheduler": dict, "rng": dict}
    for key, what in required.items():
        if key not in state:
            raise CheckpointError(f"{source}: the checkpoint has no {key!r} (expected {what})")
        value = state[key]
        if not isinstance(value, kinds[key]) or isinstance(value, bool) or (key == "epoch" and value < 0):
            raise CheckpointError(f"{source}: {key!r} must be {what}, got {value!r:.80}")
    bad = [k for k, v in state["model"].items() if not isinstance(v, np.ndarray)]
    if bad:
        raise CheckpointError(f"{source}: 'model' must hold arrays, but {bad[:3]} are not")
    step, partial = state.get("step", 0), state.get("partial")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"{source}: 'step' must be the number of steps done in the unfinished epoch "
                              f"(an integer >= 0), got {step!r:.80}")
    if partial is not None and not (isinstance(partial, dict) and set(_empty_partial()) - set(_PHASE_KEYS)
                                    <= set(partial) <= set(_empty_partial()) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in partial.values())):
        raise CheckpointError(f"{source}: 'partial' must hold the unfinished epoch's running metrics "
                              f"{sorted(_empty_partial())}, got {partial!r:.80}")
    if resume:
        optimizer = state["optimizer"]
        if not (isinstance(optimizer.get("state"), dict) and isinstance(optimizer.get("param_groups"), list)
                and all(isinstance(g, dict) for g in optimizer["param_groups"])):
            raise CheckpointError(f"{source}: 'optimizer' must be {_RESUME_KEYS['optimizer']}")
        if not isinstance(state["rng"].get("minimix"), dict):
            raise CheckpointError(f"{source}: 'rng' must hold the state of minimix's generator under 'minimix'")
        if len(state["history"]) != state["epoch"] or not all(
                isinstance(h, dict) and isinstance(h.get("test_acc"), (int, float)) for h in state["history"]):
            raise CheckpointError(f"{source}: 'history' must hold one dict of metrics (with 'test_acc') per "
                                  f"finished epoch ({state['epoch']})")


def load_weights(model, weights: dict, source="checkpoint"):
    """``model.load_state_dict(weights)`` after checking that every array has the dtype of the
    model's own (int64 weights are a damaged file, not something to cast); errors name ``source``."""
    from ..nn.module import StateDictError

    targets = model.state_dict()
    wrong = [f"{k} is {np.asarray(v).dtype}, expected {targets[k].dtype}" for k, v in weights.items()
             if k in targets and np.asarray(v).dtype != targets[k].dtype]
    if wrong:
        raise CheckpointError(f"{source}: model arrays of the wrong dtype: " + "; ".join(wrong[:5])
                              + (f" (and {len(wrong) - 5} more)" if len(wrong) > 5 else ""))
    try:
        model.load_state_dict(weights)
    except StateDictError as err:
        raise CheckpointError(f"{source}: the weights do not fit the model its config builds: {err}") from None
    return model


def evaluate(model, loader, tta: bool = False, progress: bool = False) -> dict:
    """Mean cross-entropy (no label smoothing) and top-1 accuracy of ``model`` over ``loader``.

    Runs an inference copy of the model (``nn.fuse``: eval mode, BatchNorm uses its running
    statistics and is folded into the MixConv before it) under ``no_grad`` (no graph is
    recorded), batch by batch; ``model`` itself is left as it was. With ``tta``, the logits are the
    average of the image's and of its mirror image's (flip test-time augmentation). Returns
    ``{"loss", "acc", "predictions", "labels"}``.
    Raises ``FloatingPointError`` if an output is NaN or inf (naming the first non-finite weight):
    an accuracy computed from such outputs would mean nothing.
    """
    from tqdm import tqdm

    from ..nn import fuse

    original, model = model, fuse(model)
    total_loss, predictions, labels = 0.0, [], []
    with no_grad():
        for batch, (x, y) in enumerate(tqdm(loader, desc="test", unit="batch", leave=False, disable=not progress)):
            logits = model(Tensor(x)).data
            if tta:
                mirrored = np.ascontiguousarray(x[..., ::-1])  # flip the width axis of (B, C, H, W)
                logits = 0.5 * (logits + model(Tensor(mirrored)).data)
            if not np.isfinite(logits).all():
                rows = int((~np.isfinite(logits).all(axis=1)).sum())
                culprit = non_finite_array(original)
                where = (f"the model's {culprit!r} holds NaN or inf" if culprit else
                         "the weights are finite, so the computation overflowed or the inputs are not finite")
                raise FloatingPointError(f"evaluation: the model's outputs are not finite (NaN or inf) for {rows} "
                                         f"of the {len(y)} images of test batch {batch + 1}: {where}")
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

    ``checkpoint_every`` (seconds, None: only at the end of each epoch): also write ``last`` within an
    epoch once that long has passed since the last checkpoint. Such a checkpoint records the steps
    done in the epoch (``step``) and the epoch's running training metrics (``partial``); resuming
    from it skips those batches (the epoch's order and augmentation depend only on (seed, epoch))
    and continues bit for bit like from an epoch checkpoint.
    """

    def __init__(self, model, train_data, test_data, config: TrainConfig, run_dir=None,
                 progress: bool = True, log=print, on_step=None, checkpoint_every: float | None = None):
        from ..data import DataLoader
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
        self.optimizer = self._make_optimizer()
        total_steps = config.epochs * len(self.train_loader)
        # A short run (e.g. --epochs 1) keeps at least half of its steps for the cosine decay.
        warmup_steps = min(round(config.warmup_epochs * len(self.train_loader)), total_steps // 2)
        self.scheduler = WarmupCosineLR(self.optimizer, warmup_steps=warmup_steps, total_steps=total_steps)
        self.epoch = 0  # number of finished epochs
        self.step = 0  # optimisation steps finished in epoch self.epoch + 1 (non-zero after a mid-epoch resume)
        self.partial = _empty_partial()  # that epoch's running training metrics
        self.history: list = []  # one dict of metrics per finished epoch
        if checkpoint_every is not None and not (isinstance(checkpoint_every, (int, float)) and checkpoint_every >= 0):
            raise ValueError(f"checkpoint_every must be a number of seconds >= 0 or None, got {checkpoint_every!r}")
        self.checkpoint_every = checkpoint_every
        self._last_checkpoint = time.monotonic()

    def _make_optimizer(self):
        from ..optim import SGD, weight_decay_groups

        cfg = self.config
        return SGD(weight_decay_groups(self.model, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum,
                   nesterov=cfg.nesterov)

    # -- the loop ------------------------------------------------------------------------------------
    def fit(self) -> list:
        """Train from ``self.epoch`` to ``config.epochs``; returns the metrics history.

        Holds the run directory's lock throughout (``RunDirectoryLocked`` if another process
        trains into it). Stops with ``TrainingDiverged`` (a ``FloatingPointError``) at a
        non-finite loss, before the step it would have poisoned."""
        if self.run_dir is None:
            return self._fit()
        with lock_run_dir(self.run_dir):
            return self._fit()

    def _fit(self) -> list:
        culprit = non_finite_array(self.model)
        if culprit is not None and self.epoch < self.config.epochs:
            raise TrainingDiverged(
                f"the weights are already non-finite before training ({culprit!r} holds NaN or inf): the model was "
                "built or given with them, so a lower learning rate would not help", weights=True)
        for epoch in range(self.epoch, self.config.epochs):
            train = self.train_epoch(epoch)
            started = time.perf_counter()
            test = evaluate(self.model, self.test_loader, tta=self.config.tta, progress=self.progress)
            eval_seconds = time.perf_counter() - started
            self.epoch, self.step, self.partial = epoch + 1, 0, _empty_partial()
            record = {
                "epoch": self.epoch,
                "lr": self.scheduler.get_last_lr()[0],
                "train_loss": train["loss"], "train_acc": train["acc"],
                "test_loss": test["loss"], "test_acc": test["acc"],
                "seconds": train["seconds"], "images_per_s": train["images_per_s"],
                "data_seconds": train["data_seconds"], "step_seconds": train["step_seconds"],
                "eval_seconds": eval_seconds, "checkpoint_seconds": train["checkpoint_seconds"],
            }
            is_best = all(record["test_acc"] > h["test_acc"] for h in self.history)
            self.history.append(record)
            saving = time.perf_counter()
            if self.run_dir is not None:
                self.save(best=is_best)
            # The summary adds this end-of-epoch write to the epoch's checkpoint time; the saved
            # history (written by that very save) holds the mid-epoch writes only.
            self.log(self._summary(record, end_checkpoint=time.perf_counter() - saving))
        return self.history

    def train_epoch(self, epoch: int) -> dict:
        """One pass over the training set; returns mean loss, accuracy, seconds, images/s and where
        the seconds went: ``data_seconds`` (waiting for the next batch: shuffling, augmentation,
        normalisation), ``checkpoint_seconds`` (mid-epoch checkpoints) and ``step_seconds`` (the rest:
        forward, loss, backward, optimiser and scheduler steps).
        After a mid-epoch resume (``self.step`` > 0, ``epoch == self.epoch``) the first ``self.step``
        batches were trained on before: they are drawn (the same order and augmentation) and skipped."""
        from tqdm import tqdm

        model, loader, cfg = self.model, self.train_loader, self.config
        model.train()
        loader.set_epoch(epoch)  # this epoch's shuffle and augmentation depend only on (seed, epoch)
        first = self.step if epoch == self.epoch else 0
        p = self.partial if first else _empty_partial()
        total_loss, correct, seen = p["loss"], p["correct"], p["seen"]
        phases = {key: p.get(key, 0.0) for key in ("data_seconds", "checkpoint_seconds")}
        start = time.perf_counter() - p["seconds"]
        bar = tqdm(loader, total=len(loader), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   leave=False, disable=not self.progress, dynamic_ncols=True, initial=0)
        try:
            for step, (x, y) in enumerate(_timed(bar, phases, "data_seconds")):
                if step < first:  # trained on before the mid-epoch checkpoint this run resumed from
                    continue
                logits = model(Tensor(x))
                loss = cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
                value = loss.item()
                if not math.isfinite(value):  # before the update: the weights stay those of the last good step
                    raise self._diverged(epoch, step, value)
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                self.scheduler.step()

                total_loss += value * len(y)
                correct += count_correct(logits.data, y)
                seen += len(y)
                elapsed = time.perf_counter() - start
                bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.1%}",
                                img_s=f"{seen / elapsed:.0f}", refresh=False)
                self.step = step + 1
                self.partial = {"loss": total_loss, "correct": correct, "seen": seen, "seconds": elapsed, **phases}
                if (self.run_dir is not None and self.checkpoint_every is not None and self.step < len(loader)
                        and time.monotonic() - self._last_checkpoint >= self.checkpoint_every):
                    saving = time.perf_counter()
                    self.save()  # a mid-epoch checkpoint: `last` only
                    phases["checkpoint_seconds"] += time.perf_counter() - saving
                if self.on_step is not None:
                    self.on_step(epoch, step, value)
        finally:
            bar.close()  # also on an error or Ctrl-C: no half-drawn bar before the message
        seconds = time.perf_counter() - start
        return {"loss": total_loss / seen, "acc": correct / seen, "seconds": seconds,
                "images_per_s": seen / seconds, **phases,
                "step_seconds": seconds - phases["data_seconds"] - phases["checkpoint_seconds"]}

    def _diverged(self, epoch: int, step: int, value: float) -> "TrainingDiverged":
        where = f"epoch {epoch + 1}, step {step + 1}"
        culprit = non_finite_array(self.model)
        if culprit is not None:
            return TrainingDiverged(
                f"the weights are already non-finite ({culprit!r} holds NaN or inf) at {where}, so the loss is "
                f"{value}: an earlier step of this run made them so (its update or the BatchNorm statistics "
                f"overflowed); a lower learning rate than {self.config.lr:g} should help", weights=True)
        lr = self.optimizer.param_groups[0]["lr"]
        return TrainingDiverged(
            f"the loss became non-finite ({value}) at {where} with finite weights (learning rate {lr:.4g} of "
            f"peak {self.config.lr:g}): training diverged; a lower learning rate should help", weights=False)

    def _summary(self, r: dict, end_checkpoint: float = 0.0) -> str:
        return (f"epoch {r['epoch']:>3}/{self.config.epochs}  "
                f"train loss {r['train_loss']:.4f} acc {r['train_acc']:6.2%}  "
                f"test loss {r['test_loss']:.4f} acc {r['test_acc']:6.2%}  "
                f"lr {r['lr']:.4f}  {r['seconds']:.1f} s  {r['images_per_s']:.0f} img/s"
                + ("" if "step_seconds" not in r else
                   f"  [steps {r['step_seconds']:.1f} s, data {r['data_seconds']:.1f} s, "
                   f"test {r['eval_seconds']:.1f} s, checkpoints {r['checkpoint_seconds'] + end_checkpoint:.1f} s]"))

    # -- checkpoints ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue the run exactly (arrays and plain values). ``step`` and
        ``partial``: the steps done in the unfinished epoch ``epoch + 1`` and its running training
        metrics (0 and zeros at an epoch's end)."""
        return {
            "epoch": self.epoch,
            "step": self.step,
            "partial": dict(self.partial),
            "config": dataclasses.asdict(self.config),
            "history": self.history,
            "model": dict(self.model.state_dict()),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {"minimix": mm_random.get_state()},
        }

    def load_state_dict(self, state: dict, source="checkpoint"):
        """Continue from ``state`` (``state_dict()`` of the run, as saved); errors name ``source``.

        Refuses a state whose config differs from this trainer's, whose config disagrees with its
        own optimizer and scheduler state (e.g. an ``lr`` edited in the JSON), or whose arrays
        have the wrong dtype; nothing is changed unless all of it fits.
        (An older checkpoint's ``rng["numpy"]`` is ignored: nothing uses NumPy's global state.)
        """
        check_state(state, source, resume=True)
        TrainConfig.from_dict(state["config"], source=source)
        saved = {k: v for k, v in state["config"].items() if k != "data"}
        ours = {k: v for k, v in dataclasses.asdict(self.config).items() if k != "data"}
        changed = {k: (saved.get(k), v) for k, v in ours.items() if saved.get(k) != v}
        if changed:
            detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in changed.items())
            raise ValueError(f"cannot resume: the recipe differs from the checkpoint's ({detail})")
        self._check_saved_schedule(state, source)
        try:  # on scratch objects first: nothing changes unless everything loads
            self._make_optimizer().load_state_dict(state["optimizer"])
            generator = np.random.default_rng()
            generator.bit_generator.state = state["rng"]["minimix"]
        except (ValueError, TypeError, KeyError) as err:
            raise CheckpointError(f"{source}: cannot restore the optimizer or random state: {err}") from None
        load_weights(self.model, state["model"], source)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        mm_random.set_state(state["rng"]["minimix"])
        self.epoch = int(state["epoch"])
        self.step = int(state.get("step", 0))
        self.partial = dict(state.get("partial") or _empty_partial())
        self.history = list(state["history"])
        return self

    def _check_saved_schedule(self, state: dict, source):
        """The saved optimizer and scheduler state must be what the saved config gives: the
        schedule keeps its own peak rate and step counts on resume, so a config edited afterwards
        would claim values the run does not use."""
        cfg = self.config
        fresh_groups = self.optimizer.state_dict()["param_groups"]  # built from the config
        fresh_schedule = self.scheduler.state_dict()
        saved_groups, saved_schedule = state["optimizer"]["param_groups"], state["scheduler"]
        steps_per_epoch = len(self.train_loader)
        # state entry -> the config key it comes from (None: fixed by the recipe)
        group_keys = {"initial_lr": "lr", "weight_decay": "weight_decay", "momentum": "momentum",
                      "nesterov": "nesterov", "dampening": None}
        schedule_keys = {"base_lrs": "lr", "warmup_steps": "warmup_epochs", "total_steps": "epochs",
                         "min_lr": None}
        problems, named = [], set()

        def compare(where, saved, expected, key):
            if saved == expected or (key or where) in named:
                return
            named.add(key or where)
            if key is None:
                problems.append(f"the saved {where} is {saved!r}, the recipe gives {expected!r}")
            else:
                extra = (f" (x {steps_per_epoch} batches per epoch: batch_size {cfg.batch_size}, limit {cfg.limit})"
                         if key == "epochs" else "")
                problems.append(f"{key} is {getattr(cfg, key)!r} in the config{extra}, but the saved {where} is "
                                f"{saved!r} (the config gives {expected!r})")

        if len(saved_groups) != len(fresh_groups):
            raise CheckpointError(f"{source}: the saved optimizer has {len(saved_groups)} parameter groups, "
                                  f"the recipe gives {len(fresh_groups)}")
        for i, (saved, fresh) in enumerate(zip(saved_groups, fresh_groups)):
            for entry, key in group_keys.items():
                compare(f"optimizer param_groups[{i}][{entry!r}]", saved.get(entry), fresh[entry], key)
        for entry, key in schedule_keys.items():
            compare(f"scheduler {entry!r}", saved_schedule.get(entry), fresh_schedule[entry], key)
        step = state.get("step", 0)
        within = f" + {step} steps" if step else ""
        compare(f"scheduler step 'last_epoch' (epoch {state['epoch']} x {steps_per_epoch} batches{within})",
                saved_schedule.get("last_epoch"), state["epoch"] * steps_per_epoch + step, None)
        if problems:
            raise ValueError(f"{source}: the config disagrees with the saved optimizer/scheduler state, which "
                             "resuming would keep: " + "; ".join(problems)
                             + ". Put the config back as it was saved, or start a new run with the new values")

    def save(self, best: bool = False) -> Path:
        """Write ``last`` (and ``best``) checkpoints, then the metrics CSV, into ``run_dir``."""
        path = save_checkpoint(self.run_dir, self.state_dict(), names=("last", "best") if best else ("last",))
        write_log(self.run_dir / "metrics.csv", self.history)
        self._last_checkpoint = time.monotonic()
        return path

    def resume(self, path) -> "Trainer":
        """Load the checkpoint at ``path`` (run directory, .json or .npz) and continue from it."""
        meta = resolve_checkpoint(path)
        return self.load_state_dict(load_checkpoint(meta), source=meta)


def _empty_partial() -> dict:
    """The running training metrics of an epoch before its first step (and the seconds spent so
    far waiting for data and writing mid-epoch checkpoints)."""
    return {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0, "data_seconds": 0.0, "checkpoint_seconds": 0.0}


_PHASE_KEYS = ("data_seconds", "checkpoint_seconds")  # absent from the checkpoints of older minimix versions


def _timed(iterable, totals: dict, key: str):
    """Yield the items of ``iterable``, adding the seconds each ``next`` took to ``totals[key]``."""
    iterator = iter(iterable)
    while True:
        started = time.perf_counter()
        try:
            item = next(iterator)
        except StopIteration:
            return
        totals[key] += time.perf_counter() - started
        yield item


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or inf. ``weights``: the weights were already non-finite before the step
    (False: they were finite and this step's loss overflowed)."""

    def __init__(self, message: str, weights: bool):
        super().__init__(message)
        self.weights = weights
