# %% [markdown]
# # Lesson 2 — Convolution three ways
#
# A convolutional network spends nearly all its time in convolutions. minimix computes them with
# interchangeable **backends** that give identical results:
#
# | backend | where | idea |
# |---|---|---|
# | `"naive"` | `minimix/kernels/naive.py` | the definition, as Python loops |
# | `"im2col"` | `minimix/kernels/im2col.py` | copy every window into a matrix, then **one** matrix product |
# | `"numba"` | `minimix/kernels/depthwise_numba.py` | compiled loops for depthwise convolutions (lesson 3) |
#
# This lesson derives the first two, draws the im2col matrix, and times them.
#
# The first code cell calls `minimix.perf.configure()`, which sets this Python process up the way minimix
# trains, so that the timings below show its real speed: BLAS on one thread (minimix splits each batch
# over the cores itself), Numba's TBB thread pool, and an allocator that reuses large arrays. These are
# process-wide settings, so minimix never changes them on import; the call must come before any kernel runs.

# %%
%matplotlib inline
import inspect

import numpy as np
import matplotlib.pyplot as plt

import minimix as mm
import minimix.nn.functional as F
import minimix.perf
from minimix.kernels import im2col as im2col_kernels
from minimix.kernels import naive
from minimix.lessons import best_time, fast_mode

FAST = fast_mode()
minimix.perf.configure()  # threads, BLAS, allocator: see above
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The definition
#
# Input $x$ of shape $(N, C, H, W)$, weight $w$ of shape $(O, C, K_h, K_w)$, stride $s$, zero padding $p$,
# dilation $d$. With $x_p$ the padded input, output channel $o$ at position $(i, j)$ is a dot product
# between the kernel and one **window** of the input:
#
# $$ y_{n,o,i,j} = \sum_{c=0}^{C-1} \sum_{u=0}^{K_h-1} \sum_{v=0}^{K_w-1} w_{o,c,u,v}\; x_{p\;n,\,c,\; i s_h + u d_h,\; j s_w + v d_w} $$
#
# (deep-learning "convolution" is a cross-correlation: the kernel is not flipped). Along each axis the
# output has
#
# $$ O_H = \left\lfloor \frac{H + 2p_h - d_h (K_h - 1) - 1}{s_h} \right\rfloor + 1 $$
#
# positions. The naive backend is exactly this, written as loops:

# %%
print(inspect.getsource(naive.conv2d_forward))

# %% [markdown]
# ### Exercise — the output size
#
# Write `output_size(size, kernel, stride, padding, dilation)` from the formula above.

# %% tags=["solution"]
def output_size(size, kernel, stride, padding, dilation):
    ### BEGIN SOLUTION
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    ### END SOLUTION

# %%
from minimix.lessons import check_conv_output_size

check_conv_output_size(output_size)

# %% [markdown]
# ## 2. im2col: convolution as one matrix product
#
# The loop computes $N \cdot O \cdot O_H \cdot O_W$ small dot products, each with the same few weights.
# **im2col** ("image to columns") copies every window into one column of a matrix
#
# $$ \text{cols} \in \mathbb{R}^{(C K_h K_w) \times (N O_H O_W)}, $$
#
# so that all the dot products become one matrix product with the weight matrix
# $W \in \mathbb{R}^{O \times (C K_h K_w)}$:
#
# $$ Y = W \,\text{cols} \in \mathbb{R}^{O \times (N O_H O_W)} . $$
#
# Matrix products are what BLAS libraries run at a large fraction of the CPU's peak. The price is
# memory: every input pixel is copied up to $K_h K_w$ times.
#
# To *see* the matrix, convolve an image whose pixels are numbered 1, 2, 3, ... (so that 0 can only be
# padding).

# %%
x_index = np.arange(1, 2 * 4 * 4 + 1, dtype=np.float64).reshape(1, 2, 4, 4)  # 2 channels of 4x4
cols = im2col_kernels.im2col(x_index, (3, 3), (1, 1), (1, 1), (1, 1))  # 3x3, stride 1, padding 1
print("cols array:", cols.shape, "= (C, KH, KW, N, OH, OW)")
matrix = cols.reshape(2 * 3 * 3, -1)
print("as a matrix:", matrix.shape, "= (C*KH*KW, N*OH*OW)")

