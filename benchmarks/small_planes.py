"""The kernels for small planes against what they replace, on the CIFAR MixNet's layers (float32, batch 128).

1. Depthwise convolution on small planes: one small matrix per channel (``minimix.kernels.depthwise_dense``)
   against the kernels minimix uses without it (``depthwise_numba``'s flat sweeps on 4x4 planes and for the
   weight gradient on 8x8 ones, else ``depthwise_rows``: the last column names the forward's), for the MixConv layers' groups: 156 of 624 channels on 4x4 planes (kernels
   3 to 9), 48 of 192 on 8x8 planes (kernels 7 and 9), about 77 of 384 at stride 2 from 8x8 (kernels 3 to 11):
   forward, input gradient, weight gradient.
2. The 1x1 convolutions' weight gradient (``minimix.kernels.pointwise.pointwise_backward_weight``): the images of
   a group side by side in one product ("gathered") against one product per image, summed ("per image"), on the
   1x1 shapes of the network's 4x4 and 8x8 stages. minimix gathers on planes of at most ``_GATHER_PIXELS``.

Both ways run interleaved round by round on the same arrays; prints each one's median time and the median of the
per-round ratios new / old, and checks that they agree. ``depthwise_dense.applies`` and
``pointwise._GATHER_PIXELS`` decide what minimix uses; here each way is forced in turn.

    python benchmarks/small_planes.py [--rounds 11] [--threads 2] [--batch 128]
"""
import argparse
import statistics
import time

import numpy as np

# (stride, input plane size, channels of the layer, channels of one group, kernel sizes)
DEPTHWISE = [(1, 4, 624, 156, (3, 5, 7, 9)), (1, 8, 192, 48, (7, 9)), (2, 8, 384, 77, (3, 5, 7, 9, 11))]
# (in, out, plane size) of the 1x1 convolutions on 4x4 and 8x8 planes (grouped ones: one group)
POINTWISE = [(104, 624, 4), (104, 1024, 4), (312, 52, 4), (384, 104, 4),
             (40, 240, 8), (240, 40, 8), (64, 384, 8), (96, 32, 8), (192, 64, 8)]


def _race(ways, rounds):
    """{name: list of times} for the functions in ``ways``, called in turn round by round (one untimed call each
    first); also returns each one's last result."""
    results = {name: fn() for name, fn in ways.items()}
    times = {name: [] for name in ways}
    for _ in range(rounds):
        for name, fn in ways.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times, results


def _summary(times, old, new):
    ratios = [b / a for a, b in zip(times[old], times[new])]
    return (f"{1e3 * statistics.median(times[old]):8.3f} {1e3 * statistics.median(times[new]):8.3f} "
            f"{statistics.median(ratios):6.2f}")


def _agree(name, a, b):
    scale = max(1.0, float(np.abs(a).max()))
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * scale, err_msg=name)


def depthwise(batch, rounds, rng):
    from minimix.kernels import depthwise_dense, depthwise_numba, depthwise_rows

    applies = depthwise_dense.applies
    print("depthwise on small planes: ms without depthwise_dense, ms dense, dense / without")
    print(f"{'stride':>6s} {'plane':>5s} {'k':>3s} | {'forward':>24s} | {'input gradient':>24s} | {'weight gradient':>24s} | "
          "without / minimix uses")
    for stride, hw, channels, group, kernels in DEPTHWISE:
        out_hw = hw // stride
        for k in kernels:
            x = rng.standard_normal((batch, channels, hw, hw)).astype(np.float32)
            gy = rng.standard_normal((batch, channels, out_hw, out_hw)).astype(np.float32)
            w = rng.standard_normal((group, k, k)).astype(np.float32)
            y, gx = np.empty_like(gy), np.empty_like(x)
            geometry = dict(stride=(stride, stride), padding=(k // 2, k // 2), dilation=(1, 1),
                            channels=slice(0, group))
            kernels_of = {
                "forward": lambda: depthwise_numba.depthwise_forward(x, w, **geometry, out=y)[:, :group].copy(),
                "input gradient": lambda: depthwise_numba.depthwise_backward_input(gy, w, (hw, hw), **geometry,
                                                                                   out=gx)[:, :group].copy(),
                "weight gradient": lambda: depthwise_numba.depthwise_backward_weight(x, gy, (k, k), **geometry)}
            cells = []
            for name, kernel in kernels_of.items():
                def forced(dense, kernel=kernel):
                    def run():
                        depthwise_dense.applies = applies if dense else (lambda *geometry: False)
                        try:
                            return kernel()
                        finally:
                            depthwise_dense.applies = applies
                    return run
                times, results = _race({"without": forced(False), "dense": forced(True)}, rounds)
                _agree(f"{name} stride {stride} k{k}", results["without"], results["dense"])
                cells.append(_summary(times, "without", "dense"))
            layer = (hw, hw, k, k, (stride, stride), (k // 2, k // 2), (1, 1))
            without = "rows" if depthwise_rows.applies(*layer) else "flat"
            uses = "dense" if applies(hw, hw, out_hw, out_hw, k, k) else without
            print(f"{stride:6d} {hw:5d} {k:3d} | " + " | ".join(cells) + f" | {without} / {uses}")


def pointwise(batch, rounds, rng):
    from minimix.kernels import pointwise as kernels

    limit = kernels._GATHER_PIXELS
    print("1x1 weight gradient: ms per image, ms gathered, gathered / per image")
    print(f"{'in->out':>9s} {'plane':>5s} | {'':>24s} | minimix uses")
    for c, o, hw in POINTWISE:
        x = rng.standard_normal((batch, c, hw, hw)).astype(np.float32)
        gy = rng.standard_normal((batch, o, hw, hw)).astype(np.float32)

        def forced(gather):
            def run():
                kernels._GATHER_PIXELS = hw * hw if gather else 0
                try:
                    return kernels.pointwise_backward_weight(x, gy)
                finally:
                    kernels._GATHER_PIXELS = limit
            return run
        times, results = _race({"per image": forced(False), "gathered": forced(True)}, rounds)
        _agree(f"{c}->{o} {hw}x{hw}", results["per image"], results["gathered"])
        uses = "gathered" if hw * hw <= limit else "per image"
        print(f"{f'{c}->{o}':>9s} {f'{hw}x{hw}':>5s} | {_summary(times, 'per image', 'gathered')} | {uses}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=11, help="timed rounds (default 11)")
    p.add_argument("--threads", type=int, default=2, help="threads (default 2)")
    p.add_argument("--batch", type=int, default=128)
    args = p.parse_args(argv)
    import minimix.perf

    minimix.perf.configure(threads=args.threads)
    print(f"batch {args.batch}, float32, {args.threads} threads, median of {args.rounds} interleaved rounds")
    rng = np.random.default_rng(0)
    depthwise(args.batch, args.rounds, rng)
    pointwise(args.batch, args.rounds, rng)


if __name__ == "__main__":
    main()
