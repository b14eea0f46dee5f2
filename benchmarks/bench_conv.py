"""Convolution speed: minimix vs PyTorch CPU in one process (float32, batch 128, 2 threads).

    python benchmarks/bench_conv.py [--batch 128] [--repeat 5] [--only conv3x3]

Each line prints the median time of minimix and of torch (NCHW) and their ratio
(> 1: minimix is slower). Both run the same computation on the same numbers;
measurements alternate between the two so that machine noise hits both.

On a machine shared with other busy processes wall times swing several-fold.
A steadier comparison of the work itself is single-threaded CPU time:

    python benchmarks/bench_conv.py --threads 1 --cpu-time

``--threads`` sets both torch's threads and minimix's (``minimix.perf.configure(threads=...)``, which
also runs BLAS single-threaded).
"""
import argparse
import statistics
import time

import numpy as np
import torch

import minimix as mm
import minimix.nn as nn
import minimix.nn.functional as F
import minimix.perf


PAUSE_SECONDS = 0.3
BENCHMARKS = ("conv3x3", "mixconv", "pointwise")
clock = time.perf_counter


def timed(fn):
    # Idle BLAS/OpenMP threads keep spinning for a moment after a call and would steal the CPU
    # from the other library's next call: let them go to sleep first.
    time.sleep(PAUSE_SECONDS)
    start = clock()
    fn()
    return clock() - start


def compare(label, mm_fn, torch_fn, repeat):
    mm_fn(), torch_fn()  # warm-up (Numba compilation, first page faults)
    mm_times, torch_times = [], []
    for _ in range(repeat):  # interleaved, so that machine noise hits both
        mm_times.append(timed(mm_fn))
        torch_times.append(timed(torch_fn))
    ours, theirs = statistics.median(mm_times), statistics.median(torch_times)
    print(f"{label:<52} minimix {ours * 1e3:8.1f} ms   torch {theirs * 1e3:8.1f} ms   ratio {ours / theirs:5.2f}")
    return ours / theirs


def forward_backward(make_output, inputs):
    """A function running forward + backward, with a fixed upstream gradient."""
    grad = None

    def run():
        nonlocal grad
        for t in inputs:
            t.grad = None
        y = make_output()
        if grad is None:
            grad = np.random.default_rng(0).standard_normal(y.shape).astype(np.float32)
        if isinstance(y, torch.Tensor):
            y.backward(torch.from_numpy(grad))
        else:
            y.backward(grad)
    return run


def bench_conv3x3(batch, repeat):
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((batch, 32, 32, 32), dtype=np.float32)
    w_np = rng.standard_normal((32, 32, 3, 3), dtype=np.float32) * 0.1
    x, w = mm.Tensor(x_np, requires_grad=True), mm.Tensor(w_np, requires_grad=True)
    tx, tw = torch.tensor(x_np, requires_grad=True), torch.tensor(w_np, requires_grad=True)
    compare("conv2d im2col 3x3 32->32 @32x32 forward",
            lambda: F.conv2d(x, w, padding=1, backend="im2col"),
            lambda: torch.nn.functional.conv2d(tx, tw, padding=1), repeat)
    compare("conv2d im2col 3x3 32->32 @32x32 forward+backward",
            forward_backward(lambda: F.conv2d(x, w, padding=1, backend="im2col"), [x, w]),
            forward_backward(lambda: torch.nn.functional.conv2d(tx, tw, padding=1), [tx, tw]), repeat)


def bench_mixconv(batch, channels, size, kernel_sizes, repeat):
    rng = np.random.default_rng(0)
    module = nn.MixConv2d(channels, kernel_sizes)
    x_np = rng.standard_normal((batch, channels, size, size), dtype=np.float32)
    x = mm.Tensor(x_np, requires_grad=True)
    weights = [c.weight for c in module.convs]
    tx = torch.tensor(x_np, requires_grad=True)
    tws = [torch.tensor(w.data, requires_grad=True) for w in weights]

    def torch_mixconv():
        parts = torch.split(tx, module.splits, dim=1)
        return torch.cat([torch.nn.functional.conv2d(p, w, padding=w.shape[-1] // 2, groups=w.shape[0])
                          for p, w in zip(parts, tws)], dim=1)

    label = f"MixConv2d {channels}ch @{size}x{size} k={kernel_sizes}"
    with mm.no_grad(), torch.no_grad():
        compare(label + " forward", lambda: module(x), torch_mixconv, repeat)
    compare(label + " fwd+bwd", forward_backward(lambda: module(x), [x] + weights),
            forward_backward(torch_mixconv, [tx] + tws), repeat)


def bench_pointwise(batch, repeat):
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((batch, 96, 16, 16), dtype=np.float32)
    w_np = rng.standard_normal((576, 96, 1, 1), dtype=np.float32) * 0.1
    x, w = mm.Tensor(x_np, requires_grad=True), mm.Tensor(w_np, requires_grad=True)
    tx, tw = torch.tensor(x_np, requires_grad=True), torch.tensor(w_np, requires_grad=True)
    with mm.no_grad(), torch.no_grad():
        compare("conv2d 1x1 96->576 @16x16 forward", lambda: F.conv2d(x, w),
                lambda: torch.nn.functional.conv2d(tx, tw), repeat)
    compare("conv2d 1x1 96->576 @16x16 forward+backward", forward_backward(lambda: F.conv2d(x, w), [x, w]),
            forward_backward(lambda: torch.nn.functional.conv2d(tx, tw), [tx, tw]), repeat)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2,
                        help="threads for torch and for minimix's kernels (BLAS runs single-threaded)")
    parser.add_argument("--cpu-time", action="store_true", help="process CPU time instead of wall time")
    parser.add_argument("--only", choices=BENCHMARKS, help="run one group of benchmarks")
    args = parser.parse_args(argv)
    global clock
    if args.cpu_time:
        clock = time.process_time
    torch.set_num_threads(args.threads)
    minimix.perf.configure(threads=args.threads)
    perf = minimix.perf.settings()
    print(f"batch {args.batch}, float32, torch {torch.__version__} with {torch.get_num_threads()} threads, "
          f"numpy {np.__version__}, minimix: Numba's {perf['numba']['threading_layer']} pool with "
          f"{perf['numba']['threads']} threads, BLAS threads {[b['threads'] for b in perf['blas']]}, "
          f"{'CPU' if args.cpu_time else 'wall'} time")
    if args.only in (None, "conv3x3"):
        bench_conv3x3(args.batch, args.repeat)
    if args.only in (None, "mixconv"):
        bench_mixconv(args.batch, 96, 16, (3, 5, 7, 9), args.repeat)
        bench_mixconv(args.batch, 192, 8, (3, 5, 7, 9), args.repeat)
    if args.only in (None, "pointwise"):
        bench_pointwise(args.batch, args.repeat)


if __name__ == "__main__":
    main()
