"""BatchNorm + activation in training (``minimix.kernels.norm_act_numba``) against PyTorch, timed per shape.

    python benchmarks/norm_act_planes.py [--batch 128] [--rounds 7] [--threads 2] [--no-torch]

For each shape: the fused forward (training: statistics, then the normalised and activated output)
and backward (the sums, then dL/dx), and the same in PyTorch, ``F.batch_norm`` then the activation,
forward and autograd backward, NCHW and channels_last, interleaved round by round in one process;
in each round every framework first runs once untimed (PyTorch's OpenMP threads spin for a while
after their work and slow whatever runs next on the cores, which the untimed run absorbs). Prints
medians in ms, the ratio minimix / the faster PyTorch layout (below 1: minimix faster), and the
memory traffic minimix's passes imply per second: the forward reads x twice and writes y, the
backward reads x and g, writes gz, then reads gz and x and writes dL/dx. A figure near the machine's
memory speed says the kernel is limited by memory, not by its arithmetic.

It also times the forward with ReLU, SiLU and no activation on one shape: ReLU, a comparison and a
select, should cost no more than SiLU, whose exp is a dozen vector operations. When it costs several
times more, ReLU's loop has stopped vectorizing (``affine_act`` explains what did that once).
"""
import argparse
import time

import numpy as np

# the CIFAR MixNet's BatchNorm shapes, and two of ImageNet MixNet-S's larger planes (56x56, 112x112)
SHAPES = [((144, 16, 16), "silu"), ((48, 32, 32), "relu"), ((96, 32, 32), "silu"), ((240, 8, 8), "silu"),
          ((624, 4, 4), "silu"), ((1024, 4, 4), None), ((32, 56, 56), "relu"), ((16, 112, 112), "silu")]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128, help="images per batch (default 128, the training step's)")
    p.add_argument("--rounds", type=int, default=7, help="timed rounds, each framework once per round (default 7)")
    p.add_argument("--threads", type=int, default=2, help="threads (default 2)")
    p.add_argument("--no-torch", action="store_true", help="minimix only")
    return p.parse_args(argv)


def torch_step(torch, x, g, act, channels_last):
    """PyTorch's BatchNorm (training) + activation on x, forward then backward; returns (forward, backward) s."""
    F = torch.nn.functional
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    xt = torch.from_numpy(x).contiguous(memory_format=fmt).requires_grad_()
    gt = torch.from_numpy(g).contiguous(memory_format=fmt)
    c = x.shape[1]
    weight, bias = torch.ones(c, requires_grad=True), torch.zeros(c, requires_grad=True)
    start = time.perf_counter()
    y = F.batch_norm(xt, None, None, weight, bias, training=True)
    y = {"relu": F.relu, "silu": F.silu}.get(act, lambda z: z)(y)
    middle = time.perf_counter()
    y.backward(gt)
    return middle - start, time.perf_counter() - middle


def main(argv=None):
    args = parse_args(argv)
    import minimix.perf

    minimix.perf.configure(threads=args.threads)
    from minimix.kernels import norm_act_numba as na

    torch = None
    if not args.no_torch:
        import torch

        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)

    def minimix_step(x, g, act):
        gamma, beta = np.ones(x.shape[1], x.dtype), np.zeros(x.shape[1], x.dtype)
        start = time.perf_counter()
        y, mean, var, coef = na.batch_norm_act_forward(x, gamma, beta, 1e-5, act, True)
        middle = time.perf_counter()
        na.batch_norm_act_backward(x, g, coef, mean, 1 / np.sqrt(var + 1e-5), act, True)
        return middle - start, time.perf_counter() - middle

    frameworks = {"minimix": minimix_step}
    if torch is not None:
        frameworks["torch"] = lambda x, g, act: torch_step(torch, x, g, act, False)
        frameworks["torch_cl"] = lambda x, g, act: torch_step(torch, x, g, act, True)
    print(f"BatchNorm + act, training, float32, batch {args.batch}, {args.threads} threads, median of {args.rounds} "
          f"rounds (ms); vs torch: minimix / the faster of PyTorch NCHW and channels_last")
    print(f"{'shape (C, H, W), act':24s} {'fwd':>7s} {'GB/s':>5s} {'bwd':>7s} {'GB/s':>5s}"
          + ("   torch fwd   bwd   vs torch fwd   bwd" if torch is not None else ""))
    for (c, h, w), act in SHAPES:
        x = rng.standard_normal((args.batch, c, h, w), dtype=np.float32)
        g = rng.standard_normal(x.shape, dtype=np.float32)
        times = {name: [] for name in frameworks}
        for round_ in range(args.rounds + 1):  # round 0 compiles and warms up
            for name, step in frameworks.items():
                step(x, g, act)  # untimed: absorbs the switch between libraries (see the module docstring)
                if round_:
                    times[name].append(step(x, g, act))
        med = {name: np.median(np.array(t), axis=0) * 1e3 for name, t in times.items()}
        fwd, bwd = med["minimix"]
        line = f"{str((c, h, w)) + ', ' + str(act):24s} {fwd:7.2f} {3 * x.nbytes / fwd / 1e6:5.0f} {bwd:7.2f} " \
               f"{6 * x.nbytes / bwd / 1e6:5.0f}"
        if torch is not None:
            tf, tb = np.minimum(med["torch"], med["torch_cl"])
            line += f"   {tf:9.2f} {tb:5.2f}   {fwd / tf:11.2f}x {bwd / tb:4.2f}x"
        print(line)

    x = rng.standard_normal((args.batch, 48, 32, 32), dtype=np.float32)
    gamma, beta = np.ones(48, np.float32), np.zeros(48, np.float32)
    acts = [None, "relu", "silu"]
    times = {act: [] for act in acts}
    for round_ in range(args.rounds + 1):
        for act in acts:
            start = time.perf_counter()
            na.batch_norm_act_forward(x, gamma, beta, 1e-5, act, True)
            if round_:
                times[act].append(time.perf_counter() - start)
    print(f"\nforward on {(args.batch, 48, 32, 32)} by activation (ms): "
          + ", ".join(f"{act or 'none'} {np.median(times[act]) * 1e3:.2f}" for act in acts))


if __name__ == "__main__":
    main()
