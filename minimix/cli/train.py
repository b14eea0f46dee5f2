"""Train a model on CIFAR-10 with checkpoints after every epoch.

The recipe (defaults): SGD with Nesterov momentum 0.9, batch 256, peak learning rate 0.2 after one
epoch of linear warmup then cosine decay to 0 (per step), weight decay 5e-4 on conv/linear
weights only, label smoothing 0.1, random crop + horizontal flip, 15 epochs, seed 0, MixNet weights
starting from PyTorch's layer defaults (--init pytorch; the paper's init trained slower here).

The run directory receives last.json/best.json + their .npz (checkpoints), metrics.csv (one row
per epoch); last.json is also written within an epoch every --checkpoint-minutes (10). Continue
an interrupted run exactly where it stopped with --resume RUN_DIR (it
continues in RUN_DIR with its saved recipe: recipe options and --out are refused). One process
at a time trains in a run directory: it holds the directory's lock (RUN_DIR/.lock) while it runs.
Ctrl-C, or a loss that becomes NaN/inf, stops the run with one line that says how to resume.

--limit N trains on N training images, N/10 of each class (the first ones of each class in dataset
order), and evaluates on the same fraction of the test set (N/50000 of its 10,000 images, chosen
the same way; --test-limit overrides), for quick experiments. Such a small run keeps at least 32
steps per epoch: without --batch-size its batch is 256 halved until N/batch >= 32 (not below 16;
--limit 2048 -> 64). Without --lr the peak learning rate follows the batch, 0.2 x batch / 256 (any
--batch-size), halved when the warmup (one epoch) is shorter than the full recipe's 195 steps
(--limit 2048: 0.025). At batch 256 and lr 0.2, `--limit 2048 --epochs 3` warmed up to 0.2 in 8
steps and diverged (10% test accuracy); with the rule it reaches 30% (measured).

The run directory and its config.json are written when the run starts; a run stopped before its
first checkpoint is started again from the beginning, with that config, by --resume RUN_DIR.
The data location (--data, else $MINIMIX_DATA) is stored in the config as an absolute path and used
by --resume and `evaluate` when neither is given.

examples:
  python -m minimix train --epochs 15
  python -m minimix train --limit 2048 --epochs 3              # batch 64, peak lr 0.025
  python -m minimix train --kernels 3 --out runs/all3x3        # the all-3x3 ablation
  python -m minimix train --resume runs/all3x3
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

# Options that set the TrainConfig field of the same name. They default to None (the real default
# is TrainConfig's), so we know which ones were given, e.g. to refuse changes on --resume.
RECIPE_OPTIONS = ("model", "epochs", "batch_size", "lr", "weight_decay", "label_smoothing", "warmup_epochs",
                  "seed", "cutout", "tta", "limit", "test_limit")
# CLI option -> keyword argument of the model builder (passed only when given).
MODEL_OPTIONS = {"width": "width_multiplier", "head": "head_channels", "kernels": "kernel_sizes", "init": "init"}


def _integer(low: int):
    """argparse type: an integer >= low."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def _number(low: float, high: float | None = None, low_open: bool = False):
    """argparse type: a finite number > low (``low_open``) or >= low, and < high."""
    expected = f"a finite number {'>' if low_open else '>='} {low:g}" + (f" and < {high:g}" if high is not None else "")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not (math.isfinite(value) and (value > low if low_open else value >= low)
                and (high is None or value < high)):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


positive_int, non_negative_int = _integer(1), _integer(0)


