"""The MixConv paper's kernel-size study on CIFAR-10: ``python -m minimix study kernels``.

Tan & Le (2019) support MixConv with one experiment: make every depthwise kernel of a network
larger, 3x3 -> 5x5 -> ... -> 13x13, and watch accuracy rise, then fall beyond about 9x9 while the
cost keeps growing; then mix several sizes in one layer. This module reruns that experiment on
``mixnet_cifar`` (MixNet-S's table for 32x32 images), one variant per row of ``VARIANTS``:

==================  =========================  ===============================================
variant             every MixConv becomes      question
==================  =========================  ===============================================
k3 ... k11          one kernel size k          does accuracy rise, then fall, with k?
mix35, mix357,      MixConv (3,5), (3,5,7),    does mixing beat one size of the same largest
mix3579             (3,5,7,9), equal split     kernel (mix357 vs k7)?
mix3579-exp         (3,5,7,9), exponential     half the channels to 3x3, a quarter to 5x5 ...
                    split
mix3579-dilated     (3,5,7,9) as 3x3 kernels   dilated kernels instead of large ones (the
                    at dilation 1,2,3,4        reference code's option; stride-1 blocks only)
==================  =========================  ===============================================

The stem (a plain 3x3 conv) and the 1x1 convolutions are the same in every variant.

How it runs. Every (variant, seed) is an ordinary training run of the recipe
(``minimix.training.recipe.recipe_config``: the recipe of ``python -m minimix train``, only the
model's kernels, the width, the epochs, the seed and the data limit set here) in its own directory
``OUT/<variant>/seed<seed>``, checkpointed after every epoch and every ``checkpoint_minutes``
within one. The runner goes through the runs in order: a finished run is skipped, an unfinished one
is resumed from its last checkpoint (bit for bit the run that was not interrupted), a new one is
started. So the study can be killed at any moment and continued by running the same command again
(in the same or a later session); ``study.json`` in each run directory records the commit and the
CPU of every session that trained it. A finished run also leaves a record, one small JSON file in
``docs/results/kernel-study-records/<variant>/seed<seed>.json`` (:func:`write_record`: its recipe, every
epoch's metrics, the final test, the receptive fields, the sessions). The records are committed with the
results; the checkpoints (megabytes per run) are not, and a fresh clone of the repository has none. So a
later session on a new machine skips every run that has a record and continues with the rest, and the
results are collected from the records alone. After the runs, :func:`collect` writes the results table,
one row per variant (``kernel-study.csv``), one row per run (``kernel-study-runs.csv``), two
figures and the table of ``kernel-study.md``.

The accuracy of a run is the test accuracy of its final weights on all 10,000 test images (not its
best epoch: picking the best of several evaluations on the test set would flatter every variant by its
noise), measured once when the run finishes (:func:`final_test`).

The budget (the defaults of :func:`run_study` and of the command): 5 epochs of 12,800 training images
(batch 64, 200 steps per epoch) at width 0.25, seeds 0, 1 and 2: about 6 hours for the 30 runs on this
machine's 2 cores, from training steps of every variant measured on it. The full reasoning is ``BUDGET``,
printed in ``docs/results/kernel-study.md``.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# -- the variants --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Variant:
    """One network of the study: every MixConv of ``mixnet_cifar`` gets ``kernel_sizes`` (one
    entry: a plain depthwise conv), split ``split`` ("equal"/"exponential"), and with ``dilated``
    its kernels larger than 3x3 become dilated 3x3 kernels in stride-1 blocks."""

    name: str
    kernel_sizes: tuple
    split: str = "equal"
    dilated: bool = False

    @property
    def largest_kernel(self) -> int:
        """The largest kernel size (for dilated kernels, the window they span), the x position in the figures."""
        return max(self.kernel_sizes)

    def model_kwargs(self, width: float) -> dict:
        """The ``mixnet_cifar`` keyword arguments (JSON-ready: lists, not tuples)."""
        return {"width_multiplier": float(width), "kernel_sizes": list(self.kernel_sizes),
                "split": self.split, "dilated": self.dilated}


VARIANTS = {v.name: v for v in [
    *(Variant(f"k{k}", (k,)) for k in (3, 5, 7, 9, 11)),
    Variant("mix35", (3, 5)),
    Variant("mix357", (3, 5, 7)),
    Variant("mix3579", (3, 5, 7, 9)),
    Variant("mix3579-exp", (3, 5, 7, 9), split="exponential"),
    Variant("mix3579-dilated", (3, 5, 7, 9), dilated=True),
]}

# -- the budget ----------------------------------------------------------------------------------

DEFAULT_EPOCHS = 5
DEFAULT_WIDTH = 0.25
DEFAULT_LIMIT = 12800
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_BATCH = 64
HOURS = 8  # the issue's limit for the whole study on this machine

# Seconds per training step (batch STEP_BATCH, width 0.25, random 32x32 inputs, 2 threads): median of 4
# steps, all 10 variants interleaved round by round in one process
# (`python benchmarks/kernel_study_steps.py --batch 64`), at STEP_MEASURED, 2 vCPU Intel Xeon with AVX-512, otherwise idle.
STEP_BATCH = 64
STEP_MEASURED = "2026-12-02 07:48 UTC"
STEP_SECONDS = {"k3": 0.39, "k5": 0.52, "k7": 0.61, "k9": 0.82, "k11": 1.03, "mix35": 0.51, "mix357": 0.58,
                "mix3579": 0.68, "mix3579-exp": 0.62, "mix3579-dilated": 0.62}
# Test images per second of the fused model at batch 500, same host: k3 577, mix3579-dilated 366, k11 206.
TEST_IMAGES_PER_SECOND = 350
HOST_NOISE = 1.3  # this host's speed moved by up to 40% within the 15-epoch reference run below
# The 15-epoch recipe (width 0.5, all 50,000 images) took 159 minutes of training on the same Intel Xeon: the
# clean run at commit f39aa8a, one uninterrupted process (README, "Results", "Earlier runs").
RECIPE_MINUTES = 159

BUDGET = """\
The budget: {epochs} epochs of {limit:,} training images (the first {per_class:,} of each class; each epoch
also tests on the same fraction of the test set, {test:,} images, as a progress signal) at batch {batch}
({steps_per_epoch} steps per epoch) and width {width}, seeds {seed_list} for each of the 10 variants ({runs} runs).
A run's accuracy is its final weights' accuracy on all 10,000 test images (``final-test.json``): on
10,000 images the standard error of an accuracy near 60% is 0.49 points, on {test:,} it would be {subset_se:.1f}.

Measured ({measured}; 2 threads, batch {step_batch}, width 0.25, the 10 variants' training steps interleaved
in one process, ``python benchmarks/kernel_study_steps.py --batch {step_batch}``, on this machine, a 2 vCPU
Intel Xeon with AVX-512, otherwise idle): {step_list} seconds per step; together {step_sum:.2f} s for one step
of every variant. The step time grows with the kernel: k11 costs {k11_over_k3:.1f}x k3.

