# %% [markdown]
# # Lesson 1 — Tensors and reverse-mode autograd
#
# Every network in this course is trained by gradient descent, and every gradient is computed by
# **reverse-mode automatic differentiation** ("backprop"). This lesson opens up minimix's engine
# (`minimix/tensor.py`, about 300 lines) and shows that it is nothing more than the chain rule
# applied in the right order.
#
# You will:
# 1. build a tiny computation graph and differentiate it **by hand**,
# 2. let `backward()` do the same and compare,
# 3. check gradients numerically with `minimix.gradcheck` (and against PyTorch if it is installed),
# 4. write the backward pass of two operations yourself (exercises, checked automatically).

# %%
%matplotlib inline
import numpy as np
import matplotlib.pyplot as plt

import minimix as mm
from minimix.lessons import fast_mode

FAST = fast_mode()  # MINIMIX_FAST=1 shrinks the expensive parts (nothing is expensive in this lesson)

# %% [markdown]
# ## 1. Tensors
#
# A `minimix.Tensor` wraps a NumPy array (`.data`) and, if `requires_grad=True`, will receive a
# gradient (`.grad`, also a NumPy array). NumPy arrays keep their dtype (we use `float64` for
# checking gradients). Python values follow PyTorch's `torch.tensor`: floats become `float32`,
# ints `int64` (so `mm.Tensor([1, 2])` holds integers: class labels, indices) and bools `bool`.
# Only `float32` and `float64` tensors can require gradients. `x.size()` is the shape, as in
# PyTorch (NumPy's element count is `x.numel()`), and `x.to(np.float32)` is a cast the gradient
# flows back through.

# %%
a = mm.Tensor(np.array([1.5, -0.5]), requires_grad=True)  # float64
b = mm.Tensor([2.0, 3.0])                                   # float32, a constant
labels = mm.Tensor([1, 0, 2])                               # int64
print(a, a.dtype, a.size(), a.numel())
print(b, b.dtype)
print(labels, labels.dtype)

# %% [markdown]
# ## 2. A graph, by hand
#
# Take two scalars $x, w$ and the function
#
# $$ L = \big(\sigma(w x) - 1\big)^2, \qquad \sigma(z) = \frac{1}{1 + e^{-z}} . $$
#
# Forward, we name every intermediate value:
#
# $$ z = w x, \qquad s = \sigma(z), \qquad d = s - 1, \qquad L = d^2 . $$
#
# Reverse mode walks back from $L$ and computes the **adjoint** $\bar v = \partial L / \partial v$ of
# every intermediate $v$, each from the adjoint of the value it feeds into, times one *local* derivative:
#
# $$ \bar L = 1, \quad \bar d = 2d \,\bar L, \quad \bar s = \bar d, \quad
#    \bar z = \sigma(z)\,(1 - \sigma(z))\, \bar s, \quad \bar w = x\, \bar z, \quad \bar x = w\, \bar z . $$
#
# One backward sweep gives the gradient with respect to **all** inputs at the cost of about one
# forward pass — that is why reverse mode is the right tool when there are millions of parameters
# and one scalar loss.

# %%
x_value, w_value = 0.7, -1.3

# forward, by hand
z = w_value * x_value
s = 1 / (1 + np.exp(-z))
d = s - 1
L = d ** 2

# backward, by hand
L_bar = 1.0
d_bar = 2 * d * L_bar
s_bar = d_bar
z_bar = s * (1 - s) * s_bar
w_bar = x_value * z_bar
x_bar = w_value * z_bar
print(f"L = {L:.6f}   dL/dw = {w_bar:.6f}   dL/dx = {x_bar:.6f}")

# %% [markdown]
# Now the same with minimix. Each operation on tensors that require gradients records a
# `Function` node on its output (`tensor._ctx`) that remembers its inputs (`parents`).
# `backward()` orders the graph topologically and calls every node's `backward` once.

# %%
x = mm.Tensor(np.array(x_value), requires_grad=True)
w = mm.Tensor(np.array(w_value), requires_grad=True)
loss = (mm.ops.sigmoid(w * x) - 1) ** 2
loss.backward()
print(f"L = {loss.item():.6f}   dL/dw = {w.grad:.6f}   dL/dx = {x.grad:.6f}")
assert np.isclose(w.grad, w_bar) and np.isclose(x.grad, x_bar)

# %% [markdown]
# The graph is an ordinary Python data structure. Let us walk it from the loss back to the leaves:

# %%
def show_graph(tensor, depth=0):
    """Print each node with the Function that produced it (leaves have none)."""
    kind = type(tensor._ctx).__name__ if tensor._ctx is not None else "leaf"
    print("    " * depth + f"{kind:8s} shape={tensor.shape} value={np.round(tensor.data, 4)}")
    if tensor._ctx is not None:
        for parent in tensor._ctx.parents:
            show_graph(parent, depth + 1)


