"""Per-op Python overhead of minimix's autograd engine, next to PyTorch's.

On tiny tensors the arithmetic is free, so the time per op is pure bookkeeping:
wrapping inputs, recording the graph node, and in backward the topological
sort, gradient routing and accumulation. The benchmark builds a chain of
1,000 alternating ``y = y * c`` / ``y = y + c`` ops on (4,) tensors, then calls
``backward``, and reports microseconds per op for each framework (best of
several repeats) and the ratio minimix / torch.

    python benchmarks/engine_overhead.py [--ops 1000] [--repeats 7]
"""
import argparse
import time

import numpy as np

import minimix as mm


def chain(x, c, n_ops):
    """n_ops alternating multiplies and adds; returns a scalar to backward from."""
    y = x
    for i in range(n_ops // 2):
        y = y * c
        y = y + c
    return y.sum()


def best_time(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure(make_inputs, n_ops, repeats):
    """Best forward time and best forward+backward time, in seconds."""

    def forward():
        x, c = make_inputs()
        chain(x, c, n_ops)

    def forward_backward():
        x, c = make_inputs()
        chain(x, c, n_ops).backward()

    forward_backward()  # warm up caches and lazy imports
    return best_time(forward, repeats), best_time(forward_backward, repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=1000, help="ops in the chain (default 1000)")
    parser.add_argument("--repeats", type=int, default=7, help="repeats; the best is kept (default 7)")
    args = parser.parse_args()
    import minimix.perf

    minimix.perf.configure(threads=1)  # one thread, as torch below (the tiny ops run no kernels anyway)

    rng = np.random.default_rng(0)
    x0 = rng.standard_normal(4).astype(np.float32)
    c0 = rng.uniform(0.5, 0.9, 4).astype(np.float32)  # |c| < 1 keeps the long chain finite

    def minimix_inputs():
        return mm.Tensor(x0.copy(), requires_grad=True), mm.Tensor(c0.copy(), requires_grad=True)

    results = {"minimix": measure(minimix_inputs, args.ops, args.repeats)}
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(1)

        def torch_inputs():
            return (torch.tensor(x0, requires_grad=True), torch.tensor(c0, requires_grad=True))

        results["torch"] = measure(torch_inputs, args.ops, args.repeats)

    print(f"chain of {args.ops} ops (mul/add) on (4,) float32 tensors, best of {args.repeats}")
    print(f"{'':10s}{'forward us/op':>16s}{'backward us/op':>17s}{'total us/op':>14s}")
    per_op = {}
    for name, (fwd, both) in results.items():
        per_op[name] = (fwd, both - fwd, both)
        f, b, t = (1e6 * v / args.ops for v in per_op[name])
        print(f"{name:10s}{f:16.2f}{b:17.2f}{t:14.2f}")
    if "torch" in per_op:
        ratios = [m / t for m, t in zip(per_op["minimix"], per_op["torch"])]
        print(f"{'ratio':10s}{ratios[0]:15.2f}x{ratios[1]:16.2f}x{ratios[2]:13.2f}x  (minimix / torch)")
    else:
        print("torch is not installed: no ratio")


if __name__ == "__main__":
    main()