So one seed of the study costs {step_sum:.2f} s x {steps_per_run:.0f} steps ({epochs} epochs x {limit:,} / {batch})
= {seed_hours:.2f} h of training, {seeds} seeds {train_hours:.1f} h; testing adds about {test_hours:.1f} h
(per-epoch subsets and the final 10,000 images, at about {ips} images/s). Expected: {total_hours:.1f} h, or
{noisy_hours:.1f} h if the host runs {noise:.0%} slower as it did during the 15-epoch reference run below: within the
{hours} hours.

Why three seeds. The study was planned with seeds 0 and 1, and a third seed only where two seeds' ranges
overlap. But a variant above another in both of two seeds happens 1 time in 3 when there is no real
difference between them (``chance_of_separation``), so with two seeds even a separation is weak evidence;
with three seeds each it happens 1 time in 10. Two seeds of every variant left time for a third seed of
every variant within the {hours} hours, so every variant has three, and every comparison has the same chance
of a false separation.

Why batch 64, not the recipe's 256. A first start of this study at batch 256 (50 steps per epoch, peak
learning rate 0.1 by the recipe's rule) ended k3 at 43.8% and 48.4% on the 10,000 test images (seeds 0
and 1): training had stopped on the steep part of its curve, where the seed alone moved the result by
4.7 points. At batch 64 (200 steps per epoch, peak learning
rate 0.05) an image costs the same (k3: 130-143 images/s against 130 at batch 256, same host) and a
run makes four times as many updates: k3 seed 0 ended at 58.8% (``python -m minimix train --limit 12800
--epochs 5 --batch-size 64 --width 0.25 --kernels 3``, then ``evaluate``). The batch-256 runs were stopped
and are not part of the results.

Why so small. The recipe's own budget (15 epochs of 50,000 images at width 0.5) took {recipe_minutes} minutes of
training for one run of the default network on this host (the 15-epoch reference run: the clean run at commit
f39aa8a, README "Results", "Earlier runs"); {runs} runs would take well over {recipe_hours:.0f} hours. At width
0.25 one run of all 50,000 images for {epochs} epochs would still be {full_hours:.0f} hours for the study.
Fewer images per epoch rather than fewer epochs: the warmup (1 epoch) + cosine schedule keeps its shape,
and per-epoch checkpoints stay frequent (a run continued across sessions loses little). Width 0.25 halves
the channels of the default network: in the first blocks (8 channels) each of 4 kernel sizes gets only 2
channels (1 with the exponential split), in the later blocks, where most of the computation is, 6 to 72
per size. At this budget the networks are far from converged (the full recipe reaches 85%): the study
compares how far each variant gets with the same small budget, which is not the paper's question at
ImageNet scale. Whether it still separates the variants is what the seed spread in the table says.
"""


def budget_text(epochs=DEFAULT_EPOCHS, width=DEFAULT_WIDTH, limit=DEFAULT_LIMIT, batch=DEFAULT_BATCH) -> str:
    """The "why this budget" paragraph (``BUDGET``) for these settings, with its arithmetic done from the
    measured ``STEP_SECONDS`` (width 0.25, batch ``STEP_BATCH``; another batch is scaled per image)."""
    step_sum = sum(STEP_SECONDS.values()) * batch / STEP_BATCH
    steps_per_epoch = math.ceil(limit / batch)
    steps_per_run = epochs * steps_per_epoch
    seed_hours = step_sum * steps_per_run / 3600
    test = limit // 5
    seeds = len(DEFAULT_SEEDS)
    test_hours = seeds * len(STEP_SECONDS) * (epochs * test + 10000) / TEST_IMAGES_PER_SECOND / 3600
    total = seeds * seed_hours + test_hours
    return BUDGET.format(
        epochs=epochs, width=width, limit=limit, per_class=limit // 10, test=test, batch=batch,
        steps_per_epoch=steps_per_epoch, subset_se=100 * math.sqrt(0.6 * 0.4 / max(test, 1)),
        measured=STEP_MEASURED, step_batch=STEP_BATCH,
        step_list=", ".join(f"{name} {seconds:.2f}" for name, seconds in STEP_SECONDS.items()),
        step_sum=step_sum, steps_per_run=steps_per_run, seed_hours=seed_hours, train_hours=seeds * seed_hours,
        seeds=seeds, seed_list=", ".join(map(str, DEFAULT_SEEDS[:-1])) + f" and {DEFAULT_SEEDS[-1]}",
        runs=seeds * len(STEP_SECONDS), test_hours=test_hours, ips=TEST_IMAGES_PER_SECOND, total_hours=total,
        noisy_hours=total * HOST_NOISE, noise=HOST_NOISE - 1, hours=HOURS,
        k11_over_k3=STEP_SECONDS["k11"] / STEP_SECONDS["k3"],
        recipe_minutes=RECIPE_MINUTES, recipe_hours=seeds * len(STEP_SECONDS) * RECIPE_MINUTES / 60, full_hours=seeds * step_sum * epochs * math.ceil(50000 / batch) / 3600)


# -- one run -------------------------------------------------------------------------------------

STUDY_FILE = "study.json"  # per run directory: the variant, and the commit and CPU of every session


def run_directory(out, variant: str, seed: int) -> Path:
    """``OUT/<variant>/seed<seed>``."""
    return Path(out) / variant / f"seed{seed}"


def study_config(variant: Variant, seed: int, epochs: int, width: float, limit: int | None, data=None,
                 batch_size: int | None = None):
    """The ``TrainConfig`` of one run: the CLI's recipe (``recipe_config``) with this variant's model.
    ``batch_size`` None: the recipe's rule for runs on few images (``small_run_batch``); the peak learning
    rate always follows the batch by the recipe's rule (``scaled_lr``)."""
    from ..training.recipe import proportional_test_limit, recipe_config

    options = dict(model="mixnet_cifar", model_kwargs=variant.model_kwargs(width), epochs=int(epochs),
                   seed=int(seed), data=None if data is None else str(data))
    if batch_size is not None:
        options["batch_size"] = int(batch_size)
    if limit is not None:
        options.update(limit=int(limit), test_limit=proportional_test_limit(int(limit), 50000, 10000))
    return recipe_config(**options)


def run_state(run_dir) -> tuple[str, int, int]:
    """``(status, finished epochs, steps into the next)`` of a run directory: status "new" (no
    checkpoint), "partial" or "done" (its last checkpoint ends the last epoch)."""
    last = Path(run_dir) / "last.json"
    if not last.is_file():
        return "new", 0, 0
    try:
        state = json.loads(last.read_text())["state"]
        epochs = state["config"]["epochs"]
        done, step = int(state["epoch"]), int(state.get("step", 0))
    except (OSError, ValueError, KeyError, TypeError):
        return "partial", 0, 0  # read_checkpoint will name what is wrong with it
    return ("done" if done >= epochs else "partial"), done, step


def commit() -> str:
    """The git commit of the minimix source (``+dirty`` with uncommitted changes under minimix/), or "unknown"."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=10", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "minimix"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def cpu_name() -> str:
    """The host CPU's model name and core count, e.g. "Intel(R) Xeon(R) Processor (2 cores)"."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} cores)"


