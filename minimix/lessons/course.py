"""What every lesson notebook needs besides the library: the fast-mode switch, the data (CIFAR-10,
or a labelled synthetic stand-in), a finished checkpoint when there is one, and a timer.

Environment variables read here:

* ``MINIMIX_FAST=1``: fast mode. Lessons shrink their data subsets and epochs so the whole course
  runs in CI in a few minutes; results are then only a smoke test, not meaningful numbers.
* ``MINIMIX_DATA``: where CIFAR-10 is (see :class:`minimix.data.CIFAR10`).
* ``MINIMIX_CHECKPOINT``: a finished training run (run directory, checkpoint ``.json`` or ``.npz``)
  for the lessons that look at a trained network; otherwise completed full-data runs in ``runs/``,
  else the small trained checkpoint shipped in ``minimix/lessons/checkpoints/``.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

CHECKPOINT_VARIABLE = "MINIMIX_CHECKPOINT"


def fast_mode(verbose: bool = True) -> bool:
    """True when ``MINIMIX_FAST`` is set to 1/true/yes (the CI setting)."""
    fast = os.environ.get("MINIMIX_FAST", "").strip().lower() in {"1", "true", "yes", "on"}
    if verbose:
        print("FAST mode (MINIMIX_FAST=1): tiny subsets and few steps -- a smoke test, not real results"
              if fast else "full mode: meaningful (slower) settings; set MINIMIX_FAST=1 for a quick run")
    return fast


class LessonData(NamedTuple):
    """Training and test images (uint8 (N, 32, 32, 3)) and labels (int64 (N,)), as CIFAR10 gives them."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple
    synthetic: bool  # True: the synthetic stand-in (minimix.lessons.synthetic), not CIFAR-10


def load_data(train_limit: int | None = None, test_limit: int | None = None, root=None,
              verbose: bool = True) -> LessonData:
    """CIFAR-10 (``root`` or ``$MINIMIX_DATA``), cut to class-balanced subsets of ``train_limit``
    and ``test_limit`` images; when no CIFAR-10 is found, the synthetic stand-in of the same sizes
    (default 5,000 and 1,000 images), with a message saying so."""
    from ..data import CIFAR10
    from ..training.recipe import balanced_subset

    try:
        train, test = CIFAR10(root=root, train=True), CIFAR10(root=root, train=False)
    except FileNotFoundError as error:
        from .synthetic import CLASSES, synthetic_images

        first_line = str(error).splitlines()[0]
        n_train, n_test = train_limit or 5000, test_limit or 1000
        if verbose:
            print(f"CIFAR-10 NOT FOUND ({first_line})\n"
                  f"=> using the SYNTHETIC stand-in dataset instead: {n_train} training and {n_test} test "
                  "images of coloured stripes (minimix.lessons.synthetic). The code runs the same, but the "
                  "numbers say nothing about CIFAR-10. Set MINIMIX_DATA to a CIFAR-10 folder or archive "
                  "for real results.")
        train_images, train_labels = synthetic_images(n_train, seed=0)
        test_images, test_labels = synthetic_images(n_test, seed=1)
        return LessonData(train_images, train_labels, test_images, test_labels, CLASSES, True)
    train_images, train_labels = balanced_subset(train.images, train.labels, train_limit)
    test_images, test_labels = balanced_subset(test.images, test.labels, test_limit)
    if verbose:
        print(f"CIFAR-10 from {train.source}: {len(train_labels):,} training and {len(test_labels):,} test "
              "images (class-balanced subsets)")
    return LessonData(train_images, train_labels, test_images, test_labels, tuple(train.classes), False)


SHIPPED_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "mixnet_cifar.json"


def _completed_full_run(meta: Path):
    """``(accuracy, epochs)`` if the checkpoint ``meta`` ends a completed training run on the full data
    (every epoch of its recipe done, no ``--limit``/``--test-limit``), else None."""
    import json

    try:
        record = json.loads(meta.read_text())["state"]  # the saved state's plain values (arrays are in the .npz)
        config, history = record["config"], record.get("history") or []
        done = record["epoch"] == config["epochs"] and config.get("limit") is None \
            and config.get("test_limit") is None
        accuracy = max(float(h["test_acc"]) for h in history) if history else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (accuracy, record["epoch"]) if done and accuracy is not None else None


