"""Build a run's model and data from its ``TrainConfig`` (shared by ``train`` and ``evaluate``)."""
from __future__ import annotations

import hashlib
import inspect
import math
import os
import sys
from pathlib import Path

import numpy as np


def model_builders() -> dict:
    """``minimix.models.MODELS``: model name -> builder function."""
    from ..models import MODELS

    return MODELS


def build_model(name: str, model_kwargs: dict | None = None, num_classes: int = 10):
    """Call the builder ``MODELS[name](num_classes=..., **model_kwargs)``.

    Keyword arguments the builder does not take are refused with the list of those it does take,
    so ``--kernels`` on a model without kernel choices is an error, not silently ignored.
    """
    builders = model_builders()
    if name not in builders:
        raise ValueError(f"unknown model {name!r}; available models: {', '.join(sorted(builders))}")
    builder = builders[name]
    model_kwargs = dict(model_kwargs or {})
    params = inspect.signature(builder).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    refused = [k for k in model_kwargs if k not in params and not takes_any]
    if refused:
        accepted = [k for k, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        raise ValueError(f"model {name!r} does not accept {refused}; its options are {accepted}")
    return builder(num_classes=num_classes, **model_kwargs)


# -- small runs (--limit) ----------------------------------------------------------------------------
# The recipe's peak learning rate (TrainConfig.lr, 0.2) is set for its batch of 256 and a warmup of
# one epoch of the full data (195 steps). `train --limit 2048 --epochs 3` at batch 256 has 8 steps
# per epoch: the warmup reached 0.2 in 8 steps from the initial weights and training diverged
# (measured on the real data: epoch 1 train loss 2.81, epoch 2 train loss 3.58 and test loss 5,888,
# 10-11% test accuracy). So a run on a subset keeps at least MIN_STEPS_PER_EPOCH steps per epoch
# by halving the batch (not below MIN_BATCH), and the peak learning rate follows the batch (linear
# scaling: 0.2 x batch / 256), halved again when the warmup is shorter than the full recipe's 195
# steps (it climbs faster). Same run, 3 epochs, batch 64 (test accuracy per epoch, test loss):
# lr 0.05: 14.4/20.0/27.1%, test loss 2.34/10.44/2.22 (a spike at the peak); lr 0.025 (the rule):
# 10.0/22.0/30.2%, test loss 2.40/2.05/1.92.
REFERENCE_BATCH = 256
REFERENCE_WARMUP_STEPS = 195  # one epoch of the 50,000 training images at batch 256
MIN_STEPS_PER_EPOCH = 32
MIN_BATCH = 16


def small_run_batch(limit: int | None, batch: int = REFERENCE_BATCH) -> int:
    """The batch of a run on ``limit`` training images when none is given: ``batch`` halved until an
    epoch has at least ``MIN_STEPS_PER_EPOCH`` steps, but not below ``MIN_BATCH``
    (``--limit 2048`` -> 64; the full 50,000 images keep 256)."""
    if limit is None:
        return batch
    while batch > MIN_BATCH and limit / batch < MIN_STEPS_PER_EPOCH:
        batch //= 2
    return batch


def scaled_lr(batch: int, lr: float, warmup_steps: float | None = None, reference: int = REFERENCE_BATCH) -> float:
    """The peak learning rate for ``batch`` when ``lr`` is the one for ``reference`` (linear scaling),
    halved when the run warms up in fewer than ``REFERENCE_WARMUP_STEPS`` steps (None: the full data)."""
    short = warmup_steps is not None and warmup_steps < REFERENCE_WARMUP_STEPS
    return lr * batch / reference * (0.5 if short else 1.0)


# The recipe starts MixNets from PyTorch's layer defaults, not the paper's initialisation (the
# model builders' default): with this recipe the paper's init (He-normal on fan-out, classifier
# +-1/sqrt(10): initial loss ~3 instead of ln 10) trains much more slowly; the measured runs are in
# README, "Results".
RECIPE_INIT = "pytorch"


def recipe_config(train_images: int | None = None, log=None, **options):
    """The ``TrainConfig`` of ``python -m minimix train`` for a run on ``train_images`` training
    images (None: all 50,000), with ``options`` (TrainConfig fields) as given:

    * without ``batch_size``, a run on fewer images halves the batch (256) until an epoch has at
      least ``MIN_STEPS_PER_EPOCH`` steps (``small_run_batch``);
    * without ``lr``, the peak learning rate is 0.2 x batch / 256, halved when the warmup is shorter
      than the full recipe's 195 steps (``scaled_lr``);
    * a model that takes ``init`` (the MixNets) starts from ``RECIPE_INIT`` unless
      ``model_kwargs`` says otherwise.

    ``log`` (e.g. ``print``) receives one line naming what was chosen. ``options["limit"]``, when
    given, is the number of training images (what ``--limit`` does)."""
    from .trainer import TrainConfig

    options = dict(options)
    default = TrainConfig()
    images = options.get("limit", train_images)
    notes = []
    if "batch_size" not in options and images is not None:
        batch = small_run_batch(images, default.batch_size)
        if batch != default.batch_size:
            options["batch_size"] = batch
            source = f"--limit {images}" if "limit" in options else f"{images} training images"
            notes.append(f"batch {batch} ({source}: at least {MIN_STEPS_PER_EPOCH} steps per epoch)")
    batch = options.get("batch_size", default.batch_size)
    if "lr" not in options:
        warmup = None if images is None else images // batch * options.get("warmup_epochs", default.warmup_epochs)
        lr = scaled_lr(batch, default.lr, warmup)
        if lr != default.lr:
            options["lr"] = lr
            halved = lr != default.lr * batch / REFERENCE_BATCH
            notes.append(f"peak learning rate {lr:g} ({default.lr:g} x {batch}/{REFERENCE_BATCH}"
                         + (f", halved: a warmup of {warmup:g} steps, not {REFERENCE_WARMUP_STEPS}" if halved else "")
                         + ")")
    config = TrainConfig(**options)
    if "init" not in config.model_kwargs and builder_accepts(config.model, "init"):
        config.model_kwargs = {**config.model_kwargs, "init": RECIPE_INIT}
    if notes and log is not None:
        log("recipe for this run: " + ", ".join(notes))
    return config


def builder_accepts(name: str, kwarg: str) -> bool:
    """Whether ``MODELS[name]`` takes the keyword ``kwarg`` (directly or through ``**knobs``)."""
    builder = model_builders().get(name)
    if builder is None:
        return False
    params = inspect.signature(builder).parameters
    return kwarg in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def absolute(path) -> str:
    """``path`` as an absolute path with symbolic links resolved (``~`` expanded)."""
    return str(Path(path).expanduser().resolve())


def data_location(given=None, saved=None) -> tuple[str, str]:
    """``(absolute dataset location, where it came from)``: ``given`` (``--data``), else
    ``$MINIMIX_DATA``, else ``saved`` (the location a run's config stores), else the minimix cache
    folder (``minimix.data.CIFAR10``'s own last resort). A run stores this location in its config, so
    ``evaluate`` and ``--resume`` in a new shell find the data without ``MINIMIX_DATA``."""
    if given:
        return absolute(given), "--data"
    if os.environ.get("MINIMIX_DATA"):
        return absolute(os.environ["MINIMIX_DATA"]), "$MINIMIX_DATA"
    if saved:
        return saved, "the run's config"
    from ..data.cache import cache_dir

    return absolute(cache_dir()), "the minimix cache folder (neither --data nor $MINIMIX_DATA is set)"


# Measured on 2 cores: decoding the 60,000 images of an image-folder copy (PNG/JPEG, e.g. the
# JPEG archive in ../shared/data) took 25-35 s; the official pickled/binary archives take a few.
DECODE_SECONDS = {"images": "about 30 s", "python": "a few seconds", "binary": "a few seconds"}


def cifar_cache_is_cold(data_root) -> tuple[str, Path] | None:
    """``(kind of source, cache folder)`` when loading CIFAR-10 from ``data_root`` would decode it
    (no complete cache entry for its current files), None when it is cached or not found (then
    ``CIFAR10`` reports it). Only looks at file names and stats, reads no data."""
    from ..data import cache
    from ..data.cifar import find_source, resolve_root

    try:
        source = find_source(resolve_root(data_root)[0])
        if source is None:
            return None
        key = cache.fingerprint(source.files())
    except (OSError, ValueError):
        return None
    entries = [p for split in ("train", "test") for p in cache._paths("cifar10", source.path, key, split)]
    return None if all(p.is_file() for p in entries) else (source.kind, cache.cache_dir())


def load_split(data_root, train: bool, log=None):
    """``(images uint8 (N, 32, 32, 3), labels int64 (N,), classes)`` of CIFAR-10's train or test split.
    With ``log`` (e.g. ``print``), says so before a first load decodes the data set."""
    from ..data import CIFAR10

    if log is not None:
        cold = cifar_cache_is_cold(data_root)
        if cold is not None:
            log(f"decoding CIFAR-10 once ({DECODE_SECONDS.get(cold[0], 'up to a minute')}), cached in {cold[1]}")
    try:
        dataset = CIFAR10(root=data_root, train=train)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err}\nOn the command line: pass --data PATH, or `export MINIMIX_DATA=PATH` "
                                "(PATH: a folder or archive as listed above).") from None
    return dataset.images, dataset.labels, list(dataset.classes)


