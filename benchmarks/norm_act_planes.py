"""BatchNorm + activation (``minimix.kernels.norm_act_numba``): its two ways through memory, timed.

    python benchmarks/norm_act_planes.py [--batch 128] [--rounds 7] [--threads 2]

The fused kernel can take x (N, C, P) channel by channel (``_forward`` / ``_backward``: one channel's
N planes at a time, so its statistics and its normalisation read it while it is in cache) or image by
image (``_forward_small_planes`` / ``_backward_small_planes``: memory order, per-thread partial sums).
``_SMALL_PLANE`` chooses: planes of at most that many values go image by image. This script times
forward and backward of both ways on the CIFAR MixNet's BatchNorm shapes, interleaved round by round in
one process, and prints medians and the ratio image / channel (below 1: image by image is faster).

It also times the forward with ReLU, SiLU and no activation on one shape: ReLU, a comparison and a
select, should cost no more than SiLU, whose exp is a dozen vector operations. When it costs several
times more, ReLU's loop has stopped vectorizing (``affine_act`` explains what did that once).
"""
import argparse
import time

import numpy as np

SHAPES = [((144, 16, 16), "silu"), ((48, 32, 32), "relu"), ((96, 32, 32), "silu"), ((240, 8, 8), "silu"),
          ((624, 4, 4), "silu"), ((1024, 4, 4), None)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128, help="images per batch (default 128, the training step's)")
    p.add_argument("--rounds", type=int, default=7, help="timed rounds, each way once per round (default 7)")
    p.add_argument("--threads", type=int, default=2, help="threads (default 2)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import minimix.perf

    minimix.perf.configure(threads=args.threads)
    from minimix.kernels import norm_act_numba as na

    rng = np.random.default_rng(0)
    ways = {"channel": 0, "image": 1 << 62}  # _SMALL_PLANE values that force one way for every plane
    default = na._SMALL_PLANE
    print(f"BatchNorm + act, float32, batch {args.batch}, {args.threads} threads, median of {args.rounds} rounds "
          f"(ms); image by image is used up to {default} values per plane")
    print(f"{'shape (C, H, W), act':28s} {'channel fwd':>11s} {'image fwd':>10s} {'ratio':>6s}   "
          f"{'channel bwd':>11s} {'image bwd':>10s} {'ratio':>6s}")
    try:
        for (c, h, w), act in SHAPES:
            x = rng.standard_normal((args.batch, c, h, w), dtype=np.float32)
            g = rng.standard_normal(x.shape, dtype=np.float32)
            gamma, beta = np.ones(c, np.float32), np.zeros(c, np.float32)
            times = {way: [] for way in ways}
            for round_ in range(args.rounds + 1):  # round 0 compiles and warms up
                for way, threshold in ways.items():
                    na._SMALL_PLANE = threshold
                    start = time.perf_counter()
                    y, mean, var, coef = na.batch_norm_act_forward(x, gamma, beta, 1e-5, act, True)
                    middle = time.perf_counter()
                    na.batch_norm_act_backward(x, y, g, coef, mean, 1 / np.sqrt(var + 1e-5), act, True)
                    if round_:
                        times[way].append((middle - start, time.perf_counter() - middle))
            (cf, cb), (imf, imb) = (np.median(np.array(times[way]), axis=0) * 1e3 for way in ("channel", "image"))
            print(f"{str((c, h, w)) + ', ' + str(act):28s} {cf:11.2f} {imf:10.2f} {imf / cf:5.2f}x   "
                  f"{cb:11.2f} {imb:10.2f} {imb / cb:5.2f}x")
    finally:
        na._SMALL_PLANE = default

    x = rng.standard_normal((args.batch, 48, 32, 32), dtype=np.float32)
    gamma, beta = np.ones(48, np.float32), np.zeros(48, np.float32)
    acts = [None, "relu", "silu"]
    times = {act: [] for act in acts}
    for round_ in range(args.rounds + 1):
        for act in acts:
            start = time.perf_counter()
            na.batch_norm_act_forward(x, gamma, beta, 1e-5, act, True)
            if round_:
                times[act].append(time.perf_counter() - start)
    print(f"\nforward on {(args.batch, 48, 32, 32)} by activation (ms): "
          + ", ".join(f"{act or 'none'} {np.median(times[act]) * 1e3:.2f}" for act in acts))


if __name__ == "__main__":
    main()
