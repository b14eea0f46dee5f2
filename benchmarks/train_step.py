"""mixnet_cifar training step and inference: minimix against the same network in PyTorch.

One process runs, interleaved round by round (so a busy machine slows all alike):

* training step, float32, batch 128: forward, cross-entropy, backward, SGD (nesterov
  momentum, weight decay) - minimix, PyTorch NCHW, PyTorch channels_last, and ``torch.compile``
  (inductor) of the channels_last network;
* inference, eval mode, no gradients, batch 500 (minimix: the ``nn.fuse`` copy of the model),
  the same PyTorch variants, and ONNX Runtime (the PyTorch network exported to ONNX, CPU
  execution provider, the same number of threads).

``torch.compile`` and ONNX Runtime are the anchors a user would deploy with; they are optional
(``pip install -e ".[bench]"``: onnx, onnxscript, onnxruntime; ``torch.compile`` needs a C++
compiler) and skipped with a message when missing, or with ``--no-compile`` / ``--no-onnx``.

Then the same minimix step and inference on the reference path (``use_backend("reference")``:
the NumPy code a student reads, no Numba), so the output shows what the fast path buys.
Reported: median wall and CPU time (``time.process_time``, steadier on a shared machine)
per step, images/s, ratios minimix / best PyTorch. Then the peak memory (RSS) of each
framework, each measured in a fresh subprocess (``--memory-child``) running a few steps.
The PyTorch network is ``minimix.models.torch_mirror`` (same table, same weights).

    python benchmarks/train_step.py [--quick] [--profile] [--batch 128] [--threads 2] [--no-compile] [--no-onnx]

``--profile`` prints where a minimix step spends its time, per layer type, from the
engine's op timer (``minimix.tensor.profile_ops``); with ``--by-shape`` the op table has one
row per op and input shape (which layers cost most).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128, help="training batch size (default 128)")
    p.add_argument("--eval-batch", type=int, default=500, help="inference batch size (default 500)")
    p.add_argument("--steps", type=int, default=7, help="timed rounds (each framework once per round)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds first (compilation, caches)")
    p.add_argument("--threads", type=int, default=2, help="threads for Numba and PyTorch (default 2)")
    p.add_argument("--quick", action="store_true", help="3 timed rounds, 1 warm-up")
    p.add_argument("--profile", action="store_true", help="per-layer-type breakdown of the minimix step (mean of --steps steps)")
    p.add_argument("--by-shape", action="store_true", help="with --profile: one row per op and input shape")
    p.add_argument("--no-torch", action="store_true", help="minimix only")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile anchor")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime anchor (inference)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--only", choices=["train", "infer"], help="time only the training step or only inference")
    p.add_argument("--no-reference", action="store_true", help="skip timing minimix's reference (NumPy) path")
    p.add_argument("--reference-steps", type=int, default=3, help="timed reference-path steps (default 3)")
    p.add_argument("--memory-child", choices=["minimix", "torch", "torch_cl"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.warmup = 3, 1
    return args


# -- the two frameworks ------------------------------------------------------------------------
class MinimixRunner:
    name = "minimix"
    trains = True

    def __init__(self, args):
        import minimix as mm
        import minimix.perf
        from minimix.models import mixnet_cifar
        from minimix.optim import SGD, weight_decay_groups

        minimix.perf.configure(threads=args.threads)  # before any kernel: BLAS 1 thread, TBB pool, allocator
        self.mm = mm
        mm.manual_seed(0)
        self.model = mixnet_cifar()
        self.fused = None
        self.opt = SGD(weight_decay_groups(self.model, 5e-5), lr=0.05, momentum=0.9, nesterov=True)

    def train_step(self, x, y):
        import minimix.nn.functional as F

        self.model.train()
        self.opt.zero_grad()
        loss = F.cross_entropy(self.model(self.mm.Tensor(x)), y)
        loss.backward()
        self.opt.step()
        return float(loss.item())

    def infer(self, x):
        if self.fused is None:  # the inference copy (nn.fuse: eval mode, BN folded into the MixConv before it)
            self.fused = self.mm.nn.fuse(self.model)
        with self.mm.no_grad():
            return self.fused(self.mm.Tensor(x)).data


class TorchRunner:
    trains = True

    def __init__(self, args, channels_last, state=None):
        import torch

        from minimix.models.torch_mirror import MIXNET_CIFAR_KWARGS, torch_mixnet
        from minimix.models import MIXNET_S

        torch.set_num_threads(args.threads)
        self.torch, self.channels_last = torch, channels_last
        self.name = "torch channels_last" if channels_last else "torch NCHW"
        torch.manual_seed(0)
        self.model = torch_mixnet(MIXNET_S, dropout=0.2, **MIXNET_CIFAR_KWARGS)
        if state is not None:  # the minimix model's weights, so both train the same network
            self.model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
        self.format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=self.format)
        decay = [p for p in self.model.parameters() if p.ndim > 1]
        rest = [p for p in self.model.parameters() if p.ndim <= 1]
        self.opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-5}, {"params": rest, "weight_decay": 0}],
                                   lr=0.05, momentum=0.9, nesterov=True)

    def _input(self, x):
        return self.torch.from_numpy(x).contiguous(memory_format=self.format)

    def train_step(self, x, y):
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        loss = self.torch.nn.functional.cross_entropy(self.model(self._input(x)), self.torch.from_numpy(y))
        loss.backward()
        self.opt.step()
        return float(loss.item())

    def infer(self, x):
        self.model.eval()
        with self.torch.no_grad():
            return self.model(self._input(x)).numpy()


class CompiledTorchRunner(TorchRunner):
    """``torch.compile`` (inductor, default mode) of the channels_last network. Training and
    inference each compile on their first (warm-up) call; the optimizer step stays eager."""

    def __init__(self, args, state=None):
        super().__init__(args, channels_last=True, state=state)
        self.name = "torch.compile cl"
        self.model = self.torch.compile(self.model)


class OnnxRunner:
    """ONNX Runtime inference of the PyTorch network (eval mode) exported to ONNX for batch
    ``args.eval_batch``; CPU execution provider, ``args.threads`` intra-op threads."""

    name = "ONNX Runtime"
    trains = False

    def __init__(self, args, state=None):
        import tempfile

        import onnxruntime
        import torch

        eager = TorchRunner(args, channels_last=False, state=state).model.eval()
        path = os.path.join(tempfile.mkdtemp(prefix="minimix-bench-"), "mixnet_cifar.onnx")
        example = torch.from_numpy(data(args.eval_batch, seed=1)[0])
        with torch.no_grad():
            torch.onnx.export(eager, (example,), path, input_names=["x"], output_names=["logits"])
            self.expected = eager(example).numpy()  # to check the export below
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.version = onnxruntime.__version__

    def infer(self, x):
        return self.session.run(None, {"x": x})[0]


ANCHORS = {"torch": "PyTorch eager NCHW", "torch_cl": "PyTorch eager channels_last",
           "compile": "torch.compile (inductor) channels_last", "onnx": "ONNX Runtime (inference)"}


def anchors_available(args) -> list:
    """The anchor runners this machine can run, saying why any is skipped."""
    import importlib.util
    import shutil

    if args.no_torch:
        return []
    names = ["torch", "torch_cl"]
    if args.no_compile:
        print("torch.compile: skipped (--no-compile)")
    elif shutil.which(os.environ.get("CXX", "g++")) is None and shutil.which("c++") is None:
        print("torch.compile: skipped (inductor needs a C++ compiler; none on PATH)")
    else:
        names.append("compile")
    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
    if args.no_onnx:
        print("ONNX Runtime: skipped (--no-onnx)")
    elif missing:
        print(f"ONNX Runtime: skipped ({', '.join(missing)} not installed: pip install -e \".[bench]\")")
    else:
        names.append("onnx")
    return names


def make_runners(args, names):
    runners = []
    state = None
    for name in names:
        if name == "minimix":
            runners.append(MinimixRunner(args))
            from minimix.models import to_timm_state_dict
            state = to_timm_state_dict(runners[-1].model)
        elif name == "compile":
            runners.append(CompiledTorchRunner(args, state=state))
        elif name == "onnx":
            runners.append(OnnxRunner(args, state=state))
        else:
            runners.append(TorchRunner(args, channels_last=name == "torch_cl", state=state))
    return runners


def data(batch, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, 3, 32, 32)).astype(np.float32), rng.integers(0, 10, batch)


# -- timing ------------------------------------------------------------------------------------
def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def interleaved(runners, task, rounds, warmup):
    """{runner name: (walls, cpus)}: each round runs every runner once, in rotating order."""
    times = {r.name: ([], []) for r in runners}
    for i in range(warmup + rounds):
        order = runners[i % len(runners):] + runners[:i % len(runners)]
        for r in order:
            wall, cpu = timed(lambda: task(r))
            if i >= warmup:
                times[r.name][0].append(wall)
                times[r.name][1].append(cpu)
    return times


def report(title, times, images):
    print(f"\n{title}  (load average before/after: {LOAD[0]} / {fmt_load()})")
    print(f"{'':22s} {'wall s':>8s} {'cpu s':>8s} {'img/s':>8s} {'ratio wall':>11s} {'ratio cpu':>10s}")
    medians = {name: (float(np.median(w)), float(np.median(c))) for name, (w, c) in times.items()}
    anchors = [n for n in medians if n != "minimix"]
    best = min(anchors, key=lambda n: medians[n][0]) if anchors else None
    for name, (wall, cpu) in medians.items():
        ratio = ""
        if best is not None:
            ratio = f"{wall / medians[best][0]:10.2f}x {cpu / medians[best][1]:9.2f}x"
        spread = f"{min(times[name][0]):.3f}-{max(times[name][0]):.3f}"
        print(f"{name:22s} {wall:8.3f} {cpu:8.3f} {images / wall:8.1f} {ratio}   wall range {spread}")
    if best is not None and "minimix" in medians:
        print(f"(ratios: each / the fastest anchor = {best}; below 1 means minimix is faster; "
              f"minimix / {best}: {medians['minimix'][0] / medians[best][0]:.2f}x)")
    return medians


def fmt_load():
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


LOAD = [fmt_load()]


# -- per-layer-type profile ----------------------------------------------------------------------
CATEGORIES = [  # (category, test on the op label), first match wins
    ("conv 1x1", lambda k: k.endswith(" 1x1")),
    ("depthwise / MixConv", lambda k: "depthwise" in k),
    ("squeeze-excite", lambda k: k in ("GlobalAvgPool", "Excite", "Sigmoid") or "on 1x1 maps" in k),
    ("BN (+act, fused)", lambda k: k.startswith("BatchNorm")),
    ("activations", lambda k: k in ("ReLU", "SiLU", "Tanh")),
    ("stem 3x3 conv", lambda k: k.startswith("Conv2d")),
    ("loss", lambda k: k in ("CrossEntropy", "LogSoftmax")),
]


def profile(args):
    from minimix.tensor import profile_ops

    runner = MinimixRunner(args)
    x, y = data(args.batch)
    for _ in range(max(args.warmup, 2)):  # compile, and let the allocator reach its steady state
        runner.train_step(x, y)
    rows = {}
    parts = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    rounds = args.steps
    for _ in range(rounds):
        import minimix.nn.functional as F
        with profile_ops(by_shape=args.by_shape) as ops:
            runner.model.train()
            runner.opt.zero_grad()
            start = time.perf_counter()
            loss = F.cross_entropy(runner.model(runner.mm.Tensor(x)), y)
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            runner.opt.step()
            t3 = time.perf_counter()
        parts["forward"] += (t1 - start) / rounds
        parts["backward"] += (t2 - t1) / rounds
        parts["optimizer"] += (t3 - t2) / rounds
        for label, (calls, fwd, bwd) in ops.items():
            row = rows.setdefault(label, [0, 0.0, 0.0])
            row[0] = calls
            row[1] += fwd / rounds
            row[2] += bwd / rounds
    step = sum(parts.values())
    print(f"\nminimix step profile, batch {args.batch} (mean of {rounds} steps, {step:.3f} s; load {fmt_load()})")
    width = max([30] + [len(label) for label in rows])
    print(f"{'op':{width}s} {'calls':>6s} {'fwd ms':>8s} {'bwd ms':>8s} {'% step':>7s}")
    for label, (calls, fwd, bwd) in sorted(rows.items(), key=lambda kv: -(kv[1][1] + kv[1][2])):
        print(f"{label:{width}s} {calls:6d} {fwd * 1e3:8.1f} {bwd * 1e3:8.1f} {100 * (fwd + bwd) / step:6.1f}%")
    groups = {}
    for label, (calls, fwd, bwd) in rows.items():
        kind = label.rsplit(" (", 1)[0] if args.by_shape else label  # the op's label without its input shape
        category = next((c for c, test in CATEGORIES if test(kind)), "other ops")
        g = groups.setdefault(category, [0.0, 0.0])
        g[0] += fwd
        g[1] += bwd
    fwd_ops = sum(g[0] for g in groups.values())
    bwd_ops = sum(g[1] for g in groups.values())
    groups["optimizer (SGD step)"] = [0.0, parts["optimizer"]]
    groups["autograd + Python overhead"] = [parts["forward"] - fwd_ops, parts["backward"] - bwd_ops]
    print(f"\n{'layer type':30s} {'fwd ms':>8s} {'bwd ms':>8s} {'% step':>7s}")
    for category, (fwd, bwd) in sorted(groups.items(), key=lambda kv: -sum(kv[1])):
        print(f"{category:30s} {fwd * 1e3:8.1f} {bwd * 1e3:8.1f} {100 * (fwd + bwd) / step:6.1f}%")


def reference_path(runner, x, y, xe, fast_train, fast_infer, steps):
    """What the fast path buys: the same minimix step and inference on the reference (NumPy) path."""
    import minimix

    with minimix.use_backend("reference"):
        runner.train_step(x, y)  # warm-up
        train = [timed(lambda: runner.train_step(x, y))[0] for _ in range(steps)]
        runner.fused = None
        infer = [timed(lambda: runner.infer(xe))[0] for _ in range(steps)]
    runner.fused = None
    print(f"\nminimix reference path (MINIMIX_BACKEND=reference: plain NumPy ops, no Numba kernels), "
          f"median of {steps}, after the runs above:")
    for what, times, fast in (("training step", train, fast_train), ("inference", infer, fast_infer)):
        print(f"  {what:14s} {np.median(times):8.3f} s  = {np.median(times) / np.median(fast):5.1f}x the fast path's "
              f"{np.median(fast):.3f} s")


# -- peak memory -----------------------------------------------------------------------------------
def rss_mb(field="VmRSS"):
    """This process's resident memory (VmRSS) or its peak so far (VmHWM), in MB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory_child(args):
    """Build one framework's model, run a few training steps and inferences; print RSS figures as JSON."""
    runner = make_runners(args, [args.memory_child])[0]
    x, y = data(args.batch)
    before = rss_mb()
    for _ in range(3):
        runner.train_step(x, y)
    # VmHWM, not getrusage's ru_maxrss: the latter survives exec, so a child reports its parent's peak
    train_peak = rss_mb("VmHWM")
    xe, _ = data(args.eval_batch, seed=1)
    runner.infer(xe)
    print(json.dumps({"peak_mb": rss_mb("VmHWM"), "train_peak_mb": train_peak, "before_steps_mb": before}))


