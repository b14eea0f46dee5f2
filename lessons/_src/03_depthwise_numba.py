# %% [markdown]
# # Lesson 3 — Depthwise convolution and Numba
#
# MixNet (like MobileNet and EfficientNet) replaces most dense 3x3 convolutions by a **depthwise**
# convolution (one small filter per channel) followed by a **pointwise** 1x1 convolution (mixing the
# channels). That cuts the arithmetic by an order of magnitude, but a depthwise layer does so little
# arithmetic per byte of data that **memory traffic** can set its speed, and the im2col trick of lesson 2,
# which copies the input $k^2$ times, works against it. minimix runs it with loops compiled by
# [Numba](https://numba.pydata.org).
#
# In this lesson you write a depthwise kernel in Numba (forward, then both gradients), time it against
# Python loops and against minimix's production kernels, see how the production kernels organise the
# same arithmetic, and place all of them on this machine's **roofline**.
#
# The first code cell calls `minimix.perf.configure()`, which sets this Python process up the way minimix
# trains: Numba's kernels on one thread per core (TBB's thread pool), BLAS on one thread (minimix splits
# each batch over the cores itself), and an allocator that reuses large arrays. These are process-wide
# settings, so minimix never changes them on import; the call must come before any kernel runs.

# %%
%matplotlib inline
import time

import numpy as np
import matplotlib.pyplot as plt
from matplotlib.patches import Rectangle
from numba import njit, prange

import minimix as mm
import minimix.nn.functional as F
import minimix.perf
from minimix.kernels import depthwise_numba, naive
from minimix.kernels import im2col as im2col_kernels
from minimix.lessons import best_time, fast_mode

FAST = fast_mode()
minimix.perf.configure()  # threads, BLAS, allocator: see above
settings = minimix.perf.settings()
n_threads = settings["numba"]["threads"]
blas_text = ", ".join(f"{blas['library']} on {blas['threads']} thread(s)" for blas in settings["blas"])
print(f"Numba kernels: {n_threads} thread(s), {settings['numba']['threading_layer']} pool; BLAS: {blas_text}")
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Depthwise = a convolution with `groups = C`
#
# Channel $c$ of the output only sees channel $c$ of the input, through its own $k \times k$ kernel
# $w_c$ (weight shape $(C, 1, k, k)$, or $(C, k, k)$ in the kernels below). With stride $s$ and zero padding
# $p$ (positions outside the input read zero):
#
# $$ y_{n,c,i,j} = \sum_{u,v} w_{c,u,v}\; x_{n,c,\,is-p+u,\,js-p+v} . $$
#
# | layer on a $C \times H \times W$ map | parameters | multiply-adds |
# |---|---|---|
# | dense $k\times k$, $C \to C$ | $C^2 k^2$ | $C^2 k^2 H W$ |
# | depthwise $k \times k$ | $C k^2$ | $C k^2 H W$ |
# | pointwise $1\times 1$, $C \to C$ | $C^2$ | $C^2 H W$ |
#
# A depthwise-separable pair costs $C k^2 + C^2$ instead of $C^2 k^2$: about $k^2$ times less for wide layers.

# %%
x = mm.Tensor(rng.standard_normal((2, 4, 8, 8)))
w = mm.Tensor(rng.standard_normal((4, 1, 3, 3)))
y = F.conv2d(x, w, padding=1, groups=4)  # groups = channels: depthwise
print("depthwise output:", y.shape)
y_channel_2 = F.conv2d(x[:, 2:3], w[2:3], padding=1)  # channel 2 alone, as an ordinary 1-channel conv
print("channel 2 is an independent convolution:", np.allclose(y.data[:, 2:3], y_channel_2.data))

# %% [markdown]
# ## 2. Arithmetic intensity and the roofline
#
# A CPU core can do many floating-point operations in the time it takes to bring one byte from main
# memory. The **arithmetic intensity** of a layer is
#
# $$ I = \frac{\text{FLOPs}}{\text{bytes moved}}, \qquad \text{FLOPs} = 2 \times \text{multiply-adds}, $$
#
# counting at least one read of the input and the weights and one write of the output (float32: 4 bytes).
# The **roofline model** says a kernel runs at most at $\min(P, I \cdot B)$ FLOP/s, with $P$ the peak
# compute and $B$ the memory bandwidth. Below the *ridge point* $I = P/B$ a kernel is memory-bound: even
# perfect code waits for memory.
#
# For a depthwise $k\times k$ convolution, input and output have the same size $NCHW$, so
# $I \approx \dfrac{2 k^2\, NCHW}{4 \cdot 2\,NCHW} = k^2 / 4$: about 2 FLOPs per byte for 3x3, 20 for 9x9.
# A dense $3\times3$ convolution from 64 to 64 channels does 64 times more work on the same bytes.
# Section 7 measures this machine's $P$ and $B$, and so where its ridge point lies.

