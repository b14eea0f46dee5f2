"""Depthwise convolution in two layouts: minimix's NCHW kernel against a channels-last (NHWC) candidate.

    python benchmarks/depthwise_layouts.py [--batch 500] [--threads 2]

The inference of ``mixnet_cifar`` spends about half its time in depthwise convolutions, where
PyTorch's channels_last kernel is faster than minimix's NCHW one. The NCHW kernel
(``minimix.kernels.depthwise_numba``) slides whole flattened planes and multiplies each tap by a
*weight map* (the weight where the tap stays inside the plane, 0 where it falls into padding): two
loads per multiply-add. In NHWC the channels of one pixel are contiguous, so one output pixel is

    y[n, oh, ow, :] = sum over taps (i, j) inside the image of x[n, oh*s - p + i, ow*s - p + j, :] * w[i, j, :]

a multiply-add of contiguous channel vectors per tap, with no masks: taps outside the image are
skipped by their row and column, once per output pixel. ``depthwise_nhwc`` below is that loop. Alone,
on one kernel size's channels, it is faster; inside whole channels-last inference blocks (all groups of a
MixConv per pixel, BN + activation per pixel, 1x1s writing and reading NHWC) it did not make minimix's
inference faster (README, "Performance"), so minimix does not use it. This script checks it against
the NCHW kernel and times the three (NCHW kernel, NHWC candidate, PyTorch channels_last), interleaved
round by round, on the depthwise shapes of ``mixnet_cifar``'s inference at batch 500 (layout
conversions are not timed: a channels-last path would keep the layout between layers).
"""
import argparse
import time

import numpy as np
from numba import njit, prange

_FASTMATH = {"contract", "reassoc"}


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def depthwise_nhwc(x, w, stride, padding, y):
    """y (N, OH, OW, C) = depthwise convolution of x (N, H, W, C) with w (KH, KW, C), stride and padding ints."""
    N, H, W, C = x.shape
    KH, KW = w.shape[0], w.shape[1]
    OH, OW = y.shape[1], y.shape[2]
    for job in prange(N * OH):  # one output row of one image per iteration
        n, oh = job // OH, job % OH
        for ow in range(OW):
            out = y[n, oh, ow]
            for c in range(C):
                out[c] = 0
            for i in range(KH):
                ih = oh * stride - padding + i
                if ih < 0 or ih >= H:
                    continue
                for j in range(KW):
                    iw = ow * stride - padding + j
                    if iw < 0 or iw >= W:
                        continue
                    src, wt = x[n, ih, iw], w[i, j]
                    for c in range(C):  # contiguous channels: the vectorised loop
                        out[c] += src[c] * wt[c]


# (channels, map side, kernel, stride): groups of mixnet_cifar's MixConv layers (one kernel size each)
SHAPES = [(48, 32, 3, 1), (32, 32, 7, 2), (72, 16, 3, 1), (72, 16, 5, 1), (48, 16, 7, 2), (120, 8, 5, 1),
          (48, 8, 9, 1), (76, 8, 11, 2), (156, 4, 5, 1), (156, 4, 9, 1)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=500, help="images (default 500, the inference benchmark's)")
    p.add_argument("--threads", type=int, default=2, help="threads (default 2)")
    p.add_argument("--rounds", type=int, default=7, help="timed rounds (default 7)")
    args = p.parse_args(argv)

    import minimix.perf

    minimix.perf.configure(threads=args.threads)
    from minimix.kernels import depthwise_numba

    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    print(f"batch {args.batch}, float32, {args.threads} threads; median of {args.rounds} interleaved rounds (ms)")
    print(f"{'channels@map, k, stride':26s} {'NCHW':>8s} {'NHWC':>8s} {'torch cl':>9s} {'NHWC/NCHW':>10s}")
    for C, side, k, stride in SHAPES:
        x = rng.standard_normal((args.batch, C, side, side)).astype(np.float32)
        w = rng.standard_normal((C, k, k)).astype(np.float32)
        pad = k // 2
        out_side = (side + 2 * pad - k) // stride + 1
        xn, wn = np.ascontiguousarray(x.transpose(0, 2, 3, 1)), np.ascontiguousarray(w.transpose(1, 2, 0))
        yn = np.empty((args.batch, out_side, out_side, C), np.float32)
        depthwise_nhwc(xn, wn, stride, pad, yn)
        expected = depthwise_numba.depthwise_forward(x, w, stride, pad, 1)
        np.testing.assert_allclose(yn.transpose(0, 3, 1, 2), expected, rtol=1e-4, atol=1e-4)
        runs = {"NCHW": lambda: depthwise_numba.depthwise_forward(x, w, stride, pad, 1),
                "NHWC": lambda: depthwise_nhwc(xn, wn, stride, pad, yn)}
        if torch is not None:
            xt = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
            wt = torch.from_numpy(w[:, None])

            def torch_cl():
                with torch.no_grad():
                    torch.nn.functional.conv2d(xt, wt, stride=stride, padding=pad, groups=C)
            runs["torch cl"] = torch_cl
        times = {name: [] for name in runs}
        for _ in range(args.rounds + 1):  # the first round warms up
            for name, fn in runs.items():
                started = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - started)
        med = {name: 1000 * float(np.median(t[1:])) for name, t in times.items()}
        print(f"{f'{C}@{side}x{side}, k{k}, s{stride}':26s} {med['NCHW']:8.2f} {med['NHWC']:8.2f} "
              f"{med.get('torch cl', float('nan')):9.2f} {med['NHWC'] / med['NCHW']:9.2f}x", flush=True)


if __name__ == "__main__":
    main()