def memory(args, names):
    print(f"\npeak memory (RSS), each in a fresh process: model built, 3 training steps (batch {args.batch}), "
          f"one inference (batch {args.eval_batch})")
    print(f"{'':22s} {'after build':>12s} {'train peak':>11s} {'overall peak':>13s}   (MB)")
    results = {}
    for name in names:
        cmd = [sys.executable, __file__, "--memory-child", name, "--batch", str(args.batch),
               "--eval-batch", str(args.eval_batch), "--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        results[name] = r
        print(f"{name:22s} {r['before_steps_mb']:12.0f} {r['train_peak_mb']:11.0f} {r['peak_mb']:13.0f}")
    for key, what in (("train_peak_mb", "training"), ("peak_mb", "overall")):
        torch_peaks = [r[key] for n, r in results.items() if n != "minimix"]
        if "minimix" in results and torch_peaks:
            ratio = results["minimix"][key] / min(torch_peaks)
            print(f"minimix {what} peak / smallest PyTorch {what} peak: {ratio:.2f}x")


def main(argv=None):
    args = parse_args(argv)
    if args.memory_child:
        return memory_child(args)
    if args.profile:
        return profile(args)
    names = ["minimix"] + anchors_available(args)
    runners = make_runners(args, names)
    x, y = data(args.batch)
    import platform

    import minimix.perf

    perf = minimix.perf.settings()
    cpu_name = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                    platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    print(f"host: {cpu_name}, {os.cpu_count()} logical CPUs; anchors: "
          + (", ".join(ANCHORS[n] for n in names[1:]) or "none"))
    print(f"mixnet_cifar, float32, {args.threads} threads (Numba's {perf['numba']['threading_layer']} pool, BLAS "
          f"threads {[b['threads'] for b in perf['blas']]}); {args.steps} timed rounds after {args.warmup} warm-up")
    onnx = next((r for r in runners if isinstance(r, OnnxRunner)), None)
    if onnx is not None:
        ours = runners[0].infer(data(args.eval_batch, seed=1)[0])
        print(f"ONNX Runtime {onnx.version}: export checked, largest |logit difference| vs PyTorch eager "
              f"{np.abs(onnx.infer(data(args.eval_batch, seed=1)[0]) - onnx.expected).max():.1e}, vs minimix "
              f"{np.abs(ours - onnx.expected).max():.1e}")
    train = infer = None
    if args.only != "infer":
        trainers = [r for r in runners if r.trains]
        train = interleaved(trainers, lambda r: r.train_step(x, y), args.steps, args.warmup)
        report(f"training step (batch {args.batch}: forward, loss, backward, SGD nesterov)", train, args.batch)
        LOAD[0] = fmt_load()
    xe, _ = data(args.eval_batch, seed=1)
    if args.only != "train":
        infer = interleaved(runners, lambda r: r.infer(xe), args.steps, max(1, args.warmup))
        report(f"inference (eval mode, batch {args.eval_batch})", infer, args.eval_batch)
    if not args.no_reference and train and infer:
        reference_path(runners[0], x, y, xe, train["minimix"][0], infer["minimix"][0], args.reference_steps)
    if not args.no_memory:
        memory(args, [n for n in names if n in ("minimix", "torch", "torch_cl")])


if __name__ == "__main__":
    main()
