"""Does the trainer run at the speed of its step? Trainer steps and bare benchmark steps, interleaved.

    MINIMIX_DATA=../shared/data python benchmarks/trainer_vs_step.py [--limit 12800] [--threads 2]

Issue 17, item 1: full-data training images/s should stay within 5% of what
``benchmarks/train_step.py`` measures at the recipe's batch size on the same host. Timing the two
at different times on a shared host compares the host's moods (its speed moved by 40% within one
15-epoch run), so this script runs them in ONE process, step by step: after every optimisation
step of the trainer (``Trainer(on_step=...)``: the real recipe at batch 256, real CIFAR-10 images,
augmentation, loss with label smoothing, the scheduler, the bookkeeping) it runs one step of
``train_step.py``'s minimix runner (random inputs, same network, batch 256). Each trainer step is
the time between two bare steps; each pair of neighbours saw the same host. Printed: the medians,
the median of the per-step ratios, and their spread. ``--limit`` images (the recipe's balanced
subset) make one epoch: the step's cost does not depend on how many images an epoch has.
"""
import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _bench_module():
    spec = importlib.util.spec_from_file_location("train_step_bench", HERE / "train_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=12800, help="training images in the epoch (default 12800: 50 steps)")
    p.add_argument("--threads", type=int, default=2, help="threads (default 2)")
    p.add_argument("--data", help="CIFAR-10 root (default $MINIMIX_DATA)")
    args = p.parse_args(argv)

    bench = _bench_module()
    bare = bench.MinimixRunner(argparse.Namespace(threads=args.threads))  # configures the threads first
    from minimix import manual_seed
    from minimix.study.kernels import load_data
    from minimix.training import Trainer
    from minimix.training.recipe import build_model, data_location, recipe_config

    config = recipe_config(model="mixnet_cifar", epochs=1, limit=args.limit, test_limit=500)
    try:
        data = load_data(data_location(args.data)[0], args.limit, log=print)
    except (OSError, ValueError) as err:  # no data here: the library's message says where it looked
        p.error(f"the trainer needs CIFAR-10 (--data or $MINIMIX_DATA): {err}")
    x, y = bench.data(config.batch_size)
    bare.train_step(x, y)  # compile and warm up before the first timed step
    manual_seed(config.seed)
    model = build_model(config.model, config.model_kwargs, num_classes=10)
    trainer_steps, bare_steps, mark = [], [], [None]

    def on_step(epoch, step, loss):
        now = time.perf_counter()
        if mark[0] is not None:
            trainer_steps.append(now - mark[0])
        started = time.perf_counter()
        bare.train_step(x, y)
        bare_steps.append(time.perf_counter() - started)
        mark[0] = time.perf_counter()

    print(f"{args.limit:,} images, batch {config.batch_size}, {args.threads} threads: each trainer step "
          "followed by one bare train_step.py step", flush=True)
    Trainer(model, data[:2], data[2:], config, progress=False, log=lambda line: print(line, flush=True),
            on_step=on_step).fit()
    t, b = np.array(trainer_steps), np.array(bare_steps[1:len(trainer_steps) + 1])
    ratios = t / b
    batch = config.batch_size
    print(f"trainer step: median {np.median(t):.3f} s ({batch / np.median(t):.1f} img/s), range {t.min():.3f}-{t.max():.3f}")
    print(f"bare step:    median {np.median(b):.3f} s ({batch / np.median(b):.1f} img/s), range {b.min():.3f}-{b.max():.3f}")
    q1, q3 = np.percentile(ratios, [25, 75])
    print(f"trainer / bare, step by step ({len(ratios)} pairs): median {np.median(ratios):.3f}, "
          f"quartiles {q1:.3f}-{q3:.3f}; trainer images/s = {1 / np.median(ratios):.1%} of the bare step's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