fig, ax = plt.subplots(figsize=(12, 6))
ax.imshow(np.where(matrix == 0, np.nan, matrix), cmap="viridis")
for (r, c), v in np.ndenumerate(matrix):
    ax.text(c, r, "pad" if v == 0 else f"{v:.0f}", ha="center", va="center", fontsize=7,
            color="black" if v == 0 else "white")
ax.set_xlabel("column = output position (i, j) of the 4x4 output")
ax.set_ylabel("row = (channel, kernel row u, kernel column v)")
ax.set_yticks(range(18), [f"c{c} u{u} v{v}" for c in range(2) for u in range(3) for v in range(3)])
ax.set_title("im2col matrix: each entry is the number of the input pixel it copies (channel 1: 17-32)")
plt.show()

# %% [markdown]
# Read a column: it is the 3x3 window of channel 0, then of channel 1, around one output position
# (zero-padding where the window leaves the image). Read a row: one kernel tap $(c, u, v)$ slid over
# the whole image — the image shifted by $(u-1, v-1)$.
#
# Now check that $W\,\text{cols}$ is the convolution:

# %%
x = rng.standard_normal((3, 4, 9, 9))
w = rng.standard_normal((5, 4, 3, 3))
cols = im2col_kernels.im2col(x, (3, 3), (2, 2), (1, 1), (1, 1))  # stride 2, padding 1
C, KH, KW, N, OH, OW = cols.shape
y_matrix = w.reshape(5, -1) @ cols.reshape(C * KH * KW, N * OH * OW)  # (O, N*OH*OW)
y = y_matrix.reshape(5, N, OH, OW).transpose(1, 0, 2, 3)              # back to NCHW
y_reference = F.conv2d(mm.Tensor(x), mm.Tensor(w), stride=2, padding=1, backend="naive").data
print("max |W cols - naive conv| =", np.abs(y - y_reference).max())

# %% [markdown]
# ### Exercise — im2col for one image
#
# Write `im2col(x, kernel_size, stride, padding)` for **one** image `x` of shape $(C, H, W)$ and a square
# kernel, returning the $(C k^2) \times (O_H O_W)$ matrix whose row $c k^2 + u k + v$ holds
# $x_p[c,\, i s + u,\, j s + v]$ at column $i\,O_W + j$.
#
# Hint: no need to loop over output positions — loop over the $k^2$ kernel offsets $(u, v)$ and take a
# strided slice of the padded image for each, e.g. `xp[:, u : u + s*(OH-1) + 1 : s, v : ...]`.

# %% tags=["solution"]
def im2col(x, kernel_size, stride, padding):
    ### BEGIN SOLUTION
    c, h, w = x.shape
    k, s, p = kernel_size, stride, padding
    xp = np.pad(x, ((0, 0), (p, p), (p, p)))
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = np.empty((c, k, k, oh, ow), dtype=x.dtype)
    for u in range(k):
        for v in range(k):
            out[:, u, v] = xp[:, u:u + s * (oh - 1) + 1:s, v:v + s * (ow - 1) + 1:s]
    return out.reshape(c * k * k, oh * ow)
    ### END SOLUTION

# %%
from minimix.lessons import check_im2col

check_im2col(im2col)

# %% [markdown]
# ## 3. The backward pass, in matrix form
#
# With $G = \partial L / \partial Y$ as an $O \times (N O_H O_W)$ matrix, the product rule for $Y = W\,\text{cols}$ gives
#
# $$ \frac{\partial L}{\partial W} = G\, \text{cols}^\top, \qquad \frac{\partial L}{\partial\, \text{cols}} = W^\top G . $$
#
# The second one is a gradient for the *copies*; each input pixel receives the sum over all its copies.
# That scatter-add is **col2im**, the adjoint (transpose) of im2col: for any $x$ and any matrix $c$,
# $\langle \text{im2col}(x), c\rangle = \langle x, \text{col2im}(c)\rangle$.

# %%
geometry = ((2, 2), (1, 1), (1, 1))  # stride, padding, dilation
c_random = rng.standard_normal(cols.shape)
lhs = np.sum(im2col_kernels.im2col(x, (3, 3), *geometry) * c_random)
rhs = np.sum(x * im2col_kernels.col2im(c_random, x.shape[2:], *geometry))
print(f"<im2col(x), c> = {lhs:.10f}\n<x, col2im(c)> = {rhs:.10f}")