def _record_session(run_dir: Path, variant: Variant):
    path = run_dir / STUDY_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        record = {"variant": dataclasses.asdict(variant), "sessions": []}
    record["sessions"].append({"commit": commit(), "cpu": cpu_name(), "started": time.strftime("%Y-%m-%d %H:%M:%S")})
    temporary = path.with_name(path.name + f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(temporary, path)


def train_run(run_dir, config, variant: Variant, data, log=print, progress=False, checkpoint_every=600.0,
              on_step=None):
    """Train (or continue, or skip when finished) the run in ``run_dir`` with ``config``.

    ``data``: ``(train_images, train_labels, test_images, test_labels)``, already limited. A run
    directory holding a run of another recipe is refused (ValueError naming the differences):
    the study never mixes two recipes in one row. Returns the run's metrics history.
    ``on_step``: passed to the ``Trainer`` (tests use it to interrupt a run).
    """
    from .. import manual_seed
    from ..training import Trainer, lock_run_dir, read_checkpoint
    from ..training.recipe import build_model

    run_dir = Path(run_dir)
    with lock_run_dir(run_dir):
        state = meta = None
        if (run_dir / "last.json").exists():
            meta, state, saved = read_checkpoint(run_dir, resume=True)
            check_recipe(run_dir, dataclasses.asdict(saved), config)
            if state["epoch"] >= config.epochs:
                return list(state["history"])
        _record_session(run_dir, variant)
        manual_seed(config.seed)
        model = build_model(config.model, config.model_kwargs, num_classes=10)
        trainer = Trainer(model, data[:2], data[2:], config, run_dir=run_dir, progress=progress, log=log,
                          checkpoint_every=checkpoint_every, on_step=on_step)
        if state is not None:
            trainer.load_state_dict(state, source=meta)
        return trainer.fit()


FINAL_TEST_FILE = "final-test.json"  # per finished run: its weights' accuracy on the whole test set


def read_final_test(run_dir) -> dict | None:
    """The record :func:`final_test` kept in ``run_dir`` (None when there is none, or it is unreadable)."""
    try:
        record = json.loads((Path(run_dir) / FINAL_TEST_FILE).read_text())
        return record if isinstance(record.get("test_acc"), float) and isinstance(record.get("images"), int) else None
    except (OSError, ValueError, AttributeError):
        return None


def final_test(run_dir, test_images, test_labels, log=print) -> dict:
    """The finished run's accuracy on the whole test set (``test_images``, ``test_labels``: all
    10,000 CIFAR-10 test images), computed once and kept in ``run_dir/final-test.json``:
    ``{"test_acc", "test_loss", "images", "epoch", "seconds"}``.

    Why not the last epoch's test accuracy from the log: a run on ``--limit N`` images tests each
    epoch on the same fraction of the test set (a cheap progress signal), and at 3,000 images an
    accuracy near 70% has a standard error of sqrt(0.7 x 0.3 / 3000) = 0.8 points, as large as the
    differences the study looks for. On 10,000 images it is 0.46 points, and every variant is
    judged on the same images. The file is recomputed when its image count is not ``len(test_labels)``.
    """
    from ..data import DataLoader
    from ..serialization import atomic_write
    from ..training import evaluate, load_weights, read_checkpoint
    from ..training.recipe import build_model

    path = Path(run_dir) / FINAL_TEST_FILE
    saved = read_final_test(run_dir)
    if saved is not None and saved["images"] == len(test_labels):
        return saved
    _, state, config = read_checkpoint(run_dir)
    if int(state["epoch"]) < config.epochs:
        raise ValueError(f"{run_dir}: the run is not finished (epoch {state['epoch']} of {config.epochs}); "
                         "its final test accuracy is measured once it is")
    model = build_model(config.model, config.model_kwargs, num_classes=10)
    load_weights(model, state["model"])
    started = time.perf_counter()
    result = evaluate(model, DataLoader(test_images, test_labels, batch_size=500, shuffle=False))
    record = {"test_acc": result["acc"], "test_loss": result["loss"], "images": int(len(test_labels)),
              "epoch": int(state["epoch"]), "seconds": round(time.perf_counter() - started, 1)}
    atomic_write(path, lambda f: f.write((json.dumps(record, indent=1) + "\n").encode()))
    log(f"{run_dir}: test accuracy on all {len(test_labels):,} test images {record['test_acc']:.2%} "
        f"({record['seconds']:.0f} s)")
    return record


RECORDS = "kernel-study-records"  # the folder of the results holding one small JSON file per finished run


def record_path(records, variant: str, seed: int) -> Path:
    """``RECORDS/<variant>/seed<seed>.json``."""
    return Path(records) / variant / f"seed{seed}.json"


def _recipe(config) -> dict:
    """A ``TrainConfig`` as the JSON object the records and the runs table keep (the dataset location aside:
    it is where the images were on one machine, not part of the recipe)."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k != "data"}


def write_record(run_dir, records, variant: str, seed: int, images=None, log=print) -> dict:
    """Keep what the results need from the finished run in ``run_dir`` in one small JSON file,
    ``record_path(records, variant, seed)``, and return it:

    ``{"variant", "seed", "recipe", "history", "final_test", "fields", "sessions"}``: the recipe (the
    run's ``TrainConfig`` without the dataset location), every epoch's metrics, the record of
    :func:`final_test` (measured before, when the run finished), the last block's receptive fields
    (:func:`receptive_fields`, effective ones on ``images`` when given) and the sessions of ``study.json``.

    Why: a run's checkpoint holds its weights and optimizer state, megabytes that are not committed, so
    they are lost with the machine that trained it. The record is a few kilobytes and is committed with
    the results; :func:`run_study` skips a run that has one, and :func:`collect` reads only records.
    """
    from ..serialization import atomic_write
    from ..training import read_checkpoint
    from ..training.recipe import build_model

    run_dir = Path(run_dir)
    final = read_final_test(run_dir)
    if final is None:
        raise ValueError(f"{run_dir}: no {FINAL_TEST_FILE}; a run's record is written after its final test "
                         "(final_test)")
    _, state, config = read_checkpoint(run_dir)
    model = build_model(config.model, config.model_kwargs, num_classes=10)
    try:
        sessions = json.loads((run_dir / STUDY_FILE).read_text())["sessions"]
    except (OSError, ValueError, KeyError):
        sessions = []
    record = {"variant": variant, "seed": int(seed), "recipe": _recipe(config), "history": list(state["history"]),
              "final_test": final, "fields": receptive_fields(model, state, images),
              "erf_images": 0 if images is None else int(len(images)), "sessions": sessions}
    path = record_path(records, variant, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write((json.dumps(record, indent=1) + "\n").encode()))
    log(f"{run_dir}: recorded in {path}")
    return record


_RECORD_KEYS = {"variant": str, "seed": int, "recipe": dict, "history": list, "final_test": dict, "fields": dict,
                "sessions": list}


def read_record(path) -> dict:
    """The record at ``path`` (:func:`write_record`), checked: a ValueError names the file and what is
    wrong with it (not JSON, a missing key, a key of the wrong kind, no epochs)."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path}: not a run record (invalid JSON: {err})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: a run record must be a JSON object, got {type(record).__name__}")
    for key, kind in _RECORD_KEYS.items():
        if not isinstance(record.get(key), kind):
            raise ValueError(f"{path}: the record's {key!r} must be a {kind.__name__}, got {record.get(key)!r:.60}")
    if not record["history"] or not isinstance(record["final_test"].get("test_acc"), float):
        raise ValueError(f"{path}: the record has no epochs or no final test accuracy")
    return record


def read_records(records) -> dict:
    """``{variant name: [record, ...]}`` of every record under ``records``, variants in ``VARIANTS``
    order, seeds ascending."""
    found = {}
    for name in VARIANTS:
        paths = [p for p in (Path(records) / name).glob("seed*.json") if p.stem[4:].isdigit()]
        for path in sorted(paths, key=lambda p: int(p.stem[4:])):
            record = read_record(path)
            if (record["variant"], record["seed"]) != (name, int(path.stem[4:])):
                raise ValueError(f"{path}: holds the record of {record['variant']} seed {record['seed']}, "
                                 f"not of {name} seed {path.stem[4:]} (a file moved or copied by hand?)")
            found.setdefault(name, []).append(record)
    return found


def check_recipe(run_dir, saved: dict, config):
    """Refuse (ValueError naming the differences) a run directory whose saved recipe ``saved`` (a dict)
    is not ``config`` (the dataset location aside): a row of the study is never two recipes."""
    ours = dataclasses.asdict(config)
    changed = [f"{k}: run has {saved.get(k)!r}, now {v!r}" for k, v in ours.items() if k != "data" and saved.get(k) != v]
    if changed:
        raise ValueError(f"{run_dir} holds a run of another recipe ({'; '.join(changed)}); "
                         "run the study with its original options, or choose another --out")


def load_data(data_root, limit: int | None, log=print) -> tuple:
    """CIFAR-10 as the runs see it: ``(train_images, train_labels, test_images, test_labels)``, with
    ``limit`` the balanced subsets ``python -m minimix train --limit`` takes."""
    from ..training.recipe import balanced_subset, load_split, proportional_test_limit

    train_images, train_labels, _ = load_split(data_root, train=True, log=log)
    test_images, test_labels, _ = load_split(data_root, train=False, log=log)
    test_limit = proportional_test_limit(limit, len(train_labels), len(test_labels)) if limit else None
    train_images, train_labels = balanced_subset(train_images, train_labels, limit)
    test_images, test_labels = balanced_subset(test_images, test_labels, test_limit)
    return train_images, train_labels, test_images, test_labels


def _limited(dataset, config) -> tuple:
    """The training and test images a run of ``config`` sees (``limit`` / ``test_limit`` balanced subsets)."""
    from ..training.recipe import balanced_subset

    train = balanced_subset(dataset[0], dataset[1], config.limit)
    return (*train, *balanced_subset(dataset[2], dataset[3], config.test_limit))


def _variants(names) -> list:
    if names is None:
        return list(VARIANTS.values())
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; the study's variants are {', '.join(VARIANTS)}")
    return [VARIANTS[n] for n in names]


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min" if seconds >= 3600 else f"{seconds // 60} min {seconds % 60:02d} s"


def run_study(out="runs/study/kernels", variants=None, seeds=DEFAULT_SEEDS, epochs=DEFAULT_EPOCHS,
              width=DEFAULT_WIDTH, limit=DEFAULT_LIMIT, data=None, results="docs/results", log=print,
              progress=False, checkpoint_every=600.0, dataset=None, erf_images=8, on_step=None,
              batch_size=DEFAULT_BATCH, records=None) -> list:
    """Train every (variant, seed) run that is not finished, then :func:`collect` the results.

    ``out``: the study's directory (one run directory per variant and seed). ``records``: where each
    finished run's record goes (:func:`write_record`; None: ``results/kernel-study-records``, or no
    records without ``results``); a run with a record is finished, whether or not its run directory
    is on this machine. ``variants``: names
    from ``VARIANTS`` (None: all). ``data``: the CIFAR-10 root (None: ``$MINIMIX_DATA``, as
    ``train``). ``dataset``: the four arrays of :func:`load_data` instead (tests). ``results``: where
    the table, figures and page go (None: nowhere), rewritten after every run this call trains, so a study
    stopped at any point leaves its results current. ``on_step``: see :func:`train_run`. Prints which run it
    is on (k of n), whether it starts, resumes or skips it, and an estimate of the time left. Returns the rows of
    :func:`collect` (or [] without ``results``).
    """
    from ..training.recipe import data_location

    chosen = _variants(variants)
    if records is None and results is not None:
        records = Path(results) / RECORDS
    seeds = [int(s) for s in seeds]
    if not seeds or min(seeds) < 0:
        raise ValueError(f"seeds must be one or more integers >= 0, got {seeds}")
    root = None if dataset is not None else data_location(data)[0]
    runs = [(v, s) for v in chosen for s in seeds]
    configs = {(v.name, s): study_config(v, s, epochs, width, limit, root, batch_size) for v, s in runs}
    states = {(v.name, s): run_state(run_directory(out, v.name, s)) for v, s in runs}
    recorded = {(v.name, s) for v, s in runs if records is not None and record_path(records, v.name, s).is_file()}
    for key in recorded:  # before training anything: all runs fit this study
        path = record_path(records, *key)
        check_recipe(path, read_record(path)["recipe"], configs[key])
    for (name, seed), (status, _, _) in states.items():
        if status != "new" and (name, seed) not in recorded:
            run_dir = run_directory(out, name, seed)
            try:
                saved = json.loads((run_dir / "last.json").read_text())["state"]["config"]
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a damaged checkpoint: read_checkpoint names the problem when the run is reached
            check_recipe(run_dir, saved, configs[(name, seed)])
    todo = [(v, s) for v, s in runs if (v.name, s) not in recorded and states[(v.name, s)][0] != "done"]
    unrecorded = [(v, s) for v, s in runs if (v.name, s) not in recorded and records is not None]
    log(f"kernel study in {out}: {len(runs)} runs ({len(chosen)} variants x seeds {seeds}), {epochs} epochs, "
        f"width {width}, {limit or 'all'} training images, batch {configs[runs[0][0].name, runs[0][1]].batch_size}; "
        f"{len(runs) - len(todo)} finished ({len(recorded)} with a record in {records}), {len(todo)} to train")
    full = erf = None  # all the images; each run sees its balanced subsets (_limited), and is finally tested on all
    if todo or unrecorded:
        full = load_data(root, None, log=log) if dataset is None else dataset
        first = (todo or unrecorded)[0]
        dataset = _limited(full, configs[first[0].name, first[1]])
        erf = _erf_images(full, None, erf_images, log) if records is not None else None
    # The estimate: the epochs left, each weighted by its variant's measured step time (STEP_SECONDS: k11
    # costs 2.6x k3), times the seconds this process has taken per unit of that weight so far.
    weight = {v.name: STEP_SECONDS.get(v.name, 1.0) for v in chosen}
    spent = [0.0, 0.0]  # wall seconds of the epochs trained by this process, and their total weight
    remaining = sum(configs[(v.name, s)].epochs - states[(v.name, s)][1] for v, s in todo)
    remaining_weight = sum((configs[(v.name, s)].epochs - states[(v.name, s)][1]) * weight[v.name] for v, s in todo)
    started = time.perf_counter()
    for number, (variant, seed) in enumerate(runs, 1):
        key, run_dir = (variant.name, seed), run_directory(out, variant.name, seed)
        status, done, step = states[key]
        head = f"[{number}/{len(runs)}] {variant.name} seed {seed}"
        if key in recorded:
            log(f"{head}: finished, skipped ({record_path(records, *key)})")
            continue
        if status == "done":
            log(f"{head}: finished, skipped ({run_dir})")
            if records is None:
                continue
        else:
            what = "starting" if status == "new" else f"resuming after epoch {done}" + (f", step {step}" if step else "")
            log(f"{head}: {what} in {run_dir}")

            def epoch_log(line, head=head, cost=weight[variant.name]):
                nonlocal remaining, remaining_weight
                spent[0] += time.perf_counter() - epoch_log.since
                spent[1] += cost
                epoch_log.since = time.perf_counter()
                remaining, remaining_weight = remaining - 1, remaining_weight - cost
                eta = _duration(max(remaining_weight, 0.0) * spent[0] / spent[1])
                log(f"{head}: {line.strip()}  | study: {remaining} epoch{'' if remaining == 1 else 's'} left, ETA ~{eta}")

            epoch_log.since = time.perf_counter()
            train_run(run_dir, configs[key], variant, dataset, log=epoch_log, progress=progress,
                      checkpoint_every=checkpoint_every, on_step=on_step)
        final_test(run_dir, full[2], full[3], log=log)
        if records is not None:
            write_record(run_dir, records, variant.name, seed, erf, log=log)
            if results is not None and status != "done":  # the tables and figures stay current while the study runs
                collect(out, results, dataset=full, data=root, log=log, erf_images=erf_images, records=records)
    if todo:
        log(f"trained for {_duration(time.perf_counter() - started)}")
    if results is None:
        return []
    return collect(out, results, dataset=full, data=root, log=log, erf_images=erf_images, records=records)


# -- collecting ------------------------------------------------------------------------------------

RUN_COLUMNS = ["variant", "seed", "epochs", "width", "limit", "test_acc", "test_images", "last_epoch_subset_acc",
               "best_epoch_subset_acc", "train_seconds_per_epoch",
               "wall_seconds_per_epoch", "commit", "cpu", "recipe"]


def _finished_run_dirs(out) -> list:
    """``[(variant name, seed, run_dir), ...]`` of the finished runs under ``out`` (none when it does not exist)."""
    found = []
    for name in VARIANTS:
        folder = Path(out) / name
        if not folder.is_dir():
            continue
        for run_dir in sorted(folder.glob("seed*"), key=lambda p: int(p.name[4:]) if p.name[4:].isdigit() else -1):
            if run_dir.name[4:].isdigit() and run_state(run_dir)[0] == "done":
                found.append((name, int(run_dir.name[4:]), run_dir))
    return found


def _sessions(record: dict) -> tuple[str, str]:
    """The commits and the CPUs of the sessions that trained a run (each once, in order), or "unknown"."""
    sessions = record["sessions"] or [{}]
    join = lambda key: " ".join(dict.fromkeys(s.get(key, "unknown") for s in sessions))  # noqa: E731
    return join("commit"), join("cpu")


def receptive_fields(model, state=None, images=None, fractions=(0.5, 0.9)) -> dict:
    """The last block's receptive field on 32x32 inputs: ``rf`` (theoretical, pixels) and, with
    ``images`` (a normalised (N, 3, 32, 32) batch) and the trained weights ``state``, ``erf50`` /
    ``erf90``: the sides of the centred squares holding 50% / 90% of its effective field (the
    gradient of the block's centre unit, ``minimix.viz.compute_erf``, in eval mode).

    The theoretical field of the last blocks is larger than the 32-pixel image, so the effective
    field is measured with the padding clipping it (``allow_clipped``): it says how far the trained
    network actually looks within the image.
    """
    from ..training import load_weights
    from ..viz import compute_erf, layer_field

    layer = f"blocks.{len(model.blocks) - 1}.{len(model.blocks[-1]) - 1}"
    field = layer_field(model, (3, 32, 32), layer)
    result = {"layer": layer, "rf": max(axis.r for axis in field)}
    if images is not None and state is not None:
        load_weights(model, state["model"])
        summary = compute_erf(model, images, layer, allow_clipped=True).summary(fractions)
        result.update({f"erf{round(f * 100)}": summary[f] for f in fractions})
    return result


def _erf_images(dataset, data, count: int, log):
    """``count`` normalised test images (the first of each class in turn), or None."""
    if not count:
        return None
    from ..data import DataLoader
    from ..training.recipe import balanced_subset

    try:
        if dataset is None:
            dataset = load_data(data, None, log=lambda line: None)
        images, labels = balanced_subset(dataset[2], dataset[3], count)
    except (OSError, ValueError) as err:  # no data here: the table gets the theoretical field only
        log(f"effective receptive fields skipped (no test images: {err})")
        return None
    return next(iter(DataLoader(images, labels, batch_size=len(labels), shuffle=False)))[0]


def collect(out="runs/study/kernels", results="docs/results", dataset=None, data=None, log=print,
            erf_images=8, records=None) -> list:
    """Write the results of every recorded run into ``results``: ``kernel-study.csv`` (one row per
    variant), ``kernel-study-runs.csv`` (one row per run: accuracy, seconds per epoch, the
    commit(s) and CPU(s) that trained it, its full recipe), the figures
    ``kernel-study-accuracy-vs-kernel.png`` and ``kernel-study-accuracy-vs-macs.png``, and the
    table in ``kernel-study.md``, and the short table for README in ``kernel-study-summary.md``
    (:func:`summary_markdown`). Returns the variant rows (dicts, as in the CSV).

    The results come from the records in ``records`` (None: ``results/kernel-study-records``) alone.
    A finished run under ``out`` without a record gets one first (:func:`write_record`, its effective
    receptive field on ``erf_images`` test images; its final test too, if it has none)."""
    from ..models import summary
    from ..training.recipe import build_model

    results = Path(results)
    results.mkdir(parents=True, exist_ok=True)
    records = results / RECORDS if records is None else Path(records)
    unrecorded = [(name, seed, run_dir) for name, seed, run_dir in _finished_run_dirs(out)
                  if not record_path(records, name, seed).is_file()]
    if unrecorded:
        full = load_data(data, None, log=log) if dataset is None else dataset
        images = _erf_images(full, None, erf_images, log)  # the first test images of each class
        for name, seed, run_dir in unrecorded:
            if read_final_test(run_dir) is None:  # measured when the run finished; here only for older runs
                final_test(run_dir, full[2], full[3], log=log)
            write_record(run_dir, records, name, seed, images, log=log)
    found = read_records(records)
    rows, run_rows = [], []
    for name, runs in found.items():
        variant = VARIANTS[name]
        recipe = runs[0]["recipe"]
        model = build_model(recipe["model"], recipe["model_kwargs"], num_classes=10)
        counted = summary(model, (3, 32, 32), verbose=False)
        fields = [run["fields"] for run in runs]
        accs, seconds, walls, commits, cpus, test_images = {}, [], [], set(), set(), set()
        machine_seconds = 0.0  # all the variant's runs: epochs, their tests and checkpoints, the final tests
        for run in runs:
            seed, history, final, cfg = run["seed"], run["history"], run["final_test"], run["recipe"]
            accs[seed] = final["test_acc"]
            test_images.add(final["images"])
            # medians, not means: an epoch slowed by other work on the machine (or a paused process) is one
            # outlier; the variant's figure is the median over the epochs of all its seeds
            epoch_train = [h["seconds"] for h in history]
            epoch_wall = [h["seconds"] + h.get("eval_seconds", 0.0) + h.get("checkpoint_seconds", 0.0) for h in history]
            train_s, wall_s = float(np.median(epoch_train)), float(np.median(epoch_wall))
            seconds.extend(epoch_train)
            walls.extend(epoch_wall)
            machine_seconds += sum(epoch_wall) + final.get("seconds", 0.0)
            run_commit, run_cpu = _sessions(run)
            commits.add(run_commit)
            cpus.add(run_cpu)
            run_rows.append({"variant": name, "seed": seed, "epochs": cfg["epochs"],
                             "width": cfg["model_kwargs"].get("width_multiplier"), "limit": cfg.get("limit") or "",
                             "test_acc": f"{accs[seed]:.4f}", "test_images": final["images"],
                             "last_epoch_subset_acc": f"{history[-1]['test_acc']:.4f}",
                             "best_epoch_subset_acc": f"{max(h['test_acc'] for h in history):.4f}",
                             "train_seconds_per_epoch": f"{train_s:.1f}", "wall_seconds_per_epoch": f"{wall_s:.1f}",
                             "commit": run_commit, "cpu": run_cpu,
                             "recipe": json.dumps(cfg, sort_keys=True)})
        values = np.array(list(accs.values()))
        row = {
            "variant": name, "kernel_sizes": ".".join(str(k) for k in variant.kernel_sizes),
            "split": variant.split, "dilated": variant.dilated,
            "params": counted.total_params, "macs": counted.total_macs,
            "epochs": recipe["epochs"], "width": recipe["model_kwargs"].get("width_multiplier"),
            "limit": recipe.get("limit") or "",
            "seeds": " ".join(str(s) for s in accs), "test_images": " ".join(map(str, sorted(test_images))),
            **{f"acc_seed{s}": f"{a:.4f}" for s, a in accs.items()},
            "mean": f"{values.mean():.4f}", "min": f"{values.min():.4f}", "max": f"{values.max():.4f}",
            "spread": f"{values.max() - values.min():.4f}",
            "std": f"{values.std(ddof=1):.4f}" if len(values) > 1 else "",
            "train_seconds_per_epoch": f"{np.median(seconds):.1f}", "wall_seconds_per_epoch": f"{np.median(walls):.1f}",
            "machine_seconds": f"{machine_seconds:.0f}", "rf": fields[0]["rf"],
            "erf50": _mean_field(fields, "erf50"), "erf90": _mean_field(fields, "erf90"),
            "cpu": " | ".join(sorted(cpus)), "commit": " ".join(sorted(commits)),
        }
        rows.append(row)
    seeds = sorted({int(k[8:]) for row in rows for k in row if k.startswith("acc_seed")})
    columns = (["variant", "kernel_sizes", "split", "dilated", "params", "macs", "epochs", "width", "limit", "seeds",
                "test_images"]
               + [f"acc_seed{s}" for s in seeds]
               + ["mean", "min", "max", "spread", "std", "train_seconds_per_epoch", "wall_seconds_per_epoch",
                  "machine_seconds", "rf", "erf50", "erf90", "cpu", "commit"])
    _write_csv(results / "kernel-study.csv", columns, rows)
    _write_csv(results / "kernel-study-runs.csv", RUN_COLUMNS, run_rows)
    if rows:
        plot_results(rows, results)
    write_page(rows, results / "kernel-study.md")
    (results / "kernel-study-summary.md").write_text(summary_markdown(read_results(results / "kernel-study.csv"))
                                                     + "\n")
    log(f"collected {len(run_rows)} finished runs of {len(rows)} variants from {records} into {results}/kernel-study.csv "
        "(+ -runs.csv, figures, kernel-study.md, and kernel-study-summary.md: README's table)")
    return rows


def _mean_field(fields, key):
    values = [f[key] for f in fields if key in f]
    return f"{np.mean(values):.1f}" if values else ""


def _write_csv(path: Path, columns, rows):
    temporary = path.with_name(path.name + f".{os.getpid()}.tmp")
    with open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, path)


def read_results(path) -> list:
    """The rows of a ``kernel-study.csv`` with numbers parsed: ``accs`` (a list per seed), ``mean``,
    ``min``, ``max``, ``spread``, ``params``, ``macs`` ... ([] when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["accs"] = [float(v) for k, v in row.items() if k.startswith("acc_seed") and v not in ("", None)]
        for key in ("mean", "min", "max", "spread"):
            row[key] = float(row[key])
        for key in ("params", "macs", "epochs"):
            row[key] = int(row[key])
        row["largest_kernel"] = VARIANTS[row["variant"]].largest_kernel
    return rows


# -- figures -----------------------------------------------------------------------------------------

FIGURES = ("kernel-study-accuracy-vs-kernel.png", "kernel-study-accuracy-vs-macs.png")


def _numbers(row) -> dict:
    accs = row["accs"] if "accs" in row else [float(v) for k, v in row.items() if k.startswith("acc_seed") and v != ""]
    return {"mean": float(row["mean"]) * 100, "low": float(row["min"]) * 100, "high": float(row["max"]) * 100,
            "accs": [a * 100 for a in accs], "macs": int(row["macs"]) / 1e6}


def plot_results(rows, folder) -> list:
    """The two figures (paths returned): test accuracy against the largest kernel size (single-size
    networks as a line, MixConv variants as separate points at their largest kernel), and test
    accuracy against multiply-accumulates per image for every variant. Each point is the mean over
    seeds, its error bar the seeds' range (min to max), and every seed is drawn as a small dot."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    by_name = {row["variant"]: row for row in rows}
    singles = [n for n in VARIANTS if n.startswith("k") and n in by_name]
    mixes = [n for n in VARIANTS if not n.startswith("k") and n in by_name]
    markers = {"mix35": "s", "mix357": "D", "mix3579": "^", "mix3579-exp": "v", "mix3579-dilated": "P"}

    def draw(ax, x, row, **style):
        n = _numbers(row)
        ax.errorbar([x], [n["mean"]], yerr=[[n["mean"] - n["low"]], [n["high"] - n["mean"]]], capsize=4, **style)
        ax.plot([x] * len(n["accs"]), n["accs"], ".", color=style.get("color", "k"), alpha=0.4, markersize=4)

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    if singles:
        xs = [VARIANTS[n].largest_kernel for n in singles]
        ax.plot(xs, [_numbers(by_name[n])["mean"] for n in singles], "-", color="C0", alpha=0.6)
        for x, n in zip(xs, singles):
            draw(ax, x, by_name[n], fmt="o", color="C0", label="one kernel size" if n == singles[0] else None)
    for i, n in enumerate(mixes):
        offset = 0.25 * (i - (len(mixes) - 1) / 2) * 0.5  # side by side where mixes share a largest kernel
        draw(ax, VARIANTS[n].largest_kernel + offset, by_name[n], fmt=markers.get(n, "o"), color=f"C{i + 1}", label=n)
    ax.set_xlabel("largest depthwise kernel size k (k x k)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks([3, 5, 7, 9, 11])
    ax.set_title("Kernel size study (mean, min-max over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths = [folder / FIGURES[0]]
    fig.savefig(paths[0], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, n in enumerate(singles + mixes):
        x = _numbers(by_name[n])["macs"]
        draw(ax, x, by_name[n], fmt="o" if n in singles else markers.get(n, "o"),
             color="C0" if n in singles else f"C{mixes.index(n) + 1}")
        ax.annotate(n, (x, _numbers(by_name[n])["mean"]), textcoords="offset points", xytext=(5, 3), fontsize=7)
    ax.set_xlabel("multiply-accumulates per 32x32 image (millions)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy against cost")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    paths.append(folder / FIGURES[1])
    fig.savefig(paths[1], dpi=100)
    plt.close(fig)
    return paths


# -- what the data says about the paper's claims --------------------------------------------------------


def separation(accs_a, accs_b) -> int:
    """+1 if every seed's accuracy in ``accs_a`` is above every one in ``accs_b`` (min(a) > max(b)), -1 if
    every one is below (max(a) < min(b)), 0 if the ranges overlap or touch, or either side has fewer than 2
    seeds (one seed has no spread to judge a difference by)."""
    if len(accs_a) < 2 or len(accs_b) < 2:
        return 0
    if min(accs_a) > max(accs_b):
        return 1
    if max(accs_a) < min(accs_b):
        return -1
    return 0


def chance_of_separation(n_a: int, n_b: int) -> float:
    """How often ``n_a`` and ``n_b`` seeds of two variants with NO real difference come out separated
    (every seed of one above every seed of the other, either way) by chance alone:
    2 * n_a! * n_b! / (n_a + n_b)!. With no real difference every order of the n_a + n_b accuracies is
    equally likely, and 2 of the C(n_a + n_b, n_a) ways to say which of them are A's put all of A's on
    top or all at the bottom. 2 vs 2 seeds: 1/3; 3 vs 3: 1/10; 5 vs 5: 1/126. This is the two-sided
    p-value of the exact permutation test for a complete separation: a separation with two seeds each
    is weak evidence."""
    if n_a < 1 or n_b < 1:
        raise ValueError(f"need at least one seed on each side, got {n_a} and {n_b}")
    return min(1.0, 2 * math.factorial(n_a) * math.factorial(n_b) / math.factorial(n_a + n_b))


def compare(rows, a: str, b: str) -> str:
    """One sentence comparing variants ``a`` and ``b`` (rows of :func:`read_results`): their means
    and the difference, and whether it is beyond the seed spread (every seed of one above every seed
    of the other, with at least 2 seeds each) or within it (not separated at this budget)."""
    by_name = {row["variant"]: row for row in rows}
    if a not in by_name or b not in by_name:
        missing = [n for n in (a, b) if n not in by_name]
        return f"{a} vs {b}: no finished runs of {' and '.join(missing)} yet."
    ra, rb = by_name[a], by_name[b]
    diff = (ra["mean"] - rb["mean"]) * 100
    text = (f"{a} {ra['mean']:.1%} (seeds {ra['min']:.1%}-{ra['max']:.1%}) vs {b} {rb['mean']:.1%} "
            f"(seeds {rb['min']:.1%}-{rb['max']:.1%}): {diff:+.1f} points")
    if min(len(ra["accs"]), len(rb["accs"])) < 2:
        return text + ", from a single seed: no spread to judge it by."
    sign = separation(ra["accs"], rb["accs"])
    if sign:
        chance = chance_of_separation(len(ra["accs"]), len(rb["accs"]))
        return text + (f"; {a if sign > 0 else b} is higher in every seed (beyond the seed spread; with "
                       f"{len(ra['accs'])} and {len(rb['accs'])} seeds and no real difference this happens by chance "
                       f"1 time in {round(1 / chance)}).")
    return text + "; the seeds' ranges overlap, so the difference is within the seed spread (not separated)."


def claims(rows) -> list:
    """``[(the paper's claim, what this study's data says), ...]`` with sentences computed from ``rows``."""
    by_name = {row["variant"]: row for row in rows}
    singles = [n for n in ("k3", "k5", "k7", "k9", "k11") if n in by_name]
    out = []
    if singles:
        best = max(singles, key=lambda n: by_name[n]["mean"])
        trend = ", ".join(f"{n} {by_name[n]['mean']:.1%}" for n in singles)
        verdict = f"Means: {trend}. The best single size is {best}."
        if best != singles[0]:
            verdict += " Rise: " + compare(rows, best, singles[0])
        elif len(singles) > 1:
            below = [n for n in singles[1:] if separation(by_name[best]["accs"], by_name[n]["accs"]) == 1]
            verdict += (f" No rise at this budget: every larger single size has a lower mean than {best}"
                        + (f", and {', '.join(below)} {'is' if len(below) == 1 else 'are'} below it in every seed."
                           if below else ", none of them in every seed."))
        if best != singles[-1]:
            verdict += " Fall: " + compare(rows, best, singles[-1])
        out.append(("Accuracy rises with the kernel size, then falls beyond about 9x9.", verdict))
    pairs = [("mix35", "k5"), ("mix357", "k7"), ("mix3579", "k9")]
    out.append(("MixConv beats a single kernel size of the same largest kernel.",
                " ".join(compare(rows, a, b) for a, b in pairs)))
    out.append(("The equal split and the exponential split: the paper finds them close "
                "(exponential slightly better in some models).", compare(rows, "mix3579-exp", "mix3579")))
    dilated = compare(rows, "mix3579-dilated", "mix3579")
    if "mix3579-dilated" in by_name and "mix3579" in by_name:
        dilated += (f" It costs {by_name['mix3579-dilated']['macs'] / 1e6:.1f} M multiply-accumulates per image "
                    f"against {by_name['mix3579']['macs'] / 1e6:.1f} M.")
    out.append(("Dilated 3x3 kernels are worse than real large kernels of the same span.", dilated))
    return out


# -- the results page ---------------------------------------------------------------------------------

TABLE_START, TABLE_END = "<!-- kernel-study table: written by `python -m minimix study kernels` -->", "<!-- end of table -->"

PAGE = """# Kernel-size study (MixConv paper, CIFAR-10)

Produced by `python -m minimix study kernels` (see `minimix/study/kernels.py`), which rewrites this
whole page; `--collect-only` rewrites it, the CSVs and the figures from the run records without training.
Every run's recipe, commit and CPU are in `kernel-study-runs.csv`.

{table_start}
{table_end}

![accuracy vs kernel size](kernel-study-accuracy-vs-kernel.png)
![accuracy vs MACs](kernel-study-accuracy-vs-macs.png)

## Running it in the background

    mkdir -p runs/study && nohup python -m minimix study kernels >> runs/study/kernels.log 2>&1 &

(with `MINIMIX_DATA` pointing at CIFAR-10). Stop it at any moment (`kill PID`, the end of a session): the
same command continues it, skipping finished runs and resuming the unfinished one from its last checkpoint
(every epoch, and every 10 minutes within one). `--seeds 0,1,2,3 --variants A,B` later adds a fourth seed
where the spread hides a difference; only the new runs train. The results above are rewritten when the runs end,
or by `--collect-only`.

Every finished run leaves a record, `kernel-study-records/<variant>/seed<seed>.json` beside this page: its
recipe, every epoch's metrics, its final test and receptive fields, and the commit and CPU of each session
that trained it. Commit the records with the results. The run directories under `runs/` hold the checkpoints
(weights and optimizer state) and are not committed, so a new machine (a fresh clone) has none: there the
same command skips every recorded run and trains the rest. Only the run that was in progress when the old
machine went away starts again from its beginning.

## Why this budget

{budget}
"""


def summary_markdown(rows) -> str:
    """The short table for README "Results": one line per variant (kernels, M MACs per image, mean test
    accuracy with the seeds' range), then the variants ranked by mean, ">" where a variant is above the
    next in every seed, "~" where their seeds overlap. ``rows``: :func:`read_results`'s."""
    if not rows:
        return "No run of the study has finished yet."
    lines = ["| variant | kernels | M MACs | test accuracy: mean (seeds) |", "|---|---|---:|---|"]
    for row in rows:
        lines.append(f"| {row['variant']} | {row['kernel_sizes']}{' dilated' if str(row['dilated']) == 'True' else ''}"
                     f"{' exp. split' if row['split'] == 'exponential' else ''} | {row['macs'] / 1e6:.1f} "
                     f"| {row['mean']:.2%} ({', '.join(f'{a:.2%}' for a in row['accs'])}) |")
    return "\n".join(lines) + f"\n\nBy mean: {ranking(rows)} (>: higher in every seed, ~: the seeds overlap)."


def ranking(rows, separate=None) -> str:
    """The variants by mean accuracy, e.g. "k5 > k3 ~ k7": ">" where a variant is above the next in every
    seed, "~" where their seeds overlap. ``separate``: the rule (default :func:`separation`)."""
    separate = separate or separation
    ordered = sorted(rows, key=lambda r: -r["mean"])
    text = ordered[0]["variant"]
    for higher, lower in zip(ordered, ordered[1:]):
        text += (" > " if separate(higher["accs"], lower["accs"]) == 1 else " ~ ") + lower["variant"]
    return text


def table_markdown(rows) -> str:
    """The results as a Markdown table (or a line saying that no run has finished yet)."""
    if not rows:
        return "No run of the study has finished yet."
    lines = ["| variant | kernels | split | dilated | params | MACs (M) | test accuracy, mean | seeds (min-max) "
             "| std | s/epoch | RF | ERF 50% / 90% |",
             "|---|---|---|---|---:|---:|---:|---|---:|---:|---:|---|"]
    for row in rows:
        accs = [float(v) for k, v in row.items() if k.startswith("acc_seed") and v not in ("", None)]
        std = row.get("std") or ""
        lines.append(
            f"| {row['variant']} | {row['kernel_sizes']} | {row['split']} | {row['dilated']} | {int(row['params']):,} "
            f"| {int(row['macs']) / 1e6:.1f} | {float(row['mean']):.2%} | {len(accs)}: "
            f"{float(row['min']):.2%}-{float(row['max']):.2%} | {f'{float(std):.2%}' if std else ''} "
            f"| {row['wall_seconds_per_epoch']} | {row['rf']} | {row['erf50'] or '-'} / {row['erf90'] or '-'} |")
    first = rows[0]
    lines.append("")
    commits = sorted({commit for row in rows for commit in str(row['commit']).split()})
    cpus = sorted({cpu for row in rows for cpu in str(row['cpu']).split(" | ")})
    runs = sum(len(str(row['seeds']).split()) for row in rows)
    machine_hours = sum(float(row['machine_seconds']) for row in rows) / 3600
    lines.append(f"{first['epochs']} epochs, width {first['width']}, "
                 f"{first['limit'] or 50000} training images; CPU: {', '.join(cpus)}; commits: {', '.join(commits)}. "
                 f"Machine time: {machine_hours:.1f} h for the {runs} runs (each run's epochs with their tests and "
                 "checkpoints, and its final test, from its record; compiling, receptive fields and any work lost "
                 "with a machine not counted).")
    lines.append(f"Test accuracy: each seed's final weights on {first.get('test_images') or 'all the'} test images. "
                 "s/epoch: median wall seconds per epoch over all the seeds' epochs (training, testing the subset, checkpoint), "
                 "each on the host and code that ran it: a variant's runs can differ by 3x in time per epoch when the "
                 "study moves between hosts (AMD EPYC hosts with and without AVX-512 share one CPU name) and faster "
                 "kernels land between runs (kernel-study-runs.csv has each run's), so the column ranks costs only "
                 "roughly; MACs rank them exactly.")
    lines.append("RF: theoretical receptive field of the last block (pixels); ERF: sides of the centred squares "
                 "holding 50% / 90% of its effective receptive field on 8 test images, after training.")
    return "\n".join(lines)


def write_page(rows, path):
    """Write the results page: ``PAGE`` with the budget paragraph (``budget_text``), the table and what
    the data says about each of the paper's claims. The whole page is generated, so it is rewritten
    each time: a page left from an older budget would explain the wrong budget."""
    path = Path(path)
    parsed = [dict(row, accs=[float(v) for k, v in row.items() if k.startswith("acc_seed") and v not in ("", None)],
                   mean=float(row["mean"]), min=float(row["min"]), max=float(row["max"]),
                   macs=int(row["macs"])) for row in rows]
    findings = "\n".join(f"* **{claim}** {finding}" for claim, finding in claims(parsed)) if rows else ""
    body = table_markdown(rows) + ("\n\n## The paper's claims against this data\n\n" + findings if findings else "")
    path.write_text(PAGE.format(table_start=TABLE_START, table_end=TABLE_END, budget=budget_text())
                    .replace(f"{TABLE_START}\n{TABLE_END}", f"{TABLE_START}\n{body}\n{TABLE_END}"))
    return path


__all__ = ["Variant", "VARIANTS", "BUDGET", "STEP_SECONDS", "budget_text", "run_study", "train_run", "study_config", "run_directory",
           "run_state", "final_test", "read_final_test", "write_record", "read_record", "read_records", "record_path",
           "RECORDS", "check_recipe", "load_data", "collect", "receptive_fields", "read_results", "plot_results", "separation", "compare",
           "chance_of_separation", "claims", "ranking", "summary_markdown", "table_markdown", "write_page", "commit", "cpu_name", "FIGURES"]