def find_checkpoint(search_from=None, verbose: bool = True) -> Path | None:
    """The checkpoint the lessons use for "a trained network", saying which one and its accuracy.

    Order: ``$MINIMIX_CHECKPOINT`` (an error if it names nothing); else the most recent COMPLETED
    full-data run under ``runs/`` in ``search_from`` (default: the working directory) or its parent
    (the repository root when a notebook runs in ``lessons/``): every epoch of its recipe done, no
    ``--limit`` (a quick look is not a trained model); else the small checkpoint shipped with minimix
    (``minimix/lessons/checkpoints/``: its JSON records the recipe, accuracy and commit).
    """
    from ..training import resolve_checkpoint

    named = os.environ.get(CHECKPOINT_VARIABLE)
    if named:
        path = Path(named).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"${CHECKPOINT_VARIABLE} is {named!r}, which does not exist; point it at a "
                                    "run directory, a checkpoint .json or its .npz (or unset it)")
        found = resolve_checkpoint(path)
        if verbose:
            print(f"checkpoint: {found} (from ${CHECKPOINT_VARIABLE})")
        return found
    here = Path(search_from or Path.cwd()).resolve()
    candidates, skipped = [], 0
    for folder in (here, here.parent):
        for run in sorted((folder / "runs").glob("*/")):
            meta = next((m for m in (run / "best.json", run / "last.json") if m.is_file()), None)
            if meta is None:
                continue
            result = _completed_full_run(meta)
            if result is None:
                skipped += 1
            else:
                candidates.append((meta.stat().st_mtime, meta, result))
    if candidates:
        _, found, (accuracy, epochs) = max(candidates, key=lambda c: c[0])
        if verbose:
            print(f"checkpoint: {found} (your completed run: {epochs} epochs, best test accuracy {accuracy:.2%})")
        return found
    if not SHIPPED_CHECKPOINT.is_file():  # a copy of minimix without its package data
        if verbose:
            print("No trained checkpoint found (no $MINIMIX_CHECKPOINT, no completed run in runs/, no shipped "
                  "checkpoint): skipping the parts that need a trained network. To get one: "
                  "`python -m minimix train --epochs 15` from the repository root.")
        return None
    found = SHIPPED_CHECKPOINT
    if verbose:
        import json

        info = json.loads(found.read_text())
        extra = f" ({skipped} unfinished or --limit run(s) in runs/ not used)" if skipped else ""
        print(f"checkpoint: the one shipped with minimix{extra}: {info['description']}, test accuracy "
              f"{info['test_accuracy']:.2%}. Set ${CHECKPOINT_VARIABLE}=runs/<run> to use your own.")
    return found


def load_trained_model(checkpoint):
    """``(model, config, state)`` from a checkpoint: the model is rebuilt from the saved recipe
    (``config.model``, ``config.model_kwargs``) and its weights loaded; ``state`` is the whole
    saved dict (``state["history"]`` holds the per-epoch metrics)."""
    from ..training import load_weights, read_checkpoint
    from ..training.recipe import build_model

    if Path(checkpoint).resolve() == SHIPPED_CHECKPOINT:
        return _load_shipped(build_model)
    meta, state, config = read_checkpoint(checkpoint)  # checks keys, dtypes, finiteness and the config
    model = build_model(config.model, config.model_kwargs)
    load_weights(model, state["model"], meta)
    model.eval()
    return model, config, state


def _load_shipped(build_model):
    """The shipped checkpoint: weights stored in float16 (half the size), loaded into the float32 model."""
    import json

    from ..training import TrainConfig

    info = json.loads(SHIPPED_CHECKPOINT.read_text())
    config = TrainConfig.from_dict(info["config"], source=SHIPPED_CHECKPOINT)
    model = build_model(config.model, config.model_kwargs)
    with np.load(SHIPPED_CHECKPOINT.with_suffix(".npz")) as arrays:
        weights = {k: arrays[k].astype(np.float32) for k in arrays.files}
    if not all(np.isfinite(w).all() for w in weights.values()):
        raise ValueError(f"{SHIPPED_CHECKPOINT.with_suffix('.npz')}: non-finite weights (damaged file)")
    model.load_state_dict(weights)
    model.eval()
    return model, config, {"epoch": info["epoch"], "history": info["history"], "config": info["config"]}


def best_time(fn, repeat: int = 3) -> float:
    """The fastest of ``repeat`` timed calls of ``fn()``, in seconds (the least disturbed run)."""
    if repeat < 1:
        raise ValueError(f"best_time: repeat must be >= 1, got {repeat}")
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
