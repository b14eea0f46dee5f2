"""Seconds per training step of each kernel-study variant, the measurement behind the study's budget.

    python benchmarks/kernel_study_steps.py [--rounds 5] [--width 0.25] [--batch 256] [--variants k3,k11]

Builds ``mixnet_cifar`` for every variant of ``minimix.study.kernels.VARIANTS`` and times one
training step each (forward, cross-entropy, backward, SGD with nesterov momentum) on random
32x32 inputs, round by round, interleaved (a busy machine slows all variants alike). The first
round is a warm-up (Numba compilation, caches). Prints the median and range of the timed rounds;
``minimix.study.kernels.STEP_SECONDS`` holds one run of it, and the study's budget is computed from those.
"""
import argparse
import time

import numpy as np


def main(argv=None):
    from minimix.study.kernels import VARIANTS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="rounds, the first untimed (default 5)")
    p.add_argument("--width", type=float, default=0.25, help="width multiplier (default 0.25, the study's)")
    p.add_argument("--batch", type=int, default=64, help="batch size (default 64, the study's)")
    p.add_argument("--threads", type=int, default=2, help="threads (default 2)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated variants (default all)")
    args = p.parse_args(argv)

    import minimix as mm
    import minimix.nn.functional as F
    import minimix.perf
    from minimix.optim import SGD, weight_decay_groups
    from minimix.training.recipe import build_model

    minimix.perf.configure(threads=args.threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, args.batch)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    runs = {}
    for name in names:
        mm.manual_seed(0)
        model = build_model("mixnet_cifar", VARIANTS[name].model_kwargs(args.width))
        runs[name] = (model, SGD(weight_decay_groups(model, 5e-5), lr=0.05, momentum=0.9, nesterov=True))

    def step(name):
        model, opt = runs[name]
        model.train()
        opt.zero_grad()
        loss = F.cross_entropy(model(mm.Tensor(x)), y)
        loss.backward()
        opt.step()

    times = {name: [] for name in names}
    for round_ in range(args.rounds):
        for name in names:
            started = time.perf_counter()
            step(name)
            times[name].append(time.perf_counter() - started)
        print(f"round {round_ + 1}/{args.rounds}" + (" (warm-up)" if round_ == 0 else ""), flush=True)
    print(f"seconds per training step, batch {args.batch}, width {args.width}, {args.threads} threads "
          f"(median and range of {args.rounds - 1} rounds):")
    for name in names:
        timed = times[name][1:] or times[name]
        print(f"  {name:16s} {np.median(timed):6.2f} s  ({min(timed):.2f}-{max(timed):.2f})")
    print(f"  {'sum':16s} {sum(np.median(times[n][1:] or times[n]) for n in names):6.2f} s")


if __name__ == "__main__":
    main()
