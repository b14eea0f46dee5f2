"""The depthwise kernels two ways, per plane size and kernel size: flat sweeps with weight maps
(``minimix.kernels.depthwise_numba``) against rows with the taps written out (``depthwise_rows``).

Stride 1, "same" padding, float32, batch 128, one MixConv group's channels of a whole layer (as in
``mixnet_cifar``), interleaved round by round; prints each path's median time for the forward and
the input gradient, and the median of the per-round ratios rows / flat. ``depthwise_rows.applies``
decides which path a layer takes in minimix; here both are forced in turn (this script replaces
``applies`` while it times the flat sweeps), and checks that they agree.

    python benchmarks/depthwise_rows.py [--rounds 11] [--threads 2]
"""
import argparse
import time

import numpy as np

# (plane size, channels of the layer, channels of one group): the CIFAR MixNet's stride-1 MixConv layers
LAYERS = [(4, 624, 156), (8, 240, 60), (16, 144, 36), (32, 48, 48)]
KERNELS = (3, 5, 7, 9)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=11, help="timed rounds (default 11)")
    p.add_argument("--threads", type=int, default=2, help="threads (default 2)")
    p.add_argument("--batch", type=int, default=128)
    args = p.parse_args(argv)
    import minimix.perf

    minimix.perf.configure(threads=args.threads)
    from minimix.kernels import depthwise_numba, depthwise_rows

    rows_applies = depthwise_rows.applies
    paths = {"flat": lambda *a: False, "rows": lambda *a: True}  # what applies() answers for each path
    rng = np.random.default_rng(0)
    print(f"batch {args.batch}, float32, {args.threads} threads, median of {args.rounds} interleaved rounds")
    print(f"{'plane':>6s} {'k':>3s} {'group':>12s} | {'forward flat':>12s} {'rows':>8s} {'ratio':>6s} | "
          f"{'input grad flat':>15s} {'rows':>8s} {'ratio':>6s} | minimix uses")
    for hw, channels, group in LAYERS:
        for k in KERNELS:
            x = rng.standard_normal((args.batch, channels, hw, hw)).astype(np.float32)
            w = rng.standard_normal((group, k, k)).astype(np.float32)
            out = np.empty_like(x)
            geometry = dict(stride=(1, 1), padding=(k // 2, k // 2), dilation=(1, 1), channels=slice(0, group),
                            out=out)

            def forward():
                depthwise_numba.depthwise_forward(x, w, **geometry)

            def input_grad():
                depthwise_numba.depthwise_backward_input(x, w, (hw, hw), **geometry)

            cells = []
            for fn in (forward, input_grad):
                times, results = {name: [] for name in paths}, {}
                for _ in range(args.rounds + 1):  # the first round compiles and warms up
                    for name, applies in paths.items():
                        depthwise_rows.applies = applies
                        start = time.perf_counter()
                        fn()
                        times[name].append(time.perf_counter() - start)
                        results[name] = out[:, :group].copy()
                depthwise_rows.applies = rows_applies
                scale = float(np.abs(results["flat"]).max())
                assert np.allclose(results["rows"], results["flat"], rtol=1e-5, atol=1e-5 * scale), (hw, k, fn.__name__)
                t = {name: np.array(v[1:]) for name, v in times.items()}
                cells.append((np.median(t["flat"]) * 1e3, np.median(t["rows"]) * 1e3,
                              np.median(t["rows"] / t["flat"])))
            uses = "rows" if rows_applies(hw, hw, k, k, (1, 1), (k // 2, k // 2), (1, 1)) else "flat"
            (ff, fr, fq), (bf, br, bq) = cells
            print(f"{hw:>4d}^2 {k:>3d} {f'{group} of {channels}':>12s} | {ff:10.2f}ms {fr:6.2f}ms {fq:6.2f} | "
                  f"{bf:13.2f}ms {br:6.2f}ms {bq:6.2f} | {uses}", flush=True)


if __name__ == "__main__":
    main()
