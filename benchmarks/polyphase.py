"""The polyphase split and merge of stride-2 depthwise convolutions: the general loop and the stride-2 one, timed.

    python benchmarks/polyphase.py [--rounds 7] [--threads 2]

A stride-2 depthwise convolution first splits its input into four phase planes (and its input
gradient is merged back from them): ``minimix.kernels.depthwise_numba``. ``_phases`` does this
for any stride, reading ``row[q * sw]`` with the stride known only at run time;
``_phases_stride2`` does it for stride (2, 2) on even planes, MixNet's every stride-2 layer.
This script times both on the CIFAR MixNet's stride-2 groups, at the training batch (128) and
the inference batch (500), interleaved round by round in one process, checks that they agree,
and prints medians and the ratio stride-2 / general (below 1: the stride-2 loop is faster).

The merge is what the input gradient uses. For the split, the forward and weight-gradient kernels
no longer take a whole-layer canvas: each block of channels splits its own phase planes into a
buffer while it works on it (``_shifted_sum``, ``_tap_products`` given ``pixels``). A second table
times those two kernels both ways, the canvas (``_phases_stride2`` + kernel) and the split per block,
interleaved, checks that they agree bit for bit, and prints the ratio per block / canvas.
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
    kernels_both_ways(args, rng)


def kernels_both_ways(args, rng, kernel=3):
    """The stride-2 forward and weight-gradient kernels on a whole-layer canvas and with the split per block."""
    from minimix.kernels import depthwise_numba as dn

    print(f"\nstride-2 depthwise kernels, {kernel}x{kernel}, float32: whole-layer canvas (split, then the kernel) "
          f"against the split per block, median of {args.rounds} rounds (ms)")
    print(f"{'batch, layer (C, H, W), group':36s} {'fwd canvas':>10s} {'per block':>9s} {'ratio':>6s}   "
          f"{'gw canvas':>10s} {'per block':>9s} {'ratio':>6s}")
    for batch in (int(b) for b in args.batches.split(",")):
        for channels, size, c0, group in SHAPES:
            x = rng.standard_normal((batch, channels, size, size), dtype=np.float32)
            w = rng.standard_normal((group, kernel * kernel), dtype=np.float32)
            plan = dn._plan(size, size, kernel, kernel, 2, kernel // 2, 1)
            gy = rng.standard_normal((batch, channels, plan.OH, plan.OW), dtype=np.float32)
            taps = (plan.tap_phase, plan.tap_u, plan.tap_v, plan.tap_k, plan.Hc, plan.Wc, plan.block(group))
            epilogue, offset = dn._epilogue(None, group, x.dtype), c0 * plan.OH * plan.OW
            results = {way: (np.zeros_like(gy), np.zeros_like(w)) for way in ("canvas", "per block")}

            def run(way):
                y, gw = results[way]
                start = time.perf_counter()
                if way == "canvas":
                    src, src0 = np.empty((4, batch, group * plan.Hc * plan.Wc), np.float32), 0
                    dn._phases_stride2(x, c0, src, plan.Hc, plan.Wc, True)
                    pixels = dn._NO_PIXELS[x.dtype]
                else:
                    src, src0, pixels = plan.input_canvas(x, c0, group)
                dn._shifted_sum(src, src0, y.reshape(batch, -1), offset, w, *taps, *epilogue, pixels)
                middle = time.perf_counter()
                if way == "canvas":  # the weight gradient splits again (the forward's canvas is not kept)
                    dn._phases_stride2(x, c0, src, plan.Hc, plan.Wc, True)
                dn._tap_products(src, src0, gy.reshape(batch, -1), offset, gw, *taps, pixels)
                return middle - start, time.perf_counter() - middle

            times = {way: [] for way in results}
            for round_ in range(args.rounds + 1):  # round 0 compiles and warms up
                for way in (list(results) if round_ % 2 else list(results)[::-1]):
                    elapsed = run(way)
                    if round_:
                        times[way].append(elapsed)
            assert all(np.array_equal(a, b) for a, b in zip(*results.values())), "the two ways differ"
            (cf, cw), (bf, bw) = (np.median(np.array(times[way]), axis=0) * 1e3 for way in results)
            label = f"{batch}, {(channels, size, size)}, [{c0}:{c0 + group}]"
            print(f"{label:36s} {cf:10.2f} {bf:9.2f} {bf / cf:5.2f}x   {cw:10.2f} {bw:9.2f} {bw / cw:5.2f}x")


if __name__ == "__main__":
    main()