show_graph((mm.ops.sigmoid(w * x) - 1) ** 2)

# %% [markdown]
# ## 3. Broadcasting and the sum rule
#
# When an input is used in several places, or broadcast to a larger shape, its gradient is the
# **sum** of the contributions. A bias $b$ of shape $(3,)$ added to every row of $X$ $(2, 3)$
# receives the column sums of the upstream gradient: $\bar b_j = \sum_i \bar Y_{ij}$.
# The engine does this summing for every op (`minimix.tensor.unbroadcast`).

# %%
X = mm.Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
bias = mm.Tensor(np.zeros(3), requires_grad=True)
Y = X * X + bias                     # bias broadcast over the rows; X used twice
upstream = np.array([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]])
Y.backward(upstream)                 # a non-scalar output needs its upstream gradient
print("dL/dbias =", bias.grad, "(column sums of the upstream gradient)")
print("dL/dX =\n", X.grad, "\n(= 2 X * upstream: the two uses of X add up)")

# %% [markdown]
# ## 4. Checking gradients numerically
#
# A backward pass can be wrong in ways that still train (badly). The cure is the **central
# difference**: for a random projection $v$ of the output,
#
# $$ \frac{\partial (v \cdot f)}{\partial x_i} \approx \frac{v\cdot f(x + \epsilon e_i) - v \cdot f(x - \epsilon e_i)}{2\epsilon}, $$
#
# whose error is $O(\epsilon^2)$. `minimix.gradcheck` compares that with the analytic gradient for
# every input element (use `float64` and small shapes: it costs two forward passes per element).

# %%
rng = np.random.default_rng(0)
A = mm.Tensor(rng.standard_normal((3, 4)), requires_grad=True)
B = mm.Tensor(rng.standard_normal((4, 2)), requires_grad=True)


def layer(a, b):
    return mm.ops.tanh(a @ b).exp() * 0.5


print("gradcheck passed:", mm.gradcheck(layer, [A, B]))

# %% [markdown]
# The error of a central difference as a function of $\epsilon$: too large and the $O(\epsilon^2)$
# truncation error dominates, too small and floating-point cancellation does. This is why
# gradcheck needs `float64`.

# %%
f, df = np.sin, np.cos
x0 = 0.6
eps = np.logspace(-14, -1, 60)
for dtype in (np.float32, np.float64):
    e = eps.astype(dtype)
    xs = dtype(x0)
    numeric = (f(xs + e) - f(xs - e)) / (2 * e)
    plt.loglog(eps, np.abs(numeric - df(x0)) + 1e-17, label=str(np.dtype(dtype)))
plt.xlabel(r"$\epsilon$")
plt.ylabel("|numeric - exact|")
plt.title("central-difference error of d sin(x)/dx")
plt.legend()
plt.show()

# %% [markdown]
# ### The same check against PyTorch (optional)
#
# minimix's test-suite checks every op against PyTorch. If PyTorch is installed you can do it here too.

# %%
try:
    import torch
except ImportError:
    torch = None
    print("PyTorch is not installed: skipping the comparison (pip install torch to run it)")

if torch is not None:
    ta = torch.tensor(A.data, requires_grad=True)
    tb = torch.tensor(B.data, requires_grad=True)
    (torch.tanh(ta @ tb).exp() * 0.5).backward(torch.ones(3, 2, dtype=torch.float64))
    A.grad = B.grad = None
    layer(A, B).backward(np.ones((3, 2)))
    print("max |dA minimix - dA torch| =", np.abs(A.grad - ta.grad.numpy()).max())
    print("max |dB minimix - dB torch| =", np.abs(B.grad - tb.grad.numpy()).max())

# %% [markdown]
# ## 5. Exercise — the backward of the sigmoid
#
# With $s = \sigma(x)$, show that $\dfrac{ds}{dx} = s\,(1 - s)$. Then write `sigmoid_backward(x, g)`
# that returns $\bar x = g \odot \sigma(x) \odot (1 - \sigma(x))$ element-wise, where $g = \bar s$ is the
# upstream gradient.
#
# Careful with the formula $1 / (1 + e^{-x})$: `np.exp` overflows to `inf` once its argument exceeds the
# logarithm of the largest number of the dtype, and how far that is depends on the dtype. The cell below
# computes both limits and tries the naive formulas for $\sigma$ and $\sigma'$ around them.

# %%
import warnings

for dtype in (np.float32, np.float64):
    limit = np.log(np.finfo(dtype).max)  # np.exp(t) is inf for every t beyond this
    print(f"{np.dtype(dtype).name}: np.exp overflows beyond {limit:.1f}")
    for value in (-40, -100, -1000):
        x_far = dtype(value)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            naive_s = 1 / (1 + np.exp(-x_far))                    # sigma(x)
            naive_ds = np.exp(-x_far) / (1 + np.exp(-x_far)) ** 2  # sigma'(x), written out
        warned = "; ".join(sorted({str(w.message) for w in caught})) or "no warning"
        print(f"  x = {value:6d}: naive sigma = {naive_s:.3g}, naive sigma' = {naive_ds:.3g}   ({warned})")

