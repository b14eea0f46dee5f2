"""The depthwise kernels two ways, per plane size and kernel size: flat sweeps with weight maps
(``minimix.kernels.depthwise_numba``) against rows with the taps written out (``depthwise_rows``): forward,
input gradient and weight gradient.

"Same" padding, float32, batch 128, one MixConv group's channels of a whole layer (as in ``mixnet_cifar``:
its stride-1 layers with kernels 3 to 9, then its three stride-2 layers with their own kernels),
interleaved round by round; prints each path's median time for each kernel and the median of the per-round
ratios rows / flat. ``depthwise_rows.applies`` (forward, input gradient) and
``depthwise_rows.applies_to_weight_gradient`` decide which path a layer takes in minimix; here both paths are
forced in turn (this script replaces those two functions while it times, and turns ``depthwise_dense`` off), and
checks that they agree. The last column says which path minimix takes: "dense" on the small planes that
``depthwise_dense`` takes over (``benchmarks/small_planes.py`` compares it with these two).

    python benchmarks/depthwise_rows.py [--rounds 11] [--threads 2]
"""
import argparse
import time

import numpy as np

# (stride, input plane size, channels of the layer, channels of one group, kernel sizes): the CIFAR MixNet's
# MixConv layers, stride 1 (with every kernel size up to 9) and stride 2 (with the layer's kernel sizes)
LAYERS = [(1, 4, 624, 156, (3, 5, 7, 9)), (1, 8, 240, 60, (3, 5, 7, 9)), (1, 16, 144, 36, (3, 5, 7, 9)),
          (1, 32, 48, 48, (3, 5, 7, 9)),
          (2, 8, 384, 76, (3, 5, 7, 9, 11)), (2, 16, 144, 48, (3, 5, 7)), (2, 32, 96, 32, (3, 5, 7))]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=11, help="timed rounds (default 11)")
    p.add_argument("--threads", type=int, default=2, help="threads (default 2)")
    p.add_argument("--batch", type=int, default=128)
    args = p.parse_args(argv)
    import minimix.perf

    minimix.perf.configure(threads=args.threads)
    from minimix.kernels import depthwise_dense, depthwise_numba, depthwise_rows

    dense_applies = depthwise_dense.applies
    depthwise_dense.applies = lambda *geometry: False  # time the two paths it replaces

    rows_applies, rows_applies_to_weight = depthwise_rows.applies, depthwise_rows.applies_to_weight_gradient
    paths = {"flat": lambda *a: False, "rows": lambda *a: True}  # what applies() answers for each path
    rng = np.random.default_rng(0)
    print(f"batch {args.batch}, float32, {args.threads} threads, median of {args.rounds} interleaved rounds")
    print(f"{'stride':>6s} {'plane':>6s} {'k':>3s} {'group':>12s} | {'forward flat':>12s} {'rows':>8s} {'ratio':>6s} | "
          f"{'input grad flat':>15s} {'rows':>8s} {'ratio':>6s} | {'weight grad flat':>16s} {'rows':>8s} {'ratio':>6s}"
          f" | minimix uses")
    for stride, hw, channels, group, kernels in LAYERS:
        for k in kernels:
            x = rng.standard_normal((args.batch, channels, hw, hw)).astype(np.float32)
            w = rng.standard_normal((group, k, k)).astype(np.float32)
            y = np.empty((args.batch, channels, hw // stride, hw // stride), dtype=np.float32)  # and dL/dy
            gy = rng.standard_normal(y.shape).astype(np.float32)
            gx = np.empty_like(x)
            geometry = dict(stride=(stride, stride), padding=(k // 2, k // 2), dilation=(1, 1),
                            channels=slice(0, group))

            def forward():
                depthwise_numba.depthwise_forward(x, w, **geometry, out=y)
                return y

            def input_grad():
                depthwise_numba.depthwise_backward_input(gy, w, (hw, hw), **geometry, out=gx)
                return gx

            def weight_grad():
                return depthwise_numba.depthwise_backward_weight(x, gy, (k, k), **geometry)[None]

            cells = []
            for fn in (forward, input_grad, weight_grad):
                times, results = {name: [] for name in paths}, {}
                for _ in range(args.rounds + 1):  # the first round compiles and warms up
                    for name, applies in paths.items():
                        depthwise_rows.applies = depthwise_rows.applies_to_weight_gradient = applies
                        start = time.perf_counter()
                        out = fn()
                        times[name].append(time.perf_counter() - start)
                        results[name] = out[:, :group].copy()
                depthwise_rows.applies, depthwise_rows.applies_to_weight_gradient = rows_applies, rows_applies_to_weight
                scale = float(np.abs(results["flat"]).max())
                assert np.allclose(results["rows"], results["flat"], rtol=1e-5, atol=1e-5 * scale), \
                    (stride, hw, k, fn.__name__)
                t = {name: np.array(v[1:]) for name, v in times.items()}
                cells.append((np.median(t["flat"]) * 1e3, np.median(t["rows"]) * 1e3,
                              np.median(t["rows"] / t["flat"])))
            layer = (hw, hw, k, k, (stride, stride), (k // 2, k // 2), (1, 1))
            uses = "/".join("rows" if applies(*layer) else "flat" for applies in (rows_applies, rows_applies_to_weight))
            if dense_applies(hw, hw, hw // stride, hw // stride, k, k):
                uses = "dense/dense"
            (ff, fr, fq), (bf, br, bq), (wf, wr, wq) = cells
            print(f"{stride:>6d} {hw:>4d}^2 {k:>3d} {f'{group} of {channels}':>12s} | {ff:10.2f}ms {fr:6.2f}ms "
                  f"{fq:6.2f} | {bf:13.2f}ms {br:6.2f}ms {bq:6.2f} | {wf:14.2f}ms {wr:6.2f}ms {wq:6.2f} | {uses}",
                  flush=True)


if __name__ == "__main__":
    main()
