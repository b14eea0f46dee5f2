"""The polyphase split and merge of stride-2 depthwise convolutions: the general loop and the stride-2 one, timed.

    python benchmarks/polyphase.py [--rounds 7] [--threads 2]

A stride-2 depthwise convolution first splits its input into four phase planes (and its input
gradient is merged back from them): ``minimix.kernels.depthwise_numba``. ``_phases`` does this
for any stride, reading ``row[q * sw]`` with the stride known only at run time;
``_phases_stride2`` does it for stride (2, 2) on even planes, MixNet's every stride-2 layer.
This script times both on the CIFAR MixNet's stride-2 groups, at the training batch (128) and
the inference batch (500), interleaved round by round in one process, checks that they agree,
and prints medians and the ratio stride-2 / general (below 1: the stride-2 loop is faster).
"""
import argparse
import time

import numpy as np

# (channels of the whole layer, plane size, first channel and channels of one of its groups)
SHAPES = [(96, 32, 32, 32), (144, 16, 48, 48), (384, 8, 76, 76)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", default="128,500", help="comma-separated batch sizes (default 128,500)")
    p.add_argument("--rounds", type=int, default=7, help="timed rounds, each loop once per round (default 7)")
    p.add_argument("--threads", type=int, default=2, help="threads (default 2)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import minimix.perf

    minimix.perf.configure(threads=args.threads)
    from minimix.kernels.depthwise_numba import _phases, _phases_stride2

    rng = np.random.default_rng(0)
    print(f"polyphase split and merge, stride 2, float32, {args.threads} threads, median of {args.rounds} rounds (ms)")
    print(f"{'batch, layer (C, H, W), group':36s} {'general split':>13s} {'stride-2':>9s} {'ratio':>6s}   "
          f"{'general merge':>13s} {'stride-2':>9s} {'ratio':>6s}")
    for batch in (int(b) for b in args.batches.split(",")):
        for channels, size, c0, group in SHAPES:
            x = rng.standard_normal((batch, channels, size, size), dtype=np.float32)
            half = size // 2
            canvases = {way: np.empty((4, batch, group * half * half), np.float32) for way in ("general", "stride2")}
            merged = {way: np.zeros_like(x) for way in canvases}
            ways = {"general": lambda a, q, split: _phases(a, c0, q, 2, 2, half, half, split),
                    "stride2": lambda a, q, split: _phases_stride2(a, c0, q, half, half, split)}
            times = {way: [] for way in ways}
            for round_ in range(args.rounds + 1):  # round 0 compiles and warms up
                for way, run in ways.items():
                    start = time.perf_counter()
                    run(x, canvases[way], True)
                    middle = time.perf_counter()
                    run(merged[way], canvases[way], False)
                    if round_:
                        times[way].append((middle - start, time.perf_counter() - middle))
            assert np.array_equal(canvases["general"], canvases["stride2"]), "the two splits differ"
            assert np.array_equal(merged["general"], merged["stride2"]), "the two merges differ"
            (gs, gm), (ss, sm) = (np.median(np.array(times[way]), axis=0) * 1e3 for way in ways)
            label = f"{batch}, {(channels, size, size)}, [{c0}:{c0 + group}]"
            print(f"{label:36s} {gs:13.2f} {ss:9.2f} {ss / gs:5.2f}x   {gm:13.2f} {sm:9.2f} {sm / gm:5.2f}x")


if __name__ == "__main__":
    main()