# -- the Numba kernels' compile cache ----------------------------------------------------------------
# Numba compiles minimix's kernels (minimix/kernels/*_numba.py, vector_math.py) on their first call
# and caches the machine code (cache=True) in $NUMBA_CACHE_DIR, else in minimix/kernels/__pycache__.
# A marker file written beside that cache after a first successful epoch tells a later run that
# the cache is warm; its name hashes what Numba's cache depends on (the kernels' source, where they
# live, Python's and Numba's versions), so an edited kernel or a new Numba says "compiling" again.
# The compilation happens in epoch 1's first steps and first test; how long it takes depends on the
# machine, so the message points at the measured run in README "Results" (its epoch times are there).
COMPILE_TIME = "epoch 1 takes longer than the others: about 1 min more in the README's clean run on 2 cores"


def numba_cache_dir() -> Path:
    """Where Numba caches minimix's compiled kernels."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"]).expanduser()
    return Path(__file__).resolve().parent.parent / "kernels" / "__pycache__"


def _compile_marker() -> Path | None:
    """The marker file of the current kernels, or None without Numba."""
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec("numba") is None:
        return None
    kernels = Path(__file__).resolve().parent.parent / "kernels"
    digest = hashlib.sha256(f"{importlib.metadata.version('numba')}|{sys.version}|{kernels}".encode())
    for source in sorted(kernels.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return numba_cache_dir() / f"minimix-kernels-{digest.hexdigest()[:16]}.compiled"


def numba_cache_is_cold() -> bool:
    """Whether the kernels will be compiled in this process (no marker of a finished first epoch)."""
    try:
        marker = _compile_marker()
    except OSError:
        return False
    return marker is not None and not marker.is_file()


def mark_numba_cache_warm():
    """Record that the kernels were compiled and cached (after a first successful epoch)."""
    try:
        marker = _compile_marker()
        if marker is not None and not marker.is_file():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text("minimix's Numba kernels were compiled and cached here\n")
    except OSError:  # a read-only cache: the message will be shown again, nothing worse
        pass


def balanced_subset(images, labels, limit: int | None):
    """The first ``limit`` images taking the classes in turn: the first image of every class, then
    the second of every class, ... (kept in dataset order).

    Plain ``images[:limit]`` would be all airplanes on a dataset stored class by class (as the
    image-folder trees are); this gives every class ``limit / C`` images (+-1) in any storage order.
    """
    if limit is None or limit >= len(labels):
        return images, labels
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    rank = np.empty(len(labels), dtype=np.int64)  # rank[i] = how many images of i's class come before i
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rank[members] = np.arange(len(members))
    keep = np.sort(np.lexsort((labels, rank))[:limit])  # by rank, then label
    return images[keep], labels[keep]


def proportional_test_limit(limit: int | None, train_size: int, test_size: int) -> int | None:
    """Test images to use with ``--limit``: the same fraction of the test set as of the training
    set (2,048 of CIFAR-10's 50,000 training images -> 410 of its 10,000 test images)."""
    if limit is None or limit >= train_size:
        return None
    return max(1, math.ceil(limit * test_size / train_size))
