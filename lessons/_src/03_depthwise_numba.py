# %% [markdown]
# # Lesson 3 — Depthwise convolution and Numba
#
# MixNet (like MobileNet and EfficientNet) replaces most dense 3x3 convolutions by a **depthwise**
# convolution (one small filter per channel) followed by a **pointwise** 1x1 convolution (mixing the
# channels). That cuts the arithmetic by an order of magnitude — but, as this lesson measures, a 3x3
# depthwise layer does so little arithmetic per byte that it is limited by **memory traffic**, and the
# im2col trick of lesson 2 stops paying. minimix runs it with hand-written loops compiled by Numba.

# %%
%matplotlib inline
import inspect

import numpy as np
import matplotlib.pyplot as plt

import minimix as mm
import minimix.nn.functional as F
from minimix.kernels import depthwise_numba
from minimix.lessons import best_time, fast_mode

FAST = fast_mode()
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Depthwise = a convolution with `groups = C`
#
# Channel $c$ of the output only sees channel $c$ of the input, through its own $k \times k$ kernel
# $w_c$ (weight shape $(C, 1, k, k)$):
#
# $$ y_{n,c,i,j} = \sum_{u,v} w_{c,u,v}\; x_{p\;n,c,\,is+u,\,js+v} . $$
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
# ## 2. Arithmetic intensity: why depthwise is memory-bound
#
# A CPU core can do many floating-point operations in the time it takes to bring one byte from main
# memory. The **arithmetic intensity** of a layer is
#
# $$ I = \frac{\text{FLOPs}}{\text{bytes moved}}, \qquad \text{FLOPs} = 2 \times \text{multiply-adds}, $$
#
# counting at least one read of the input and the weights and one write of the output (float32: 4 bytes).
# The **roofline model** says a kernel runs at most at $\min(P, I \cdot B)$ FLOP/s, with $P$ the peak
# compute and $B$ the memory bandwidth. Below the *ridge point* $I = P/B$ a kernel is memory-bound.
#
# For a depthwise $k\times k$ convolution, input and output have the same size $NCHW$, so
# $I \approx \dfrac{2 k^2\, NCHW}{4 \cdot 2\,NCHW} = k^2 / 4$ — about 2 FLOPs per byte for 3x3. A dense
# $3\times3$ convolution from 64 to 64 channels does $64$ times more work on the same bytes. CPUs have
# ridge points of roughly 5-20 FLOP/byte: the dense layer is far above (compute-bound), the 3x3 depthwise
# layer far below (memory-bound), and larger depthwise kernels climb towards the ridge.

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
# Now measure this machine's two roofs: peak compute with a large matrix product, bandwidth with a large
# array copy (read + write).

# %%
size = 512 if FAST else 1024
a = rng.standard_normal((size, size)).astype(np.float32)
peak = 2 * size**3 / best_time(lambda: a @ a) / 1e9
big = np.ones(8 * 2**20 if FAST else 32 * 2**20, dtype=np.float32)
target = np.empty_like(big)
bandwidth = 2 * big.nbytes / best_time(lambda: np.copyto(target, big)) / 1e9
print(f"peak ~ {peak:.0f} GFLOP/s (float32 matmul), bandwidth ~ {bandwidth:.1f} GB/s (copy): "
      f"ridge point ~ {peak / bandwidth:.1f} FLOP/byte")

i_axis = np.logspace(-1, 3, 100)
plt.loglog(i_axis, np.minimum(peak, i_axis * bandwidth), "k-", label="roofline of this machine")
for name, value in intensity.items():
    plt.plot(value, min(peak, value * bandwidth), "o", label=f"{name} (I = {value:.1f})")
plt.xlabel("arithmetic intensity (FLOP/byte)")
plt.ylabel("attainable GFLOP/s")
plt.legend(fontsize=8)
plt.title("the layers on this machine's roofline (left of the kink: memory-bound)")
plt.show()

