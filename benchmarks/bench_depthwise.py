"""Benchmark: minimix's Numba depthwise kernels against PyTorch CPU, in one process.

    python benchmarks/bench_depthwise.py            # full grid
    python benchmarks/bench_depthwise.py --quick    # reduced grid

float32, batch 128, NCHW, stride 1, padding k//2, 2 threads for both libraries.
For every (channels C, size H, kernel k) it times, interleaved round by round:

* forward:          minimix ``depthwise_forward``  vs ``torch.nn.functional.conv2d(groups=C)``
* forward+backward: minimix forward + ``depthwise_backward_input`` + ``depthwise_backward_weight``
                    vs torch forward + ``backward()`` (which computes both gradients)

and reports medians and the ratio minimix/torch (below 1 = minimix faster). torch with
channels_last tensors is timed too, for information only. Targets (forward+backward,
vs torch NCHW): ratio <= 1.0 for k = 3 and <= 0.5 for k >= 5.

On a shared machine other processes disturb both libraries (torch's spinning OpenMP
threads suffer most). The script prints the load average, sweeps the grid ``--passes``
times and keeps the median; ``--threads 1 --cpu-time`` times process CPU time instead of
wall time, which a busy machine barely disturbs.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

FULL_GRID = [(32, 32), (96, 16), (192, 8), (384, 4)]
FULL_KERNELS = [3, 5, 7, 9]
QUICK_GRID = [(32, 32), (192, 8)]
QUICK_KERNELS = [3, 7]


def target_ratio(k):
    return 1.0 if k <= 3 else 0.5


CLOCK = time.perf_counter


def median_times(fns, rounds):
    """Median time (ms) of each function over ``rounds`` interleaved rounds.

    In each round every function runs three times in a row and only the last two runs
    count: the first absorbs the cost of switching libraries (torch's OpenMP threads and
    Numba's spin for a while after a parallel region and steal the cores from each other).
    """
    times = [[] for _ in fns]
    for _ in range(rounds):
        for t, fn in zip(times, fns):
            fn()
            for _ in range(2):
                start = CLOCK()
                fn()
                t.append(CLOCK() - start)
    return [1e3 * float(np.median(t)) for t in times]


def bench_case(torch, dw, batch, C, H, k, rounds):
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, C, H, H), dtype=np.float32)
    w = rng.standard_normal((C, k, k), dtype=np.float32) / k
    pad = k // 2
    geo = dict(stride=(1, 1), padding=(pad, pad), dilation=(1, 1))
    gy = rng.standard_normal(dw.depthwise_forward(x, w, **geo).shape, dtype=np.float32)

    def mm_forward():
        dw.depthwise_forward(x, w, **geo)

    def mm_train():
        dw.depthwise_forward(x, w, **geo)
        dw.depthwise_backward_input(gy, w, (H, H), **geo)
        dw.depthwise_backward_weight(x, gy, (k, k), **geo)

    def torch_fns(channels_last):
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        xt = torch.from_numpy(x).contiguous(memory_format=fmt)
        wt = torch.from_numpy(w[:, None]).contiguous(memory_format=fmt)
        gyt = torch.from_numpy(gy).contiguous(memory_format=fmt)
        xg = xt.clone().requires_grad_(True)
        wg = wt.clone().requires_grad_(True)

        def forward():
            with torch.no_grad():
                F.conv2d(xt, wt, padding=pad, groups=C)

        def train():
            xg.grad = wg.grad = None
            F.conv2d(xg, wg, padding=pad, groups=C).backward(gyt)

        return forward, train

    t_fwd, t_train = torch_fns(False)
    cl_fwd, cl_train = torch_fns(True)
    fwd = median_times([t_fwd, mm_forward, cl_fwd], rounds)
    train = median_times([t_train, mm_train, cl_train], rounds)
    return fwd, train


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="reduced grid")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per case and pass")
    parser.add_argument("--passes", type=int, default=2,
                        help="sweeps over the whole grid; the table shows the median over passes "
                             "(a busy machine disturbs one pass, not all)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time process CPU time (needs --threads 1): robust on a busy machine")
    args = parser.parse_args(argv)
    if args.cpu_time:
        if args.threads != 1:
            parser.error("--cpu-time needs --threads 1 (CPU time of several threads adds up)")
        global CLOCK
        CLOCK = time.process_time

    import numba
    import torch

    import minimix.perf
    from minimix.kernels import depthwise_numba as dw

    torch.set_num_threads(args.threads)
    minimix.perf.configure(threads=args.threads)
    grid = QUICK_GRID if args.quick else FULL_GRID
    kernels = QUICK_KERNELS if args.quick else FULL_KERNELS
    cases = [(C, H, k) for C, H in grid for k in kernels]

    start = time.perf_counter()
    bench_case(torch, dw, 2, 4, 8, 3, 1)  # compile (or load from the cache) before timing
    print(f"compile/load: {time.perf_counter() - start:.1f} s; torch {torch.__version__}, numba "
          f"{numba.__version__} ({numba.threading_layer()} pool), threads {args.threads}, batch "
          f"{args.batch}, float32, NCHW, stride 1, padding k//2, {'CPU' if args.cpu_time else 'wall'} time")
    print(f"load average before: {os.getloadavg()[0]:.2f} (the machine has {os.cpu_count()} cores)")
    results = {case: [] for case in cases}
    for p in range(args.passes):
        for case in cases:
            results[case].append(bench_case(torch, dw, args.batch, *case, args.rounds))
        print(f"pass {p + 1}/{args.passes} done, load average {os.getloadavg()[0]:.2f}", flush=True)

    print("times in ms (median over passes of the per-pass medians); ratio = minimix / torch NCHW")
    header = (f"{'C':>4} {'H':>3} {'k':>2} | {'torch fwd':>9} {'mm fwd':>8} {'ratio':>6} | "
              f"{'torch f+b':>9} {'mm f+b':>8} {'ratio':>6} {'target':>6} | {'cl fwd':>8} {'cl f+b':>8}")
    print(header)
    print("-" * len(header))
    met = 0
    for (C, H, k), runs in results.items():
        (tf, mf, cf), (tt, mt, ct) = np.median(np.array(runs), axis=0)
        ok = mt / tt <= target_ratio(k)
        met += ok
        print(f"{C:>4} {H:>3} {k:>2} | {tf:9.2f} {mf:8.2f} {mf / tf:6.2f} | {tt:9.2f} {mt:8.2f} "
              f"{mt / tt:6.2f} {'<=' + str(target_ratio(k)):>6}{' ' if ok else '!'}| {cf:8.2f} {ct:8.2f}")
    print(f"targets met (forward+backward vs torch NCHW): {met}/{len(cases)}; "
          f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