# %% [markdown]
# All three backends implement the same forward *and* backward, so the gradients agree too (and
# `gradcheck` confirms them):

# %%
xt = mm.Tensor(rng.standard_normal((2, 3, 6, 5)), requires_grad=True)
wt = mm.Tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
grads = {}
for backend in ("naive", "im2col"):
    xt.grad = wt.grad = None
    F.conv2d(xt, wt, stride=2, padding=1, backend=backend).sum().backward()
    grads[backend] = (xt.grad.copy(), wt.grad.copy())
print("dL/dx naive vs im2col:", np.abs(grads["naive"][0] - grads["im2col"][0]).max())
print("dL/dw naive vs im2col:", np.abs(grads["naive"][1] - grads["im2col"][1]).max())
print("gradcheck (im2col):", mm.gradcheck(lambda a, b: F.conv2d(a, b, stride=2, padding=1, backend="im2col"),
                                          [xt, wt]))

# %% [markdown]
# ## 4. Timing the backends
#
# `F.conv2d(..., backend=...)` picks a backend for one call; the context manager
# `F.conv_backend(name)` switches every convolution inside a block (a whole model, for example).
# These backends are the implementations of the op `conv2d` in minimix's registry of implementations,
# `minimix.backends`, next to the fast ones that lesson 3 builds (Numba kernels for depthwise
# convolutions, one product per image for 1x1): `F.conv_backend("naive")` is
# `mm.use_backend(conv2d="naive")`, and `mm.use_backend("reference")` runs every op on the NumPy code.
# The naive loop runs one Python iteration per output value, so we time it on a small problem only.

# %%
print("\n".join(line for line in mm.backends.table().splitlines() if line.startswith(("op ", "conv2d"))))


def forward_backward(x, w, backend):
    xt, wt = mm.Tensor(x, requires_grad=True), mm.Tensor(w, requires_grad=True)
    with F.conv_backend(backend):
        F.conv2d(xt, wt, padding=1).sum().backward()


small = (rng.standard_normal((2, 8, 12, 12)).astype(np.float32), rng.standard_normal((8, 8, 3, 3)).astype(np.float32))
big = (rng.standard_normal((8 if FAST else 32, 32, 32, 32)).astype(np.float32),
       rng.standard_normal((32, 32, 3, 3)).astype(np.float32))
times = {
    "naive, small": best_time(lambda: forward_backward(*small, "naive"), repeat=1),
    "im2col, small": best_time(lambda: forward_backward(*small, "im2col")),
    "im2col, big": best_time(lambda: forward_backward(*big, "im2col"), repeat=2),
}
macs = {"small": 2 * 8 * 8 * 9 * 12 * 12, "big": len(big[0]) * 32 * 32 * 9 * 32 * 32}
for name, seconds in times.items():
    size = name.split(", ")[1]
    # forward + two gradients = 3x the forward's multiply-adds, 2 FLOPs each
    print(f"{name:14s} {seconds * 1e3:9.2f} ms   {3 * 2 * macs[size] / seconds / 1e9:7.3f} GFLOP/s")

plt.barh(list(times), [t * 1e3 for t in times.values()])
plt.xscale("log")
plt.xlabel("forward + backward time (ms, log scale)")
plt.title(f"small: x (2, 8, 12, 12); big: x {big[0].shape}, 3x3 conv, 32 -> 32 channels")
plt.show()

# %% [markdown]
# The same arithmetic runs orders of magnitude faster as one matrix product. But im2col's matrix is
# $K_h K_w$ times larger than the input — for the big problem above:

# %%
n_bytes = big[0].nbytes
print(f"input {n_bytes / 2**20:.1f} MiB -> im2col matrix {9 * n_bytes / 2**20:.1f} MiB (x9 for 3x3, x81 for 9x9)")

# %% [markdown]
# That is why minimix's im2col backend processes a batch a few images at a time through one reused buffer.
#
# ## Summary
#
# * A convolution is a dot product between the kernel and each window of the padded input.
# * im2col turns all of them into one matrix product $Y = W\,\text{cols}$; the backward is two more
#   matrix products plus col2im (the adjoint scatter-add).
# * Speed comes from BLAS; the cost is a $K_h K_w$-fold copy of the input.
#
# Next: [Lesson 3](03_depthwise_numba.ipynb) — a convolution where this trick does **not** pay: depthwise.
