"""The polyphase split and merge of stride-2 depthwise convolutions: the general loop and the stride-2 one, timed.

    python benchmarks/polyphase.py [--rounds 7] [--threads 2]

A stride-2 depthwise convolution first splits its input into four phase planes (and its input
gradient is merged back from them): ``minimix.kernels.depthwise_numba``. ``_phases`` does this
for any stride, reading ``row[q * sw]`` with the stride known only at run time;
``_phases_stride2`` does it for stride (2, 2) on even planes, MixNet's every stride-2 layer.
This script times both on the CIFAR MixNet's stride-2 groups, at the training batch (128) and
the inference batch (500), interleaved round by round in one process, checks that they agree,
and prints medians and the ratio stride-2 / general (below 1: the stride-2 loop is faster).

The kernels themselves no longer use a whole-layer canvas for stride (2, 2) on even planes: each
block of channels splits its own phase planes into a buffer while it works on it (forward and
weight gradient: ``_shifted_sum``, ``_tap_products`` given ``pixels``), and the input gradient
merges each block's phase results into gx while they are in cache (``_shifted_sum_merged``). A
second table times the three kernels both ways, on the canvas made and merged by
``_phases_stride2`` and per block, interleaved, checks that they agree bit for bit, and prints the
ratio per block / canvas (below 1: per block is faster).
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
    """The stride-2 kernels (forward, input gradient, weight gradient) on a whole-layer canvas and per block."""
    from minimix.kernels import depthwise_numba as dn

    print(f"\nstride-2 depthwise kernels, {kernel}x{kernel}, float32: whole-layer canvas (split or merge by "
          f"_phases_stride2) against per block, median of {args.rounds} rounds (ms), ratio per block / canvas")
    print(f"{'batch, layer (C, H, W), group':36s} {'forward':>20s}   {'input gradient':>20s}   {'weight gradient':>20s}")
    for batch in (int(b) for b in args.batches.split(",")):
        for channels, size, c0, group in SHAPES:
            x = rng.standard_normal((batch, channels, size, size), dtype=np.float32)
            w = rng.standard_normal((group, kernel, kernel), dtype=np.float32)
            plan = dn._plan(size, size, kernel, kernel, 2, kernel // 2, 1)
            gy = rng.standard_normal((batch, channels, plan.OH, plan.OW), dtype=np.float32)
            taps = (plan.tap_phase, plan.tap_u, plan.tap_v, plan.tap_k, plan.Hc, plan.Wc, plan.block(group))
            no_epilogue, no_pixels = dn._epilogue(None, group, x.dtype), dn._NO_PIXELS[x.dtype]
            offset, w2, part = c0 * plan.OH * plan.OW, w.reshape(group, -1), slice(c0, c0 + group)
            results = {way: (np.zeros_like(gy), np.zeros_like(x), np.zeros_like(w2)) for way in ("canvas", "per block")}

            def canvas_way(y, gx, gw):
                times, start = [], time.perf_counter()
                canvas = np.empty((4, batch, group * plan.Hc * plan.Wc), np.float32)
                dn._phases_stride2(x, c0, canvas, plan.Hc, plan.Wc, True)
                dn._shifted_sum(canvas, 0, y.reshape(batch, -1), offset, w2, *taps, *no_epilogue, no_pixels)
                times.append(time.perf_counter())
                for phase in range(4):  # each phase plane of gx collects its taps, then the merge
                    sel = plan.tap_phase == phase
                    dn._shifted_sum(gy.reshape(1, batch, -1), offset, canvas[phase], 0, w2,
                                    np.zeros(sel.sum(), np.int64), -plan.tap_u[sel], -plan.tap_v[sel],
                                    plan.tap_k[sel], plan.Hc, plan.Wc, plan.block(group), *no_epilogue, no_pixels)
                dn._phases_stride2(gx, c0, canvas, plan.Hc, plan.Wc, False)
                times.append(time.perf_counter())
                dn._phases_stride2(x, c0, canvas, plan.Hc, plan.Wc, True)  # the forward's canvas is not kept
                dn._tap_products(canvas, 0, gy.reshape(batch, -1), offset, gw, *taps, no_pixels)
                times.append(time.perf_counter())
                return np.diff([start] + times)

            def per_block_way(y, gx, gw):  # what depthwise_forward / _backward_input / _backward_weight call
                start = time.perf_counter()
                src, src0, pixels = plan.input_canvas(x, c0, group)
                dn._shifted_sum(src, src0, y.reshape(batch, -1), offset, w2, *taps, *no_epilogue, pixels)
                middle = time.perf_counter()
                order = plan.taps_by_phase
                dn._shifted_sum_merged(gy.reshape(1, batch, -1), offset, gx.reshape(batch, -1), c0 * size * size, w2,
                                       plan.phase_parts, -plan.tap_u[order], -plan.tap_v[order], plan.tap_k[order],
                                       plan.Hc, plan.Wc, plan.block(group))
                end = time.perf_counter()
                dn._tap_products(src, src0, gy.reshape(batch, -1), offset, gw, *taps, pixels)
                return np.diff([start, middle, end, time.perf_counter()])

            ways = {"canvas": canvas_way, "per block": per_block_way}
            times = {way: [] for way in ways}
            for round_ in range(args.rounds + 1):  # round 0 compiles and warms up
                for way in (list(ways) if round_ % 2 else list(ways)[::-1]):
                    elapsed = ways[way](*results[way])
                    if round_:
                        times[way].append(elapsed)
            canvas, per_block = results.values()
            assert np.array_equal(canvas[0][:, part], per_block[0][:, part]), "the two forwards differ"
            assert np.array_equal(canvas[1][:, part], per_block[1][:, part]), "the two input gradients differ"
            assert np.array_equal(canvas[2], per_block[2]), "the two weight gradients differ"
            medians = {way: np.median(np.array(times[way]), axis=0) * 1e3 for way in ways}
            cells = [f"{c:6.2f} {b:6.2f} {b / c:5.2f}x" for c, b in zip(medians["canvas"], medians["per block"])]
            label = f"{batch}, {(channels, size, size)}, [{c0}:{c0 + group}]"
            print(f"{label:36s} " + "   ".join(f"{cell:>20s}" for cell in cells))


if __name__ == "__main__":
    main()