def add_arguments(parser):
    from ..training.recipe import RECIPE_INIT

    defaults = _default_config()
    arg = parser.add_argument
    arg("--model", help=f"model name from minimix.models.MODELS (default {defaults.model})")
    arg("--width", type=_number(0, low_open=True), help="width multiplier of the model's channels")
    arg("--head", type=positive_int, help="channels of the final 1x1 'head' convolution")
    arg("--kernels", type=_kernel_list, help='kernel sizes of every MixConv, e.g. "3" or "3,5,7,9"')
    arg("--init", choices=("reference", "pytorch"),
        help=f"weight initialisation of MixNet models: PyTorch's layer defaults (the recipe's default, "
             f"'{RECIPE_INIT}') or the paper's code ('reference'); see minimix.training.recipe.RECIPE_INIT")
    arg("--epochs", type=positive_int, help=f"default {defaults.epochs}")
    arg("--batch-size", type=positive_int, help=f"default {defaults.batch_size}")
    arg("--lr", type=_number(0, low_open=True), help=f"peak learning rate (default {defaults.lr})")
    arg("--weight-decay", type=_number(0), help=f"default {defaults.weight_decay}")
    arg("--label-smoothing", type=_number(0, high=1), help=f"in [0, 1) (default {defaults.label_smoothing})")
    arg("--warmup-epochs", type=_number(0), help=f"at most half the run (default {defaults.warmup_epochs})")
    arg("--seed", type=non_negative_int, help=f"default {defaults.seed}")
    arg("--cutout", type=non_negative_int, help="side of the cutout square, 0 for none (default 0)")
    arg("--tta", action="store_const", const=True, help="evaluate with flip test-time augmentation")
    arg("--limit", type=positive_int, metavar="N", help="train on N training images, N/10 per class")
    arg("--test-limit", type=positive_int, metavar="N", help="evaluate on N test images, N/10 per class")
    arg("--data", help="dataset root (default: $MINIMIX_DATA)")
    arg("--out", type=Path, help="run directory of a new run (default runs/<model>-<date>-<time>)")
    arg("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR (or from a checkpoint .json/.npz), "
                                            "in that directory")
    arg("--threads", type=positive_int, help="threads for the kernels (Numba, chunked NumPy; BLAS stays "
                                             "single-threaded; default: all cores)")
    arg("--checkpoint-minutes", type=_number(0), default=10.0, metavar="M",
        help="also checkpoint within an epoch every M minutes (default 10; 0: after every step); "
             "--resume continues from such a checkpoint bit for bit")
    arg("--no-progress", action="store_true", help="no progress bar (e.g. when logging to a file)")


def _default_config():
    from ..training.trainer import TrainConfig

    return TrainConfig()


