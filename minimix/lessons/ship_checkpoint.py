"""Make the small trained checkpoint that ships with the lessons, from a finished training run.

    python -m minimix.lessons.ship_checkpoint RUN_DIR [--commit SHA]

Writes ``minimix/lessons/checkpoints/mixnet_cifar.npz`` (the model's weights and BatchNorm
statistics in float16: half the size of float32, about 1.6 MB) and ``mixnet_cifar.json`` (the
recipe, the per-epoch history, the commit and command that trained it, and the test accuracy of
the float16 weights themselves, measured here on the full CIFAR-10 test set from ``$MINIMIX_DATA``).
``minimix.lessons.find_checkpoint`` uses it when you have no completed run of your own.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .course import SHIPPED_CHECKPOINT


def ship(run_dir, commit: str, command: str) -> dict:
    from ..data import DataLoader
    from ..training import evaluate, load_weights, read_checkpoint
    from ..training.recipe import build_model, load_split

    meta, state, config = read_checkpoint(Path(run_dir) / "best.json")
    if state["epoch"] != config.epochs or config.limit is not None or config.test_limit is not None:
        raise ValueError(f"{meta}: not a completed full-data run (epoch {state['epoch']} of {config.epochs}, "
                         f"limit {config.limit}, test_limit {config.test_limit})")
    # float arrays in float16; integer ones (BatchNorm's num_batches_tracked) as they are
    half = {k: np.asarray(v).astype(np.float16) if np.asarray(v).dtype.kind == "f" else np.asarray(v)
            for k, v in state["model"].items()}
    if not all(np.isfinite(v).all() for v in half.values()):
        raise ValueError(f"{meta}: a weight does not fit float16")
    model = build_model(config.model, config.model_kwargs)
    load_weights(model, {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in half.items()}, meta)
    images, labels, _ = load_split(None, train=False)
    print(f"evaluating the float16 weights on {len(labels):,} test images ...")
    result = evaluate(model, DataLoader(images, labels, batch_size=500, shuffle=False))
    history = state["history"]
    info = {
        "description": (f"{config.model} trained {config.epochs} epochs on the full CIFAR-10 training set "
                        f"with the CLI recipe (batch {config.batch_size}, peak lr {config.lr})"),
        "test_accuracy": result["acc"],
        "test_loss": result["loss"],
        "test_accuracy_float32_run": max(h["test_acc"] for h in history),
        "epoch": state["epoch"],
        "history": history,
        "config": state["config"],
        "commit": commit,
        "command": command,
        "data": "CIFAR-10 (../shared/data/cifar10-jpeg.tar.gz: JPEG copies of all 50,000 + 10,000 images)",
        "weights": "float16 (cast to float32 on load)",
        "made": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    SHIPPED_CHECKPOINT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(SHIPPED_CHECKPOINT.with_suffix(".npz"), **half)
    SHIPPED_CHECKPOINT.write_text(json.dumps(info, indent=1) + "\n")
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a completed training run (its best.json is shipped)")
    parser.add_argument("--commit", required=True, help="the commit of the code that trained the run")
    parser.add_argument("--command", required=True, help="the command that trained the run")
    args = parser.parse_args(argv)
    info = ship(args.run_dir, args.commit, args.command)
    size = SHIPPED_CHECKPOINT.with_suffix(".npz").stat().st_size
    print(f"wrote {SHIPPED_CHECKPOINT.with_suffix('.npz')} ({size / 1e6:.2f} MB) and its .json: "
          f"test accuracy {info['test_accuracy']:.2%} with float16 weights "
          f"(the run's best: {info['test_accuracy_float32_run']:.2%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