# %% [markdown]
# ## 3. Why im2col does not help a depthwise convolution
#
# With `groups = C` the im2col product splits into $C$ separate products of a $1 \times k^2$ row (one
# channel's kernel) by a $k^2 \times NHW$ matrix: matrix-*vector* products, which have no data reuse for
# BLAS to exploit, after copying the input $k^2$ times. The work is tiny, and the traffic is $k^2$ times
# the minimum.
#
# ## 4. The Numba kernels
#
# [Numba](https://numba.pydata.org) compiles a subset of Python (loops over NumPy arrays) to machine
# code. The kernels in `minimix/kernels/depthwise_numba.py` are written to touch each byte as few times as
# possible, with unit-stride inner loops that the compiler vectorises. The module's docstring explains
# the strategy:

# %%
print(depthwise_numba.__doc__)

# %% [markdown]
# The compiled functions themselves (everything decorated with `@njit`):

# %%
compiled = {name: fn for name, fn in vars(depthwise_numba).items() if hasattr(fn, "py_func")}
for name, fn in compiled.items():
    print(inspect.getsource(fn.py_func))

# %% [markdown]
# The public functions take plain arrays (no autograd): `depthwise_forward(x, w, stride, padding, dilation)`
# with `w` of shape $(C, k, k)$, and the two gradients below. `F.conv2d` picks them automatically
# (`backend=None`) for any depthwise convolution.

# %%
xs = rng.standard_normal((2, 3, 7, 7)).astype(np.float32)
ws = rng.standard_normal((3, 5, 5)).astype(np.float32)
y_numba = depthwise_numba.depthwise_forward(xs, ws, stride=(2, 2), padding=(2, 2))
y_im2col = F.conv2d(mm.Tensor(xs), mm.Tensor(ws[:, None]), stride=2, padding=2, groups=3, backend="im2col").data
print("numba vs im2col, max difference:", np.abs(y_numba - y_im2col).max())

# %% [markdown]
# ## 5. The backward pass
#
# Differentiate $y_{n,c,i,j} = \sum_{u,v} w_{c,u,v}\, x_{p\;n,c,is+u,js+v}$ with $g = \partial L/\partial y$:
#
# * **weight**: each tap collects, over the batch and all output positions, the upstream gradient times
#   the input value it saw,
#   $$ \frac{\partial L}{\partial w_{c,u,v}} = \sum_{n,i,j} g_{n,c,i,j}\; x_{p\;n,c,\,is+u,\,js+v} ; $$
# * **input**: each output gradient is sent back to the $k^2$ pixels of its window, weighted by the tap,
#   $$ \frac{\partial L}{\partial x_{p\;n,c,\,is+u,\,js+v}} \mathrel{+}= g_{n,c,i,j}\; w_{c,u,v}, $$
#   then the padding is cut off. For stride 1 this is a convolution of $g$ with the kernel flipped.
#
# ### Exercise — the weight gradient
#
# `x` is $(N, C, H, W)$, `gy` is $(N, C, O_H, O_W)$; return $(C, k, k)$. Loop over the $k^2$ taps only and
# use a strided slice of the padded input for each (as in lesson 2's im2col).

# %% tags=["solution"]
def depthwise_backward_weight(x, gy, kernel_size, stride, padding):
    ### BEGIN SOLUTION
    k, s, p = kernel_size, stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    oh, ow = gy.shape[2:]
    gw = np.empty((x.shape[1], k, k), dtype=x.dtype)
    for u in range(k):
        for v in range(k):
            window = xp[:, :, u:u + s * (oh - 1) + 1:s, v:v + s * (ow - 1) + 1:s]
            gw[:, u, v] = (gy * window).sum(axis=(0, 2, 3))
    return gw
    ### END SOLUTION

# %%
from minimix.lessons import check_depthwise_backward_weight

check_depthwise_backward_weight(depthwise_backward_weight)

# %% [markdown]
# ### Exercise — the input gradient
#
# `gy` is $(N, C, O_H, O_W)$, `w` is $(C, k, k)$, `input_hw` is $(H, W)$; return $(N, C, H, W)$.
# Accumulate into a zero *padded* array, one strided slab per tap, then crop.