def _kernel_list(text: str) -> list:
    """ "3,5,7" -> [3, 5, 7] (odd sizes, so that 'same' padding (k - 1) / 2 is whole)."""
    import argparse

    try:
        sizes = [int(k) for k in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected odd integers separated by commas like "3,5,7", got {text!r}')
    if any(k < 1 or k % 2 == 0 for k in sizes):
        raise argparse.ArgumentTypeError(f"kernel sizes must be odd and positive, got {sizes}")
    return sizes


CONFIG_NAME = "config.json"  # the run's recipe, written when the run starts (before any checkpoint)


def run(args):
    from ..training import lock_run_dir, read_checkpoint
    from ..training.recipe import data_location, recipe_config

    configure_performance(args.threads)
    given = {name: getattr(args, name) for name in RECIPE_OPTIONS if getattr(args, name) is not None}
    model_kwargs = {kwarg: getattr(args, option) for option, kwarg in MODEL_OPTIONS.items()
                    if getattr(args, option) is not None}

    if args.resume:
        run_dir = _resume_dir(args.resume)
        if args.out is not None and Path(args.out).resolve() != run_dir.resolve():
            raise ValueError(f"--out {args.out} cannot be used with --resume: a resumed run continues in its own "
                             f"directory {run_dir}. Drop --out (or drop --resume to start a new run in {args.out})")
    else:
        config = recipe_config(log=lambda line: print(line + "; --batch-size and --lr override"),
                               model_kwargs=model_kwargs, **given)
        run_dir = args.out or Path("runs") / f"{config.model}-{time.strftime('%Y%m%d-%H%M%S')}"
        _refuse_existing_run(run_dir)
    run_dir = Path(run_dir)

    # The lock is held from here to the end: no other process trains in run_dir meanwhile, and
    # the checkpoint read below is the one this process continues.
    with lock_run_dir(run_dir) as lock:
        if lock.removed:
            print(f"removed {len(lock.removed)} temporary file(s) an interrupted write left in {run_dir}: "
                  + ", ".join(lock.removed))
        state = meta = None
        restart = args.resume and Path(args.resume).is_dir() and not (run_dir / "last.json").exists()
        if args.resume and not restart:
            meta, state, config = read_checkpoint(args.resume, resume=True)
            _refuse_changes(config, given, model_kwargs)
        elif restart:  # the run stopped before its first checkpoint: start it again with its recipe
            config = _read_config(run_dir)
            _refuse_changes(config, given, model_kwargs)
            print(f"no checkpoint yet in {run_dir} (the run stopped before its first epoch ended): "
                  f"starting it again from the beginning with its saved recipe ({run_dir / CONFIG_NAME})")
        else:
            _refuse_existing_run(run_dir)  # again under the lock: a process that just finished may have written one
        # Where the data is: --data, else $MINIMIX_DATA, else the location the run stored. The
        # absolute location goes into the config (and so into every checkpoint).
        config.data, origin = data_location(args.data, config.data)
        print(f"data: {config.data} (from {origin})")
        _write_config(run_dir, config)
        try:
            return _train(args, config, state, run_dir, meta)
        except USER_ERRORS:
            # Refused before training began (no data found, a bad model option): a new run leaves no
            # directory behind (the lock removes the directory it created once it holds nothing).
            if not args.resume and not (run_dir / "last.json").exists():
                (run_dir / CONFIG_NAME).unlink(missing_ok=True)
            raise


from . import USER_ERRORS  # noqa: E402  (the command errors main() reports in one line)


def _resume_dir(resume) -> Path:
    """The run directory ``--resume`` names: a run directory, or the one of a checkpoint file."""
    from ..training import resolve_checkpoint

    path = Path(resume)
    if path.is_dir() and not (path / "last.json").exists() and (path / CONFIG_NAME).is_file():
        return path  # a run that has its config but no checkpoint yet
    return resolve_checkpoint(resume).parent


def _read_config(run_dir: Path):
    from ..training import TrainConfig

    path = run_dir / CONFIG_NAME
    try:
        values = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path}: not a valid JSON config ({err})") from None
    return TrainConfig.from_dict(values, source=path)


def _write_config(run_dir: Path, config):
    """``RUN_DIR/config.json``: the recipe, written (atomically) when the run starts, so a run stopped
    before its first checkpoint can be started again with ``--resume RUN_DIR``."""
    import os

    path = run_dir / CONFIG_NAME
    temporary = path.with_name(path.name + f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(dataclasses.asdict(config), indent=1) + "\n")
    os.replace(temporary, path)


def _refuse_existing_run(run_dir):
    if (Path(run_dir) / "last.json").exists():
        raise ValueError(f"{run_dir} already holds a run; continue it with --resume {run_dir} "
                         "or choose another --out")