# %% [markdown]
# Read the lines above: in each dtype the naive formulas are fine while $-x$ stays below the printed limit;
# beyond it `np.exp(-x)` is `inf`, NumPy only prints a `RuntimeWarning`, $\sigma$ still comes out as the
# right value 0 (since $1/\infty = 0$), but $\sigma'$ written out becomes $\infty/\infty$ = `nan`. Writing
# $\sigma$ in a form that never overflows (e.g. with `np.tanh`, or `np.exp(-np.abs(x))`) avoids both. The
# check uses $x = \pm 100$ in float32 and $x = \pm 1000$ in float64, beyond both limits, and treats an
# overflow as a failure (it runs your function under `np.errstate(over="raise")`).

# %% tags=["solution"]
def sigmoid_backward(x, g):
    """dL/dx for s = sigmoid(x), given the upstream gradient g = dL/ds (same shape as x)."""
    ### BEGIN SOLUTION
    s = 0.5 * (1 + np.tanh(x / 2))  # = 1 / (1 + exp(-x)), without overflow
    return g * s * (1 - s)
    ### END SOLUTION

# %%
from minimix.lessons import check_sigmoid_backward

check_sigmoid_backward(sigmoid_backward)

# %% [markdown]
# ## 6. Exercise — a new op as a `Function`
#
# Every op in minimix is a subclass of `minimix.Function` with two methods on NumPy arrays:
#
# * `forward(self, x)` computes the output and saves on `self` what the backward needs;
# * `backward(self, g)` receives $g = \bar y$ and returns a **tuple** with one gradient per input.
#
# Write **SiLU** (also called swish, MixNet's activation): $y = x\,\sigma(x)$, with
# $\dfrac{dy}{dx} = \sigma(x)\,\big(1 + x\,(1 - \sigma(x))\big)$. `MySiLU.apply(t)` then runs it on tensors.
# The check compares values and gradients with `minimix.ops.silu`.

# %% tags=["solution"]
class MySiLU(mm.Function):
    def forward(self, x):
        ### BEGIN SOLUTION
        self.x = x
        self.s = 0.5 * (1 + np.tanh(x / 2))
        return x * self.s
        ### END SOLUTION

    def backward(self, g):
        ### BEGIN SOLUTION
        s = self.s
        return (g * s * (1 + self.x * (1 - s)),)
        ### END SOLUTION

# %%
from minimix.lessons import check_op, yours_or_library

silu_ok = check_op(MySiLU.apply, mm.ops.silu)
if silu_ok:
    print("and gradcheck agrees:", mm.gradcheck(MySiLU.apply, [mm.Tensor(rng.standard_normal(5), requires_grad=True)]))
silu = yours_or_library(silu_ok, MySiLU.apply, mm.ops.silu, name="MySiLU")  # what section 7 uses

# %% [markdown]
# ## 7. Autograd at work: fitting a curve
#
# With gradients for free, learning is a loop: forward, `backward()`, step against the gradient.
# Here a two-layer network with your SiLU fits $\sin(3x)$ — plain gradient descent on minimix tensors.
# (Until `MySiLU` passes its check, `silu` is `minimix.ops.silu`: the cell above says so.)

# %%
mm.manual_seed(0)
xs = np.linspace(-1, 1, 64).reshape(-1, 1)
ys = np.sin(3 * xs)
W1 = mm.Tensor(rng.standard_normal((1, 32)), requires_grad=True)
b1 = mm.Tensor(np.zeros(32), requires_grad=True)
W2 = mm.Tensor(rng.standard_normal((32, 1)) / np.sqrt(32), requires_grad=True)
params = [W1, b1, W2]
losses = []
for step in range(300 if FAST else 2000):
    prediction = silu(mm.Tensor(xs) @ W1 + b1) @ W2
    loss = ((prediction - ys) ** 2).mean()
    for p in params:
        p.grad = None
    loss.backward()
    for p in params:
        p.data -= 0.1 * p.grad
    losses.append(loss.item())

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
ax1.semilogy(losses)
ax1.set(xlabel="step", ylabel="mean squared error", title="training loss")
ax2.plot(xs, ys, label="sin(3x)")
ax2.plot(xs, prediction.data, "--", label="network")
ax2.legend()
ax2.set_title("fit")
plt.show()

# %% [markdown]
# ## Summary
#
# * A `Tensor` records, for every op, a `Function` node with its parents; `backward()` visits the
#   nodes in reverse topological order and multiplies adjoints by local derivatives.
# * Gradients of reused or broadcast inputs **add up**.
# * `minimix.gradcheck` (central differences, `float64`) is how you test a new backward.
#
# Next: [Lesson 2](02_convolution.ipynb) — the convolution, the op that dominates a CNN, three ways.