# %% tags=["solution"]
def depthwise_backward_input(gy, w, input_hw, stride, padding):
    ### BEGIN SOLUTION
    n, c, oh, ow = gy.shape
    k, s, p = w.shape[-1], stride, padding
    h, wd = input_hw
    gxp = np.zeros((n, c, h + 2 * p, wd + 2 * p), dtype=gy.dtype)
    for u in range(k):
        for v in range(k):
            gxp[:, :, u:u + s * (oh - 1) + 1:s, v:v + s * (ow - 1) + 1:s] += gy * w[None, :, u, v, None, None]
    return gxp[:, :, p:p + h, p:p + wd]
    ### END SOLUTION

# %%
from minimix.lessons import check_depthwise_backward_input

check_depthwise_backward_input(depthwise_backward_input)

# %% [markdown]
# ## 6. Benchmark: Numba vs im2col
#
# Forward + both gradients of a depthwise convolution on a MixNet-like map (64 channels, 32x32), for
# each kernel size. The first call of each Numba kernel compiles it (or loads it from the cache), so we
# warm up before timing. The last columns are what the Numba kernels reach: bandwidth, counting the
# minimum traffic (x, y, dL/dy, dL/dx each read or written once per pass), and arithmetic rate.

# %%
n_batch = 8 if FAST else 32
x32 = rng.standard_normal((n_batch, 64, 32, 32)).astype(np.float32)


def depthwise_step(x, w, backend):
    xt, wt = mm.Tensor(x, requires_grad=True), mm.Tensor(w, requires_grad=True)
    F.conv2d(xt, wt, padding=w.shape[-1] // 2, groups=x.shape[1], backend=backend).backward(np.ones_like(x))


kernel_sizes = [3, 5, 7, 9]
results = {"numba": [], "im2col": []}
print(f"x {x32.shape} float32;  forward + backward, best of 3")
for k in kernel_sizes:
    wk = rng.standard_normal((64, 1, k, k)).astype(np.float32)
    depthwise_step(x32, wk, "numba")  # warm-up: compile or load from the cache
    for backend in results:
        results[backend].append(best_time(lambda: depthwise_step(x32, wk, backend), repeat=2 if FAST else 3))
    traffic = 6 * x32.nbytes  # forward: read x, write y; input grad: read gy, write gx; weight grad: read x, gy
    flops = 3 * 2 * k * k * x32.size  # three passes of k*k multiply-adds per element
    seconds = results["numba"][-1]
    print(f"k={k}:  numba {seconds * 1e3:7.1f} ms   im2col {results['im2col'][-1] * 1e3:7.1f} ms   "
          f"speed-up {results['im2col'][-1] / seconds:4.1f}x   numba ~{traffic / seconds / 1e9:5.1f} GB/s, "
          f"~{flops / seconds / 1e9:5.1f} GFLOP/s")

for backend, seconds in results.items():
    plt.plot(kernel_sizes, np.array(seconds) * 1e3, "o-", label=backend)
plt.xlabel("kernel size k")
plt.ylabel("forward + backward (ms)")
plt.xticks(kernel_sizes)
plt.title(f"depthwise convolution, x {x32.shape}")
plt.legend()
plt.show()

# %% [markdown]
# What to look for:
#
# * im2col's time grows like $k^2$ (its copy is $k^2$ times the input), so its disadvantage grows with the
#   kernel; the direct kernels keep a plane in cache while all $k^2$ taps are applied.
# * Compare the small kernels' GB/s with the copy bandwidth measured above (they are judged by the bytes
#   they move), and the large kernels' GFLOP/s with the matmul peak.
# * Timings on a shared or busy machine move a lot (Numba's threads suffer most when other processes
#   compete for the cores): re-run the cell and compare ratios, not absolute numbers.
#
# ## Summary
#
# * Depthwise convolution does $k^2$ multiply-adds per output: an arithmetic intensity of about $k^2/4$
#   FLOP/byte; for 3x3 that is far below the ridge point, so its speed is set by memory traffic.
# * im2col multiplies the traffic by $k^2$ and gives BLAS nothing to reuse; a direct, compiled loop wins.
# * Both gradients are again "shifted products" — the weight gradient correlates $x$ with $g$, the input
#   gradient scatters $g$ back through the kernel.
#
# Next: [Lesson 4](04_mixconv.ipynb) — several kernel sizes in one depthwise layer.