def _train(args, config, state, run_dir: Path, meta):
    from .. import manual_seed
    from ..training import Trainer, warm_up
    from ..training.recipe import (COMPILE_TIME, balanced_subset, build_model, load_split,
                                   mark_numba_cache_warm, numba_cache_dir, numba_cache_is_cold,
                                   proportional_test_limit)

    train_images, train_labels, classes = load_split(config.data, train=True, log=print)
    test_images, test_labels, _ = load_split(config.data, train=False, log=print)
    if config.limit is not None and config.test_limit is None:
        config.test_limit = proportional_test_limit(config.limit, len(train_labels), len(test_labels))
    train_images, train_labels = balanced_subset(train_images, train_labels, config.limit)
    test_images, test_labels = balanced_subset(test_images, test_labels, config.test_limit)

    manual_seed(config.seed)
    model = build_model(config.model, config.model_kwargs, num_classes=len(classes))

    def log_epoch(line):  # after an epoch (training and test): the kernels are compiled and cached
        print(line)
        mark_numba_cache_warm()

    minutes = getattr(args, "checkpoint_minutes", None)
    trainer = Trainer(model, (train_images, train_labels), (test_images, test_labels), config,
                      run_dir=run_dir, progress=not args.no_progress, log=log_epoch,
                      checkpoint_every=None if minutes is None else 60.0 * minutes)
    if state is not None:
        trainer.load_state_dict(state, source=meta)
        within = (f", step {trainer.step}/{len(trainer.train_loader)} of epoch {trainer.epoch + 1}"
                  if trainer.step else "")
        print(f"resuming {run_dir} after epoch {trainer.epoch}/{config.epochs}{within}")
    print(f"{config.model} {config.model_kwargs or ''}: {model.num_parameters():,} parameters; "
          f"{len(train_labels):,} training and {len(test_labels):,} test images; run directory {run_dir}")
    helper = None
    if trainer.epoch < config.epochs and numba_cache_is_cold():
        dtype = next(iter(model.parameters())).dtype
        helper = warm_up.start(warm_up.depthwise_layers(model, (3, *train_images.shape[1:3]), dtype), dtype)
        also = ", the depthwise kernels in a second process" if helper is not None else ""
        print(f"compiling the Numba kernels once ({COMPILE_TIME}; cached in {numba_cache_dir()}){also}", flush=True)
    start = time.perf_counter()
    try:
        history = trainer.fit()
    except KeyboardInterrupt:
        if getattr(args, "debug", False):
            raise
        print(f"\nminimix train: interrupted (Ctrl-C) in epoch {trainer.epoch + 1}/{config.epochs}. "
              + _resume_hint(run_dir), file=sys.stderr)
        return 130
    except FloatingPointError as err:
        if getattr(args, "debug", False):
            raise
        print(f"minimix train: error: {err}. {_resume_hint(run_dir, diverged=True)}", file=sys.stderr)
        return 1
    finally:
        warm_up.stop(helper)
    if history:
        best = max(history, key=lambda h: h["test_acc"])
        print(f"done in {time.perf_counter() - start:.0f} s; best test accuracy {best['test_acc']:.2%} "
              f"(epoch {best['epoch']}); checkpoints and metrics.csv in {run_dir}")


def resume_command(run_dir) -> str:
    return f"python -m minimix train --resume {run_dir}"


def _resume_hint(run_dir: Path, diverged: bool = False) -> str:
    """Where the run can be continued from: its last checkpoint and the command, or that it has none."""
    try:
        saved = json.loads((run_dir / "last.json").read_text())["state"]
        epoch = saved["epoch"]
        if saved.get("step"):
            epoch = f"{epoch}, step {saved['step']} of epoch {epoch + 1}"
    except (OSError, ValueError, KeyError, TypeError):
        return (f"No checkpoint was written yet (the first epoch did not finish); {run_dir} keeps the run's "
                f"config: `{resume_command(run_dir)}` starts it again from the beginning")
    if diverged:
        return (f"The last good checkpoint (epoch {epoch}) is in {run_dir}; `{resume_command(run_dir)}` continues "
                "from it with the same recipe (and so takes the same steps again); for a lower learning rate "
                "start a new run with --lr")
    return f"The last checkpoint (epoch {epoch}) is in {run_dir}; continue with: {resume_command(run_dir)}"


def _refuse_changes(config, given: dict, model_kwargs: dict):
    """A resumed run continues with its saved recipe: refuse options that would change it."""
    saved = dataclasses.asdict(config)
    changed = [f"{k}={v!r} (run has {saved[k]!r})" for k, v in given.items() if saved[k] != v]
    changed += [f"{k}={v!r} (run has {config.model_kwargs.get(k)!r})" for k, v in model_kwargs.items()
                if config.model_kwargs.get(k) != v]
    if changed:
        raise ValueError("--resume continues a run with its saved recipe; these options differ: "
                         + ", ".join(changed))


def configure_performance(threads: int | None):
    """The process-wide speed settings, before any kernel runs (``minimix.perf.configure``: single-threaded
    BLAS, Numba's TBB pool, allocator thresholds); ``threads`` for the kernels, None: all cores."""
    from .. import perf

    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"--threads must be an integer >= 1, got {threads!r}")
    perf.configure(threads=threads)
