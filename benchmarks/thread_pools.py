"""Numba's thread pools ("threading layers") compared: the cost of starting a kernel, and 2-thread speedup.

A mixnet_cifar training step runs several hundred parallel Numba kernels, many of them
short, so what a pool costs per kernel matters as much as how well it shares the work.
For each layer (tbb, workqueue, omp), in a fresh process (a process picks its layer once):

* launch: microseconds per call of a parallel kernel with nothing to do (2 threads);
* depthwise: a MixConv layer's depthwise forward (float32, batch 128, 144 channels,
  16x16, kernels 3 and 5), milliseconds with 2 threads and the speedup over 1 thread.

    python benchmarks/thread_pools.py [--layers tbb workqueue omp] [--rounds 3]

``minimix.perf.configure()`` chooses TBB's pool when it loads (its docstring explains the choice).
"""
import argparse
import json
import os
import subprocess
import sys
import time


def child(layer):
    """Measure in this process with Numba's ``layer`` pool; print the figures as JSON."""
    os.environ["NUMBA_THREADING_LAYER"] = layer  # exactly this pool (an error if it cannot load)
    import numba
    import numpy as np
    from numba import njit, prange

    import minimix.perf
    from minimix.kernels import depthwise_numba

    minimix.perf.configure(threads=2)  # the environment variable decides the pool

    @njit(parallel=True)
    def empty_kernel(a):
        for i in prange(a.size):
            a[i] += 1.0

    a = np.zeros(2)
    empty_kernel(a)
    calls = 2000
    start = time.perf_counter()
    for _ in range(calls):
        empty_kernel(a)
    launch_us = (time.perf_counter() - start) / calls * 1e6

    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 144, 16, 16)).astype(np.float32)
    weights = [rng.standard_normal((72, k, k)).astype(np.float32) for k in (3, 5)]
    y = np.empty_like(x)

    def mixconv():
        for i, w in enumerate(weights):
            depthwise_numba.depthwise_forward(x, w, 1, w.shape[1] // 2, channels=slice(72 * i, 72 * (i + 1)), out=y)

    def median_ms(threads_count):
        minimix.perf.configure(threads=threads_count)
        mixconv()
        times = []
        for _ in range(15):
            start = time.perf_counter()
            mixconv()
            times.append(time.perf_counter() - start)
        return float(np.median(times)) * 1e3

    one, two = median_ms(1), median_ms(2)
    print(json.dumps({"layer": numba.threading_layer(), "launch_us": launch_us, "ms_2": two, "speedup": one / two}))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", nargs="+", default=["tbb", "workqueue", "omp"])
    p.add_argument("--rounds", type=int, default=3, help="rounds; each runs every layer once, in turn")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child)
    print(f"{'layer':10s} {'launch us':>10s} {'depthwise ms':>13s} {'2 vs 1 thread':>14s}")
    for _ in range(args.rounds):
        for layer in args.layers:
            run = subprocess.run([sys.executable, __file__, "--child", layer], capture_output=True, text=True)
            if run.returncode != 0:
                print(f"{layer:10s} not available: {run.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(run.stdout.strip().splitlines()[-1])
            print(f"{r['layer']:10s} {r['launch_us']:10.1f} {r['ms_2']:13.2f} {r['speedup']:13.2f}x")


if __name__ == "__main__":
    main()
