"""How long a block of channels the depthwise kernels sweep: the choices, timed on the CIFAR MixNet's layers.

    python benchmarks/depthwise_blocks.py [--batches 128,500] [--rounds 5] [--threads 2]

``minimix.kernels.depthwise_numba`` works on blocks of whole channel planes, each swept with four
taps at a time against the block's weight maps (taps x block elements). ``_Plan.block`` picks
about ``_BLOCK_ELEMENTS`` elements per block, fewer where the weight maps would take more than half
of a core's level-2 cache (``_l2_cache_bytes``, read from the operating system). This script times
forward, input gradient and weight gradient under a few (block elements, level-2 bytes assumed)
settings, interleaved round by round in one process, on the MixNet's depthwise groups, and prints
each setting's time as a ratio to the first (the kernels' choice on this host): below 1 is faster.
"""
import argparse
import time

import numpy as np

# (channels of the layer, plane size, kernel, first and last channel of the group, stride)
LAYERS = [(48, 32, 3, 0, 48, 1), (144, 16, 3, 0, 72, 1), (144, 16, 5, 72, 144, 1), (192, 8, 9, 144, 192, 1),
          (240, 8, 5, 120, 240, 1), (624, 4, 9, 468, 624, 1), (96, 32, 7, 64, 96, 2)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", default="128,500", help="comma-separated batch sizes (default 128,500)")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds, each setting once per round (default 5)")
    p.add_argument("--threads", type=int, default=2, help="threads (default 2)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import minimix.perf

    minimix.perf.configure(threads=args.threads)
    from minimix.kernels import depthwise_numba as dw

    chosen = (dw._BLOCK_ELEMENTS, dw._l2_cache_bytes())
    settings = [chosen] + [s for s in [(4096, 512 << 10), (8192, 512 << 10), (4096, 1 << 20), (16384, 2 << 20)]
                           if s != chosen]
    read_l2 = dw._l2_cache_bytes
    print(f"depthwise kernels, float32, {args.threads} threads, median of {args.rounds} rounds; level-2 cache "
          f"read as {chosen[1] >> 10} KB; settings (block elements, level-2 KB assumed), the first is the kernels' choice")
    print("times: forward / input gradient / weight gradient, ms for the first setting, ratios for the others")
    rng = np.random.default_rng(0)
    try:
        for batch in (int(b) for b in args.batches.split(",")):
            for channels, size, k, first, last, stride in LAYERS:
                x = rng.standard_normal((batch, channels, size, size), dtype=np.float32)
                w = rng.standard_normal((last - first, k, k), dtype=np.float32)
                out = -(-size // stride)
                gy = rng.standard_normal((batch, channels, out, out), dtype=np.float32)
                y, gx = np.empty_like(gy), np.empty_like(x)
                geometry = dict(stride=stride, padding=k // 2)
                group = slice(first, last)
                times = {s: [] for s in settings}
                for round_ in range(args.rounds + 1):  # round 0 compiles and warms up
                    for setting in settings:
                        dw._BLOCK_ELEMENTS, dw._l2_cache_bytes = setting[0], (lambda b=setting[1]: b)
                        t0 = time.perf_counter()
                        dw.depthwise_forward(x, w, **geometry, channels=group, out=y)
                        t1 = time.perf_counter()
                        dw.depthwise_backward_input(gy, w, (size, size), **geometry, channels=group, out=gx)
                        t2 = time.perf_counter()
                        dw.depthwise_backward_weight(x, gy, (k, k), **geometry, channels=group)
                        if round_:
                            times[setting].append((t1 - t0, t2 - t1, time.perf_counter() - t2))
                base = np.median(times[chosen], axis=0)
                line = (f"{batch}x{channels}x{size}x{size} k{k} s{stride} [{first}:{last}] "
                        f"{'/'.join(f'{v * 1e3:.2f}' for v in base)} ms")
                for setting in settings[1:]:
                    ratios = np.median(times[setting], axis=0) / base
                    line += f" | {setting[0]},{setting[1] >> 10}K {'/'.join(f'{r:.2f}' for r in ratios)}"
                print(line, flush=True)
    finally:
        dw._BLOCK_ELEMENTS, dw._l2_cache_bytes = chosen[0], read_l2


if __name__ == "__main__":
    main()