# %%
def conv_intensity(n, c_in, c_out, hw, k, groups):
    """(GFLOPs, MB moved, FLOP/byte) of one stride-1 'same' convolution in float32."""
    macs = n * c_out * hw * hw * (c_in // groups) * k * k
    moved = 4 * (n * c_in * hw * hw + n * c_out * hw * hw + c_out * (c_in // groups) * k * k)
    return 2 * macs / 1e9, moved / 1e6, 2 * macs / moved


layers = {
    "dense 3x3, 64->64": (64, 64, 3, 1),
    "pointwise 1x1, 64->64": (64, 64, 1, 1),
    "depthwise 3x3": (64, 64, 3, 64),
    "depthwise 5x5": (64, 64, 5, 64),
    "depthwise 7x7": (64, 64, 7, 64),
    "depthwise 9x9": (64, 64, 9, 64),
}
intensity = {}
print(f"{'layer (batch 32, 32x32 maps)':28s} {'GFLOPs':>8s} {'MB moved':>9s} {'FLOP/byte':>10s}")
for name, (c_in, c_out, k, groups) in layers.items():
    gflops, mb, intensity[name] = conv_intensity(32, c_in, c_out, 32, k, groups)
    print(f"{name:28s} {gflops:8.3f} {mb:9.1f} {intensity[name]:10.1f}")

# %% [markdown]
# **Why im2col does not help here.** With `groups = C` the im2col product of lesson 2 splits into $C$
# separate products of a $1 \times k^2$ row (one channel's kernel) by a $k^2 \times NHW$ matrix:
# matrix-*vector* products, in which BLAS finds no data to reuse, after copying the input $k^2$ times. The
# work is tiny and the traffic is $k^2$ times the minimum. A direct loop over the data moves only the
# minimum, but section 5 measures how much the way that loop is written decides.
#
# ## 3. A depthwise kernel in Numba
#
# Numba compiles a Python function made of loops over NumPy arrays to machine code:
#
# * `@njit` compiles the function on its **first call**, for the types of that call's arguments (float64
#   arrays and ints, say); later calls with the same types run the machine code directly. Inside, only
#   numbers, arrays, loops and NumPy functions: no Python objects.
# * `@njit(parallel=True)` with `prange` instead of `range` on a loop shares that loop's iterations out
#   among the threads (here one per core). The iterations then run *at the same time*, so no two may write
#   the same array element.
#
# A depthwise convolution has an obvious unit of parallel work: the $N \cdot C$ **planes** (one image, one
# channel). Each output pixel of a plane is a sum over the $k^2$ taps, and instead of padding the input
# (a copy) the loop checks that the input pixel a tap reads lies inside the plane:
#
# ```
# for plane in prange(N * C):               # threads share out the (image, channel) planes
#     n, c = plane // C, plane % C
#     for i in range(OH):                   # every output pixel ...
#         for j in range(OW):
#             total = 0.0
#             for u in range(k):            # ... sums its k*k taps
#                 for v in range(k):
#                     r, q = i*s - p + u, j*s - p + v          # the input pixel tap (u, v) reads
#                     if 0 <= r < H and 0 <= q < W:            # outside: zero padding, skip
#                         total += x[n, c, r, q] * w[c, u, v]
#             y[n, c, i, j] = total
# ```
#
# Both halves of the check matter: a negative index does not fail, it wraps around (`x[n, c, -1]` is the
# last row), so forgetting `0 <= r` silently reads the other side of the plane.
#
# ### Exercise — the forward pass
#
# Write `depthwise_forward_loops(x, w, stride, padding)`: `x` is $(N, C, H, W)$, `w` is $(C, k, k)$, `stride`
# and `padding` are ints (the same along both axes); return $y$ of shape $(N, C, O_H, O_W)$ with
# $O_H = \lfloor (H + 2p - k)/s \rfloor + 1$, of `x`'s dtype. Allocate `y` with `np.empty` (Numba supports
# it) and check the rows once per `u`, before the loop over `v`.

# %% tags=["solution"]
@njit(parallel=True)
def depthwise_forward_loops(x, w, stride, padding):
    ### BEGIN SOLUTION
    n_images, channels, h, wd = x.shape
    k = w.shape[-1]
    oh = (h + 2 * padding - k) // stride + 1
    ow = (wd + 2 * padding - k) // stride + 1
    y = np.empty((n_images, channels, oh, ow), dtype=x.dtype)
    for plane in prange(n_images * channels):  # each thread takes whole (image, channel) planes
        n, c = plane // channels, plane % channels
        for i in range(oh):
            for j in range(ow):
                total = 0.0
                for u in range(k):
                    r = i * stride - padding + u  # the input row of tap row u
                    if 0 <= r < h:  # rows in the padding read zero: skip them
                        for v in range(k):
                            q = j * stride - padding + v
                            if 0 <= q < wd:
                                total += x[n, c, r, q] * w[c, u, v]
                y[n, c, i, j] = total
    return y
    ### END SOLUTION

# %%
from minimix.lessons import check_depthwise_forward

start = time.perf_counter()
forward_ok = check_depthwise_forward(depthwise_forward_loops)
print(f"the check took {time.perf_counter() - start:.1f} s, including Numba compiling the kernel on its first call")

# %% [markdown]
# ## 4. The backward pass
#
# Differentiate $y_{n,c,i,j} = \sum_{u,v} w_{c,u,v}\, x_{n,c,\,is-p+u,\,js-p+v}$ with $g = \partial L/\partial y$:
#
# * **input**: each output gradient is sent back to the $k^2$ pixels of its window, weighted by the tap,
#   $$ \frac{\partial L}{\partial x_{n,c,\,is-p+u,\,js-p+v}} \mathrel{+}= g_{n,c,i,j}\; w_{c,u,v} ; $$
#   for stride 1 this is a convolution of $g$ with the kernel flipped;
# * **weight**: each tap collects, over the batch and all output positions, the upstream gradient times
#   the input value it saw,
#   $$ \frac{\partial L}{\partial w_{c,u,v}} = \sum_{n,i,j} g_{n,c,i,j}\; x_{n,c,\,is-p+u,\,js-p+v} . $$
#
# Both are the forward loop with a different line in the middle. What changes is **who writes where**:
#
# * The input gradient of plane $(n, c)$ only receives from the output gradient of plane $(n, c)$. With
#   `prange` over planes, each thread adds only into the planes it owns: safe.
# * The weight gradient of channel $c$ receives from **every image**. With `prange` over planes, one thread
#   working on plane $(0, c)$ and another on $(1, c)$ both do `gw[c, u, v] += ...` at the same time. `+=` is
#   three steps (load, add, store): both load the same old value, and the later store overwrites the other
#   thread's addition. This is a **race**: the result is wrong by a different amount on every run, and
#   only when the threads happen to overlap (a small test may well pass). The fix is to give each thread
#   whole channels: `prange` over $c$, and the loop over the images inside it. A MixNet layer has dozens
#   to hundreds of channels, enough work for every thread.
#
# ### Exercise — the input gradient
#
# `gy` is $(N, C, O_H, O_W)$, `w` is $(C, k, k)$, `input_hw` is the tuple $(H, W)$; return $\partial L/\partial x$
# of shape $(N, C, H, W)$. Start from zeros (`np.zeros`) and add each `gy[n, c, i, j] * w[c, u, v]` into the
# input pixel that tap read, skipping the padding.

# %% tags=["solution"]
@njit(parallel=True)
def depthwise_backward_input_loops(gy, w, input_hw, stride, padding):
    ### BEGIN SOLUTION
    n_images, channels, oh, ow = gy.shape
    k = w.shape[-1]
    h, wd = input_hw
    gx = np.zeros((n_images, channels, h, wd), dtype=gy.dtype)
    for plane in prange(n_images * channels):  # plane (n, c) of gx gets only plane (n, c) of gy: no race
        n, c = plane // channels, plane % channels
        for i in range(oh):
            for j in range(ow):
                g = gy[n, c, i, j]
                for u in range(k):
                    r = i * stride - padding + u
                    if 0 <= r < h:
                        for v in range(k):
                            q = j * stride - padding + v
                            if 0 <= q < wd:
                                gx[n, c, r, q] += g * w[c, u, v]
    return gx
    ### END SOLUTION

# %%
from minimix.lessons import check_depthwise_backward_input

input_ok = check_depthwise_backward_input(depthwise_backward_input_loops)

# %% [markdown]
# ### Exercise — the weight gradient
#
# `x` is $(N, C, H, W)$, `gy` is $(N, C, O_H, O_W)$, `kernel_size` is $k$; return $\partial L/\partial w$ of shape
# $(C, k, k)$. Make it race-free: `prange` over the channels.

# %% tags=["solution"]
@njit(parallel=True)
def depthwise_backward_weight_loops(x, gy, kernel_size, stride, padding):
    ### BEGIN SOLUTION
    n_images, channels, h, wd = x.shape
    oh, ow = gy.shape[2], gy.shape[3]
    k = kernel_size
    gw = np.zeros((channels, k, k), dtype=x.dtype)
    for c in prange(channels):  # one thread owns gw[c]: it alone sums over all images
        for n in range(n_images):
            for i in range(oh):
                for j in range(ow):
                    g = gy[n, c, i, j]
                    for u in range(k):
                        r = i * stride - padding + u
                        if 0 <= r < h:
                            for v in range(k):
                                q = j * stride - padding + v
                                if 0 <= q < wd:
                                    gw[c, u, v] += g * x[n, c, r, q]
    return gw
    ### END SOLUTION

# %%
from minimix.lessons import check_depthwise_backward_weight

weight_ok = check_depthwise_backward_weight(depthwise_backward_weight_loops)
loops_ok = forward_ok and input_ok and weight_ok

# %% [markdown]
# ## 5. Timing: Python loops, your Numba loops, the production kernels
#
# Timings on a shared machine move around, so every comparison below is done the same careful way: each
# function is called once before timing (that first call compiles a Numba kernel for these argument types,
# or loads it from the cache), the candidates are called **interleaved** (A, B, C, A, B, C, ...) so that all
# of them see the same machine, and each is reported by its **median** time.

# %%
def interleaved_medians(candidates, repeat):
    """{name: median seconds of `repeat` calls}; every round calls each candidate once, in turn."""
    for fn in candidates.values():
        fn()  # warm-up: compile (or load from the cache), fill the caches
    times = {name: [] for name in candidates}
    for _ in range(repeat):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(seconds)) for name, seconds in times.items()}


# The three passes of each implementation at stride 1, as functions of no arguments
def numpy_passes(module, x, w, gy, padding):
    """minimix.kernels.naive or minimix.kernels.im2col: groups = C, weight (C, 1, k, k)."""
    c, k = x.shape[1], w.shape[-1]
    s, p, d = (1, 1), (padding, padding), (1, 1)
    return {"forward": lambda: module.conv2d_forward(x, w[:, None], s, p, d, c),
            "input gradient": lambda: module.conv2d_backward_input(gy, w[:, None], x.shape[2:], s, p, d, c),
            "weight gradient": lambda: module.conv2d_backward_weight(x, gy, (k, k), s, p, d, c)}


def your_passes(x, w, gy, padding):
    return {"forward": lambda: depthwise_forward_loops(x, w, 1, padding),
            "input gradient": lambda: depthwise_backward_input_loops(gy, w, x.shape[2:], 1, padding),
            "weight gradient": lambda: depthwise_backward_weight_loops(x, gy, w.shape[-1], 1, padding)}


def production_passes(x, w, gy, padding):
    s, p = (1, 1), (padding, padding)
    return {"forward": lambda: depthwise_numba.depthwise_forward(x, w, s, p),
            "input gradient": lambda: depthwise_numba.depthwise_backward_input(gy, w, x.shape[2:], s, p),
            "weight gradient": lambda: depthwise_numba.depthwise_backward_weight(x, gy, w.shape[1:], s, p)}

# %% [markdown]
# First against the definition as Python loops (`minimix.kernels.naive`, lesson 2), on an input small
# enough for them:

# %%
x_tiny = rng.standard_normal((1, 8, 16, 16)).astype(np.float32)
w_tiny = rng.standard_normal((8, 3, 3)).astype(np.float32)
gy_tiny = rng.standard_normal(x_tiny.shape).astype(np.float32)
if not loops_ok:
    print("Your kernels do not pass their checks yet: solve the three exercises above first.")
else:
    python_loops = numpy_passes(naive, x_tiny, w_tiny, gy_tiny, 1)
    numba_loops = your_passes(x_tiny, w_tiny, gy_tiny, 1)
    candidates = {}
    for name in python_loops:
        candidates[("Python", name)], candidates[("Numba", name)] = python_loops[name], numba_loops[name]
    tiny = interleaved_medians(candidates, repeat=3 if FAST else 7)
    print(f"x {x_tiny.shape} float32, 3x3, stride 1, padding 1: median times")
    for name in python_loops:
        python, numba = tiny[("Python", name)], tiny[("Numba", name)]
        print(f"  {name:16s} Python loops {python * 1e3:8.2f} ms   your Numba loops {numba * 1e3:7.3f} ms   "
              f"{python / numba:6.0f}x faster")
    gains = [tiny[("Python", name)] / tiny[("Numba", name)] for name in python_loops]
    print(f"The same loops, compiled and run on {n_threads} thread(s), are {min(gains):.0f}-{max(gains):.0f} "
          "times faster than as Python.")

# %% [markdown]
# Now a layer of MixNet's size: 48 channels of 32x32 (the width of `mixnet_cifar`'s second stage), a batch
# of 64 images (8 in fast mode), kernel sizes 3 to 9 as in a MixConv layer, stride 1 with "same" padding.
# Three implementations, each pass timed separately:
#
# * **yours**: the loops above;
# * **production**: `minimix.kernels.depthwise_numba.depthwise_forward`, `depthwise_backward_input`,
#   `depthwise_backward_weight`, what `F.conv2d` runs for a depthwise convolution (section 6 explains them);
# * **im2col**: `minimix.kernels.im2col`, lesson 2's matrix products, with its images shared out over the
#   same threads (and BLAS on one thread each).
#
# The GB/s columns count the least traffic a pass needs (forward: read $x$, write $y$; input gradient: read
# $g$, write $\partial L/\partial x$; weight gradient: read $x$ and $g$), the GFLOP/s columns the useful
# multiply-adds ($2k^2$ FLOPs per pixel).

# %%
n_batch = 8 if FAST else 64
x_layer = rng.standard_normal((n_batch, 48, 32, 32)).astype(np.float32)
gy_layer = rng.standard_normal(x_layer.shape).astype(np.float32)
kernel_sizes = [3, 5, 7, 9]
implementations = {"yours": your_passes, "production": production_passes,
                   "im2col": lambda *arrays_and_padding: numpy_passes(im2col_kernels, *arrays_and_padding)}
if not loops_ok:
    del implementations["yours"]
candidates, differences = {}, []
for k in kernel_sizes:
    w_layer = (rng.standard_normal((48, k, k)) / k).astype(np.float32)
    for impl, make in implementations.items():
        for name, fn in make(x_layer, w_layer, gy_layer, k // 2).items():
            candidates[(impl, k, name)] = fn
    if loops_ok:  # your results against the production kernels'
        for name, fn in your_passes(x_layer, w_layer, gy_layer, k // 2).items():
            expected = candidates[("production", k, name)]()
            differences.append(np.abs(fn() - expected).max() / np.abs(expected).max())

start = time.perf_counter()
timed = interleaved_medians(candidates, repeat=3 if FAST else 5)
print(f"x {x_layer.shape} float32, stride 1, 'same' padding; medians of interleaved runs "
      f"({time.perf_counter() - start:.0f} s in all)")
if differences:
    print(f"your results and the production kernels' differ by at most {max(differences):.1e} of the largest "
          "value: " + ("float32 rounding" if max(differences) < 1e-3 else "more than rounding explains; a bug?"))

passes = ["forward", "input gradient", "weight gradient"]
flops = {k: 2 * k * k * x_layer.size for k in kernel_sizes}  # of one pass
traffic = 2 * x_layer.nbytes  # of one pass: one tensor read and one written (or two read)
print(f"{'k':>2s} {'pass':16s}" + "".join(f"{impl:>32s}" for impl in implementations))
for k in kernel_sizes:
    for name in passes:
        row = f"{k:2d} {name:16s}"
        for impl in implementations:
            t = timed[(impl, k, name)]
            row += f"{t * 1e3:9.1f} ms {traffic / t / 1e9:5.1f} GB/s {flops[k] / t / 1e9:5.1f} GF/s"
        print(row)

# %% [markdown]
# Summed over the three passes (a training step runs all three), and compared:

# %%
step = {(impl, k): sum(timed[(impl, k, name)] for name in passes) for impl in implementations for k in kernel_sizes}
fig, ax = plt.subplots(figsize=(7, 4))
for impl in implementations:
    ax.plot(kernel_sizes, [step[(impl, k)] * 1e3 for k in kernel_sizes], "o-", label=impl)
ax.set_xlabel("kernel size k")
ax.set_ylabel("forward + both gradients (ms)")
ax.set_yscale("log")
ax.set_xticks(kernel_sizes)
ax.set_title(f"depthwise convolution of x {x_layer.shape}, {n_threads} thread(s)")
ax.legend()
plt.show()


def compared(time, other_time, other):
    """'3.2x faster than <other>' / '1.5x slower than <other>' / 'as fast as <other>'."""
    ratio = other_time / time
    if ratio >= 1.1:
        return f"{ratio:.1f}x faster than {other}"
    return f"{1 / ratio:.1f}x slower than {other}" if ratio <= 1 / 1.1 else f"as fast as {other}"


for k in kernel_sizes:
    line = f"k={k}: the production kernels are {compared(step[('production', k)], step[('im2col', k)], 'im2col')}"
    if loops_ok:
        line += (f" and {compared(step[('production', k)], step[('yours', k)], 'your loops')}; "
                 f"your loops are {compared(step[('yours', k)], step[('im2col', k)], 'im2col')}")
    print(line)
growth = {impl: step[(impl, 9)] / step[(impl, 3)] for impl in implementations}
print(f"From k=3 to k=9 the useful arithmetic grows 9x; the time grew "
      + ", ".join(f"{g:.1f}x for {impl}" for impl, g in growth.items()) + ".")

# %% [markdown]
# im2col copies every input pixel $k^2$ times before its products start, and a depthwise product gives BLAS
# nothing to reuse, so it pays for $k^2$ times the minimum traffic. Your loops and the production kernels
# both read each pixel straight from the input and do the same multiply-adds; the lines above say how far
# apart their times are on this machine. The next section shows what the production kernels do differently.
#
# ## 6. How the production kernels do it
#
# Your loop does the right number of multiply-adds, but its innermost loop runs over $k$ taps (3 to 9
# iterations) with a bounds check in each. A CPU core's SIMD instructions do 8 or 16 float32 multiply-adds
# at once, and compilers use them on long, branch-free loops over consecutive memory. The production
# kernels (`minimix/kernels/depthwise_numba.py` and `depthwise_rows.py`; their docstrings have every detail)
# reorganise the same sum so that the innermost loop is exactly that. The first way (`depthwise_numba.py`):
#
# 1. **A convolution is a sum of shifted copies.** Flatten an $H \times W$ plane row by row,
#    $x_\text{flat}[rW + q] = x[r, q]$. With stride 1 and "same" padding, output position $e = iW + j$
#    reads, through tap $(u, v)$, input position $e + s_t$ with **one constant shift** for the whole plane,
#    $s_t = (u - p)W + (v - p)$. The forward pass becomes $k^2$ multiply-adds of whole vectors:
#    $y_\text{flat}[e] \mathrel{+}= x_\text{flat}[e + s_t] \cdot w_{c,u,v}$.
# 2. **Weight maps instead of bounds checks.** Near the border the shifted read lands in the wrong place:
#    outside the vector, or at the far end of the previous or next row (the flat vector *wraps*). Rather
#    than test each position, the kernel multiplies by a **weight map** $m_t[e]$: $w_{c,u,v}$ where tap $t$
#    stays inside the plane, 0 where it would read the padding. The loop body is then
#    `y[e] += x[e + s] * m[e]`: no branch, unit stride, vectorised.
# 3. **Blocks of channels.** In NCHW the planes of one image lie one after another, so one flat vector can
#    span several channels; each channel's stretch of the weight map holds that channel's weight. Small
#    planes (8x8 has 64 pixels) still make long loops, and one block stays in cache while all $k^2$ taps
#    are applied.
# 4. **Four taps per pass.** Each pass over $y$ loads and stores it once; the kernel applies four taps per
#    pass (`y[e] += x[e+s0]*m0[e] + x[e+s1]*m1[e] + x[e+s2]*m2[e] + x[e+s3]*m3[e]`), so a 3x3 kernel takes 3
#    passes instead of 9, a 9x9 one 21 instead of 81.
# 5. **Stride 2 by the polyphase split.** With stride 2, output $(i, j)$ reads input $(2i + u - p, 2j + v - p)$:
#    no constant shift. But split $x$ into its four **phase planes** $x_{ab}[r, q] = x[2r + a, 2q + b]$, and
#    tap $(u, v)$ reads phase plane $((u-p) \bmod 2, (v-p) \bmod 2)$ at a constant shift of
#    $(\lfloor (u-p)/2 \rfloor, \lfloor (v-p)/2 \rfloor)$ rows and columns: a stride-1 shifted sum again.
#
# The gradients are the same machinery: the input gradient is a shifted sum of $g$ with the shifts negated
# (the "flipped kernel"), the weight gradient multiplies $g$ by shifted copies of $x$ elementwise and sums
# each tap's products over its weight map. The price: masked taps still cost their multiply-add (by zero),
# a share that grows on small planes, and every multiply-add loads two values (a weight and an input).
#
# The second way (`depthwise_rows.py`), used for the forward and the input gradient with "same" padding, at
# stride 1 on planes 16 wide or more (8 for kernels of 5 or more) and at stride 2 on even planes 8 wide or
# more: **rows, with the taps written out.** Copy
# the plane into a small buffer $x_p$ with $p$ zeros around it (real padding: no masks), and make the loop
# over the columns $q$ of one output row the innermost loop, with the $k^2$ taps written out as one sum:
# `y[r, q] = w0 * xp[r, q] + w1 * xp[r, q + 1] + ... + w8 * xp[r + 2, q + 2]`. The compiler turns the
# $q$ loop into vector instructions; each output vector is summed in a register over all its taps and stored
# once, the weights are constants held in registers, and each tap costs one load and one multiply-add. The
# compiler only does this when the taps and the plane width are constants in the source, so the kernel's
# source is generated for each kernel size and plane width. At stride 2 the buffer holds the padded plane's
# four phase planes (point 5), so that every tap is again one constant offset; the input gradient computes
# each of $x$'s four phases from its quarter of the taps. The weight gradient runs row by row too, as one dot
# product per tap, on planes 16 wide or more (for kernels of 5 or more at stride 1).
#
# The third way (`depthwise_dense.py`), for kernels of 5 or more onto small planes (4x4, and 9x9 kernels on
# 8x8): **a convolution is a matrix.** Flatten one channel's input plane to a vector $x_c$ of $P$ pixels and
# its output plane to $y_c$ of $Q$ pixels: $y_c = x_c A_c$, where $A_c[q, p] = w_{c,u,v}$ if tap $(u, v)$ of
# output pixel $p$ reads input pixel $q$, else 0. For the whole batch that is one $(N, P) \times (P, Q)$
# matrix product per channel, $P \cdot Q$ multiply-adds per plane whatever the kernel size: 256 on a 4x4
# plane, where a 9x9 kernel's shifted sums do $49 \cdot 16 = 784$, most of them by a masked zero. The other
# planes and kernels (3x3 on 4x4 and 8x8 planes among them) keep the shifted sums.
#
# Points 1-3, drawn for a 5x5 plane and a 3x3 kernel (padding 1); each pixel carries its position in the
# flat vector:

# %%
H = W = 5
pad = 1
e = np.arange(H * W)  # flat position of every pixel
r, q = e // W, e % W  # its row and column
row_colors = np.array(["#fdd0a2", "#c6dbef", "#dadaeb", "#fff7bc", "#c7e9c0"])
WRAP, OUTSIDE, ZERO, WEIGHT = "#e34a33", "#bdbdbd", "#e0e0e0", "#74c476"


def tap(u, v):
    """(shift, mask) of tap (u, v): the mask is 1 where the tap reads inside the plane."""
    shift = (u - pad) * W + (v - pad)
    mask = (0 <= r + u - pad) & (r + u - pad < H) & (0 <= q + v - pad) & (q + v - pad < W)
    return shift, mask


def strip(ax, y, texts, colors, label):
    """One row of cells, labelled on the left."""
    for i, (text, color) in enumerate(zip(texts, colors)):
        ax.add_patch(Rectangle((i, y), 1, 1, facecolor=color, edgecolor="k", linewidth=0.5))
        ax.text(i + 0.5, y + 0.5, text, ha="center", va="center", fontsize=7,
                color="white" if color == WRAP else "black")
    ax.text(-0.5, y + 0.5, label, ha="right", va="center", fontsize=9)


shift, mask = tap(0, 0)
source = e + shift
fig = plt.figure(figsize=(14, 5.3))
grid = fig.add_gridspec(2, 12, height_ratios=[1.2, 1], hspace=0.3)

ax = fig.add_subplot(grid[0, :2])  # the plane
ax.imshow(r.reshape(H, W), cmap=plt.matplotlib.colors.ListedColormap(row_colors))
for i in e:
    ax.text(q[i], r[i], str(i), ha="center", va="center")
ax.add_patch(Rectangle((0.5, 0.5), 3, 3, fill=False, edgecolor="C3", linewidth=2))
ax.set_title("a 5x5 plane, pixels numbered row by row;\nred: the 3x3 window of output 12", fontsize=9)
ax.set_xticks([]), ax.set_yticks([])

ax = fig.add_subplot(grid[0, 2:])  # the flat vector, one tap's shifted read and its weight map
strip(ax, 3, [str(i) for i in e], row_colors[r], "x_flat")
reads = [str(s) if 0 <= s < H * W else "out" for s in source]
read_colors = [row_colors[s // W] if m else WRAP if 0 <= s < H * W else OUTSIDE for s, m in zip(source, mask)]
strip(ax, 1.8, reads, read_colors, f"tap (0,0) at e reads\nx_flat[e {shift:+d}]")
strip(ax, 0.6, ["w" if m else "0" for m in mask], [WEIGHT if m else ZERO for m in mask], "weight map m(0,0)")
for i in e:
    ax.text(i + 0.5, 4.2, str(i), ha="center", fontsize=7, color="0.4")
ax.text(-0.5, 4.25, "output position e", ha="right", fontsize=9, color="0.4")
ax.set_xlim(-7, H * W + 0.2), ax.set_ylim(0.4, 4.7), ax.axis("off")
ax.set_title(f"tap (0, 0) is ONE shift, s = {shift:+d}, for the whole plane (output 12 reads pixel 6).\n"
             "Red: the read wrapped to the end of the row above; grey: outside the vector. Both get weight 0.",
             fontsize=9)

mask_colors = plt.matplotlib.colors.ListedColormap([ZERO, WEIGHT])
for t, (u, v) in enumerate([(a, b) for a in range(3) for b in range(3)]):
    s, m = tap(u, v)
    ax = fig.add_subplot(grid[1, t])
    ax.imshow(m.reshape(H, W), cmap=mask_colors, vmin=0, vmax=1)
    ax.set_title(f"m({u},{v}), s={s:+d}", fontsize=8)
    ax.set_xticks([]), ax.set_yticks([])
    if t == 0:
        ax.set_ylabel("weight maps of\nthe 9 taps", fontsize=9)

block_weights = np.array([0.9, -0.5, 0.3])
ax = fig.add_subplot(grid[1, 9:])  # a block: three channels' planes in one vector
block_map = np.where(np.tile(mask, 3), np.repeat(block_weights, H * W), np.nan).reshape(3, H, W)
weight_colors = plt.get_cmap("coolwarm").copy()
weight_colors.set_bad(ZERO)  # masked: weight 0
ax.imshow(np.concatenate(list(block_map), axis=1), cmap=weight_colors, vmin=-1, vmax=1)
for c in range(3):
    ax.text(c * W + 2.5, 2.5, f"w = {block_weights[c]:+.1f}", ha="center", va="center", fontsize=8)
    ax.axvline(c * W - 0.5, color="k")
ax.set_xticks([c * W + 2 for c in range(3)], [f"channel {c}" for c in range(3)], fontsize=8)
ax.set_yticks([])
ax.set_title("a block of 3 channels: one vector;\nm(0,0) holds each channel's weight", fontsize=8)
plt.show()

# %% [markdown]
# The same computation in NumPy, one flat vector for a block of channels (one image), one shift and one
# weight map per tap, checked against the definition:

# %%
def shifted_sum_forward(x_block, w, padding):
    """Depthwise forward of a block of channels of one image, x_block (C, H, W), stride 1, 'same' padding."""
    c_, h, wd = x_block.shape
    k = w.shape[-1]
    x_flat = x_block.ravel()
    e = np.arange(x_flat.size)                    # flat position
    c, r, q = e // (h * wd), e // wd % h, e % wd  # its channel, row and column
    y_flat = np.zeros_like(x_flat)
    for u in range(k):
        for v in range(k):
            shift = (u - padding) * wd + (v - padding)
            inside = (0 <= r + u - padding) & (r + u - padding < h) & (0 <= q + v - padding) & (q + v - padding < wd)
            weight_map = np.where(inside, w[c, u, v], 0.0)
            reads = np.clip(e + shift, 0, x_flat.size - 1)  # a read outside the vector is masked anyway
            y_flat += x_flat[reads] * weight_map
    return y_flat.reshape(c_, h, wd)


x_small = rng.standard_normal((1, 3, 6, 7))
w_small = rng.standard_normal((3, 5, 5))
reference = naive.conv2d_forward(x_small, w_small[:, None], (1, 1), (2, 2), (1, 1), 3)[0]
print("shifted sums == the definition:", np.allclose(shifted_sum_forward(x_small[0], w_small, 2), reference))

# %% [markdown]
# And the polyphase split for stride 2: the pixels of a 6x6 input coloured by their phase $(r \bmod 2, q \bmod 2)$,
# and the four 3x3 phase planes they make. Below, a stride-2 convolution computed as stride-1 shifted reads
# of the phase planes:

# %%
x_numbers = np.arange(36).reshape(6, 6)
phase_of = (x_numbers // 6 % 2) * 2 + x_numbers % 6 % 2
phase_colors = plt.matplotlib.colors.ListedColormap(["#8dd3c7", "#ffffb3", "#bebada", "#fb8072"])
fig, axes = plt.subplots(1, 5, figsize=(13, 3), gridspec_kw={"width_ratios": [2, 1, 1, 1, 1]})
axes[0].imshow(phase_of, cmap=phase_colors, vmin=0, vmax=3)
for (i, j), value in np.ndenumerate(x_numbers):
    axes[0].text(j, i, str(value), ha="center", va="center", fontsize=8)
axes[0].set_title("input x (6x6), coloured by phase")
for a in range(2):
    for b in range(2):
        ax = axes[1 + 2 * a + b]
        ax.imshow(np.full((3, 3), 2 * a + b), cmap=phase_colors, vmin=0, vmax=3)
        for (i, j), value in np.ndenumerate(x_numbers[a::2, b::2]):
            ax.text(j, i, str(value), ha="center", va="center", fontsize=8)
        ax.set_title(f"phase plane ({a},{b}):\nx[2r+{a}, 2q+{b}]", fontsize=9)
for ax in axes:
    ax.set_xticks([]), ax.set_yticks([])
plt.show()

k, pad = 3, 1
print("stride 2, 3x3, padding 1: tap (u, v) reads phase plane (a, b), shifted by (du, dv) rows and columns")
for u in range(k):
    print("   " + "   ".join(f"({u},{v}): phase {((u - pad) % 2, (v - pad) % 2)} "
                             f"shift {((u - pad) // 2, (v - pad) // 2)}"
                             for v in range(k)))


def polyphase_forward(x_plane, w_plane, padding):
    """A stride-2 convolution of one (H, W) plane, as stride-1 shifted reads of its four phase planes."""
    h, wd = x_plane.shape
    k = w_plane.shape[-1]
    oh, ow = (h + 2 * padding - k) // 2 + 1, (wd + 2 * padding - k) // 2 + 1
    y = np.zeros((oh, ow))
    for u in range(k):
        for v in range(k):
            (du, a), (dv, b) = divmod(u - padding, 2), divmod(v - padding, 2)
            phase = np.pad(x_plane[a::2, b::2], k)  # zeros around it: the shifted read never leaves it
            y += w_plane[u, v] * phase[k + du:k + du + oh, k + dv:k + dv + ow]
    return y


x_plane, w_plane = rng.standard_normal((9, 8)), rng.standard_normal((5, 5))
reference = naive.conv2d_forward(x_plane[None, None], w_plane[None, None], (2, 2), (2, 2), (1, 1), 1)[0, 0]
print("polyphase == the definition (stride 2):", np.allclose(polyphase_forward(x_plane, w_plane, 2), reference))

# %% [markdown]
# ## 7. The roofline of this machine, with the kernels' threads
#
# To place the kernels on a roofline, measure the machine's two roofs **with the threads the kernels use**:
# the Numba kernels run on the `n_threads` threads printed by the first cell, while `minimix.perf.configure()`
# leaves BLAS a single thread; a matrix product on one thread would measure one core's peak, not the
# machine's.
#
# * **Peak compute $P$**: a large float32 matrix product with as many BLAS threads as Numba uses
#   (`threadpoolctl.threadpool_limits` raises the limit for this measurement only);
# * **bandwidth $B$**: a parallel *triad* `a[i] = b[i] + s * c[i]` in Numba on the same threads, over arrays
#   of 64 MB (larger than most CPU caches), counting three arrays of traffic (two read, one written).
#
# A roof is what the machine can do, so both are the best of several runs (as the STREAM benchmark reports
# bandwidth); the kernels above were reported by their medians.

# %%
from threadpoolctl import threadpool_limits


@njit(parallel=True)
def triad(a, b, c, scale):
    for i in prange(a.size):
        a[i] = b[i] + scale * c[i]


def best_of(fn, repeat):
    """``best_time`` (the fastest of ``repeat`` calls) after one untimed warm-up call (compilation, caches)."""
    fn()
    return best_time(fn, repeat)


size = 1024 if FAST else 2048
a_matrix = rng.standard_normal((size, size)).astype(np.float32)
with threadpool_limits(limits=n_threads, user_api="blas"):
    peak = 2 * size**3 / best_of(lambda: a_matrix @ a_matrix, repeat=5) / 1e9
a_vec, b_vec, c_vec = (np.ones(16 * 2**20, dtype=np.float32) for _ in range(3))  # 64 MB each
bandwidth = 3 * a_vec.nbytes / best_of(lambda: triad(a_vec, b_vec, c_vec, np.float32(3)), repeat=10) / 1e9
ridge = peak / bandwidth
print(f"peak P = {peak:.0f} GFLOP/s (float32 {size}x{size} matrix product, {n_threads} BLAS threads)")
print(f"bandwidth B = {bandwidth:.1f} GB/s (Numba triad on 3 x 64 MB, {n_threads} threads)")
blas_after = ", ".join(str(blas["threads"]) for blas in minimix.perf.settings()["blas"])
print(f"ridge point P/B = {ridge:.1f} FLOP/byte (and BLAS is back on {blas_after} thread(s))")

# %% [markdown]
# Each pass of a depthwise layer reads one tensor and writes another (the weight gradient reads two), so the
# forward pass and forward + backward have the same intensity, $k^2/4$ up to the weights. Place the kernels
# timed in section 5 at their layer's intensity, at the useful FLOP/s they reached:

# %%
tensor_bytes = x_layer.nbytes
layer_intensity = {k: 2 * k * k * x_layer.size / (2 * tensor_bytes + 4 * 48 * k * k) for k in kernel_sizes}
achieved = {("production", "forward"): {k: flops[k] / timed[("production", k, "forward")] / 1e9 for k in kernel_sizes}}
for impl in implementations:
    achieved[(impl, "forward + backward")] = {k: 3 * flops[k] / step[(impl, k)] / 1e9 for k in kernel_sizes}
roof = {k: min(peak, layer_intensity[k] * bandwidth) for k in kernel_sizes}

i_axis = np.logspace(-0.5, 3, 200)
fig, ax = plt.subplots(figsize=(9, 5.5))
ax.loglog(i_axis, np.minimum(peak, i_axis * bandwidth), "k-", linewidth=2, label="roofline of this machine")
ax.axvline(ridge, color="k", linestyle=":", linewidth=1)
ax.text(ridge * 1.08, peak * 0.5, f"ridge point\n{ridge:.1f} FLOP/byte", fontsize=8)
markers = {("production", "forward"): "o", ("production", "forward + backward"): "s",
           ("yours", "forward + backward"): "^", ("im2col", "forward + backward"): "x"}
for key, rates in achieved.items():
    ax.plot([layer_intensity[k] for k in kernel_sizes], [rates[k] for k in kernel_sizes], markers[key] + "-",
            label=f"{key[0]}, {key[1]}", alpha=0.8)
for k in kernel_sizes:
    ax.annotate(f"{k}x{k}", (layer_intensity[k], roof[k]), textcoords="offset points", xytext=(0, 6),
                ha="center", fontsize=8)
for name in ["dense 3x3, 64->64", "pointwise 1x1, 64->64"]:
    ax.plot(intensity[name], min(peak, intensity[name] * bandwidth), "D", color="0.5")
    ax.annotate(name, (intensity[name], min(peak, intensity[name] * bandwidth)), textcoords="offset points",
                xytext=(4, -12), fontsize=8, color="0.4")
ax.set_xlabel("arithmetic intensity (FLOP/byte)")
ax.set_ylabel("GFLOP/s (useful)")
ax.set_title(f"depthwise kernels on this machine's roofline ({n_threads} threads; x {x_layer.shape})")
ax.legend(fontsize=8, loc="lower right")
plt.show()

# %% [markdown]
# What the measurements say, on this machine and this run:

# %%
def names(ks):
    return ", ".join(f"{k}x{k}" for k in ks)


memory_bound = [k for k in kernel_sizes if layer_intensity[k] < ridge]
compute_bound = [k for k in kernel_sizes if layer_intensity[k] >= ridge]
print(f"* The ridge point is {ridge:.1f} FLOP/byte (P = {peak:.0f} GFLOP/s, B = {bandwidth:.1f} GB/s).")
if memory_bound and compute_bound:
    print(f"* Memory-bound (left of the ridge): the {names(memory_bound)} depthwise layers; the "
          f"{names(compute_bound)} ones have enough arithmetic per byte to be limited by compute.")
elif memory_bound:
    print(f"* Every depthwise layer here ({names(memory_bound)}, up to {layer_intensity[9]:.1f} FLOP/byte) "
          "lies left of the ridge: all are memory-bound.")
else:
    print(f"* Even the 3x3 layer ({layer_intensity[3]:.1f} FLOP/byte) lies right of this machine's ridge: "
          "its bandwidth is high for its compute, and every layer here is compute-bound.")
dense = intensity["dense 3x3, 64->64"]
print(f"* The dense 3x3 convolution of section 2 ({dense:.0f} FLOP/byte) lies "
      f"{'right' if dense >= ridge else 'left'} of the ridge, {dense / ridge:.1f}x the ridge intensity.")
for key, rates in achieved.items():
    fractions = [rates[k] / roof[k] for k in kernel_sizes]
    best = kernel_sizes[int(np.argmax(fractions))]
    print(f"* {key[0]}, {key[1]}: {min(rates.values()):.1f}-{max(rates.values()):.1f} GFLOP/s, "
          f"{100 * min(fractions):.0f}-{100 * max(fractions):.0f}% of the roof (closest at {best}x{best}).")
production_fraction = max(achieved[("production", "forward")][k] / roof[k] for k in kernel_sizes)
if production_fraction > 1:
    print("* Some points lie above the roof: most likely their arrays (here "
          f"{tensor_bytes / 2**20:.1f} MB per tensor) stayed in a cache that is faster than the memory the "
          "64 MB triad measured.")
elif production_fraction < 0.5:
    print("* The production kernels stay well below the roof. The roofline counts only main memory and "
          "the arithmetic units; these kernels also load a shifted input and a weight map from the caches "
          "for every multiply-add, and their masked taps multiply by zero without doing useful work.")
if FAST:
    print(f"  (fast mode: a batch of {n_batch}, {tensor_bytes / 2**20:.1f} MB per tensor, small enough for "
          "a cache; run without MINIMIX_FAST for meaningful numbers)")

# %% [markdown]
# ## Summary
#
# * Depthwise convolution does $k^2$ multiply-adds per output: an arithmetic intensity of about $k^2/4$
#   FLOP/byte. Left of the machine's ridge point, memory traffic sets the speed; section 7 measured where
#   this machine's ridge lies, with the roofs measured on the threads the kernels use.
# * A readable Numba kernel is the definition as loops: `prange` over independent planes, bounds checks
#   instead of padding. The input gradient scatters $g$ back through the kernel, plane by plane; the weight
#   gradient sums over every image, so it is parallel over channels to stay free of races.
# * Fast kernels reorganise the same sum into long, branch-free, unit-stride loops: shifted copies of the
#   flattened planes, weight maps for the padding, blocks of channels, four taps per pass, and the polyphase
#   split for stride 2; or, on wide enough planes, one output row at a time with every tap written out,
#   summed in a register (at stride 2 over the padded plane's four phases).
# * im2col multiplies the traffic by $k^2$ and gives BLAS nothing to reuse.
#
# Next: [Lesson 4](04_mixconv.ipynb) — several kernel sizes in one depthwise layer.
