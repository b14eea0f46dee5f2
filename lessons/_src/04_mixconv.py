# %% [markdown]
# # Lesson 4 — MixConv: several kernel sizes in one depthwise layer
#
# Tan & Le (2019) asked a simple question about depthwise convolutions: **which kernel size?** Large
# kernels see more context, small ones keep detail — and in their experiments (MobileNets on ImageNet)
# accuracy *rose* as the kernels grew from 3x3 to about 7x7, then *fell* once they grew beyond about 9x9,
# while the cost kept growing. Their answer, **MixConv**, is to use several sizes at once: split the channels into groups and
# give each group its own kernel size.
#
# In this lesson: the split rules, the parameter and FLOP arithmetic, minimix's `MixConv2d`, and a
# miniature version of the paper's experiment.
#
# The first code cell calls `minimix.perf.configure()`, which sets this Python process up the way minimix
# trains, so that the timed training runs below show its real speed: BLAS on one thread (minimix splits
# each batch over the cores itself), Numba's TBB thread pool, and an allocator that reuses large arrays.
# These are process-wide settings, so minimix never changes them on import; the call must come before any
# kernel runs.

# %%
%matplotlib inline
import time

import numpy as np
import matplotlib.pyplot as plt

import minimix as mm
import minimix.nn.functional as F
import minimix.perf
from minimix import nn, viz
from minimix.lessons import fast_mode, load_data
from minimix.models import summary

FAST = fast_mode()
minimix.perf.configure()  # threads, BLAS, allocator: see above
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The operation
#
# Split the $C$ channels of $x$ into $g$ consecutive groups of sizes $c_1, \dots, c_g$
# ($\sum_i c_i = C$), convolve group $i$ depthwise with a $k_i \times k_i$ kernel (padding $(k_i-1)/2$
# keeps the size), and concatenate:
#
# $$ \text{MixConv}(x) = \operatorname{concat}\big(\,\text{DW}_{k_1}(x_1),\; \dots,\; \text{DW}_{k_g}(x_g)\,\big) . $$
#
# With one group it is a plain depthwise convolution.
#
# ## 2. Splitting the channels
#
# The paper considers two rules:
#
# * **equal**: $c_i = \lfloor C/g \rfloor$, the first group takes the remainder (this is what the
#   reference code and MixNet use);
# * **exponential**: group $i$ (from 1) gets $\lfloor C / 2^i \rfloor$ channels, the last group the rest —
#   so small kernels get most channels.

# %%
for rule in ("equal", "exponential"):
    print(f"{rule:12s} 32 channels over 4 groups -> {nn.split_channels(32, 4, rule)}")
    print(f"{rule:12s} 40 channels over 3 groups -> {nn.split_channels(40, 3, rule)}")

# %% [markdown]
# ### Exercise — `split_channels`
#
# Write `split_channels(channels, num_groups, split)` for both rules (`split` is `"equal"` or
# `"exponential"`), returning a list of ints.

# %% tags=["solution"]
def split_channels(channels, num_groups, split):
    ### BEGIN SOLUTION
    if split == "equal":
        sizes = [channels // num_groups] * num_groups
        sizes[0] += channels - sum(sizes)
        return sizes
    sizes = [channels // 2 ** i for i in range(1, num_groups)]
    return sizes + [channels - sum(sizes)]
    ### END SOLUTION

# %%
from minimix.lessons import check_split_channels

check_split_channels(split_channels)

# %% [markdown]
# ## 3. `nn.MixConv2d`
#
# minimix's layer keeps one depthwise `Conv2d` per group in `convs` (weight $(c_i, 1, k_i, k_i)$), and its
# `forward` is exactly the diagram above: split, one depthwise convolution per group, concatenate
# (read it: `minimix/nn/mixconv.py`). On minimix's fast path the same numbers come from one op that
# convolves every group in place, without the split and concatenate copies (`minimix.fast.mixconv`,
# listed by `mm.backends.print_table()`). Doing it by hand gives the same result:

# %%
mix = nn.MixConv2d(24, kernel_sizes=(3, 5, 7))
print(mix)
for conv in mix.convs:
    print("  group:", conv.weight.shape)

x = mm.Tensor(rng.standard_normal((2, 24, 10, 10)).astype(np.float32))
parts = mm.split(x, mix.splits, axis=1)
by_hand = mm.cat([F.conv2d(p, conv.weight, padding=conv.padding, groups=p.shape[1])
                  for p, conv in zip(parts, mix.convs)], axis=1)
print("MixConv2d == split -> depthwise per group -> concat:", np.allclose(mix(x).data, by_hand.data, atol=1e-6))

# %% [markdown]
# The layer's kernels at initialisation, one row per group (`minimix.viz.plot_mixconv_kernels`):

# %%
viz.plot_mixconv_kernels(mix);

# %% [markdown]
# ## 4. What it costs
#
# A depthwise layer has $\sum_i c_i k_i^2$ parameters and $H W \sum_i c_i k_i^2$ multiply-adds (stride 1).
# With the equal split over $(3, 5, 7, 9)$ the average $k^2$ is $(9 + 25 + 49 + 81)/4 = 41$: about half of a
# 9x9 layer, for a layer that still contains 9x9 kernels.
#
# ### Exercise — parameters and multiply-adds of a MixConv layer
#
# Use your `split_channels`.

# %% tags=["solution"]
def mixconv_params(channels, kernel_sizes, split):
    ### BEGIN SOLUTION
    sizes = split_channels(channels, len(kernel_sizes), split)
    return sum(c * k * k for c, k in zip(sizes, kernel_sizes))
    ### END SOLUTION


def mixconv_macs(channels, kernel_sizes, height, width, split):
    ### BEGIN SOLUTION
    return height * width * mixconv_params(channels, kernel_sizes, split)
    ### END SOLUTION

# %%
from minimix.lessons import check_mixconv_macs, check_mixconv_params

check_mixconv_params(mixconv_params)
check_mixconv_macs(mixconv_macs)

# %% [markdown]
# The same numbers from the library: `minimix.models.summary` runs a forward pass and counts every
# layer's parameters and multiply-adds (MACs).

# %%
variants = {"3x3": ((3,), "equal"), "5x5": ((5,), "equal"), "7x7": ((7,), "equal"), "9x9": ((9,), "equal"),
            "Mix(3,5,7,9) equal": ((3, 5, 7, 9), "equal"),
            "Mix(3,5,7,9) exponential": ((3, 5, 7, 9), "exponential")}
costs = {}
print(f"{'depthwise layer, 64 channels, 32x32':36s} {'params':>7s} {'MACs':>10s}")
for name, (kernels, rule) in variants.items():
    table = summary(nn.Sequential(nn.MixConv2d(64, kernels, split=rule)), (64, 32, 32), verbose=False)
    costs[name] = table.total_macs
    print(f"{name:36s} {table.total_params:7,d} {table.total_macs:10,d}")

plt.barh(list(costs), [c / 1e6 for c in costs.values()])
plt.xlabel("million multiply-adds per image")
plt.title("one depthwise layer, 64 channels at 32x32")
plt.gca().invert_yaxis()
plt.show()

# %% [markdown]
# ## 5. The paper's finding, in miniature
#
# We train one small network three times, changing only its depthwise kernels: all 3x3, all 7x7, and
# MixConv(3, 5, 7, 9). The network is built from library modules: a 3x3 stem, three depthwise-separable
# blocks (MixConv -> BatchNorm -> ReLU -> 1x1 conv -> BatchNorm -> ReLU), global pooling and a classifier.
# Training uses minimix's `Trainer` (SGD with Nesterov momentum, warm-up + cosine learning rate, label
# smoothing; lesson 6 looks at it closely).
#
# On a CIFAR-10 subset and a few epochs the differences between the three are small and partly noise —
# the paper's effect needs full-length training — but the experiment shows the whole pipeline and the
# cost side of the trade-off exactly. In fast mode (CI) the numbers mean nothing.
#
# `SPLIT` at the top of the experiment cell is the MixConv's channel split rule (section 2): `"equal"`, as
# MixNet uses, or `"exponential"`; `MIX_KERNELS` its kernel sizes.

# %%
TRAIN_IMAGES, TEST_IMAGES, EPOCHS = (256, 200, 1) if FAST else (4000, 1000, 3)
data = load_data(train_limit=TRAIN_IMAGES, test_limit=TEST_IMAGES)


def separable_block(c_in, c_out, kernel_sizes, stride, split="equal"):
    return [nn.MixConv2d(c_in, kernel_sizes, stride=stride, split=split), nn.BatchNorm2d(c_in), nn.ReLU(),
            nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def small_net(kernel_sizes, width=32, num_classes=10, split="equal"):
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        *separable_block(width, 2 * width, kernel_sizes, stride=2, split=split),       # 32x32 -> 16x16
        *separable_block(2 * width, 4 * width, kernel_sizes, stride=2, split=split),   # 16x16 -> 8x8
        *separable_block(4 * width, 4 * width, kernel_sizes, stride=1, split=split),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, num_classes),
    )

# %%
from minimix.training import TrainConfig, Trainer

SPLIT = "equal"  # the MixConv's channel split: change to "exponential" and re-run this cell and the next ones
MIX_KERNELS = (3, 5, 7, 9)
MIX_NAME = "MixConv" + str(MIX_KERNELS).replace(" ", "") + ("" if SPLIT == "equal" else f" {SPLIT}")

config = TrainConfig(epochs=EPOCHS, batch_size=64, lr=0.1, warmup_epochs=0.5 if EPOCHS > 1 else 0.0)
experiments = {"all 3x3": (3,), "all 7x7": (7,), MIX_NAME: MIX_KERNELS}
print(f"{MIX_NAME}: channels per kernel size in the three blocks:",
      [nn.split_channels(c, len(MIX_KERNELS), SPLIT) for c in (32, 64, 128)])
results = {}
for name, kernels in experiments.items():
    mm.manual_seed(0)  # same initialisation stream and data order for every variant
    model = small_net(kernels, split=SPLIT)
    macs = summary(model, (3, 32, 32), verbose=False).total_macs
    start = time.perf_counter()
    trainer = Trainer(model, (data.train_images, data.train_labels), (data.test_images, data.test_labels),
                      config, run_dir=None, progress=False, log=print)
    history = trainer.fit()
    results[name] = {"model": model, "params": model.num_parameters(), "macs": macs,
                     "test_acc": history[-1]["test_acc"], "train_acc": history[-1]["train_acc"],
                     "seconds": time.perf_counter() - start}
    print(f"{name:{max(map(len, experiments))}s} params {results[name]['params']:7,d}  MACs {macs / 1e6:5.2f} M  "
          f"train acc {results[name]['train_acc']:6.1%}  test acc {results[name]['test_acc']:6.1%}  "
          f"({results[name]['seconds']:.0f} s)")

# %%
names = list(results)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.5))
ax1.bar(names, [100 * results[n]["test_acc"] for n in names], color=["C0", "C1", "C2"])
ax1.set_ylabel("test accuracy (%)")
ax1.set_title(f"{len(data.train_labels)} training images, {EPOCHS} epoch(s)"
              + (" [synthetic data]" if data.synthetic else ""))
ax2.bar(names, [results[n]["macs"] / 1e6 for n in names], color=["C0", "C1", "C2"])
ax2.set_ylabel("million MACs per image")
ax2.set_title("cost")
plt.show()

# %% [markdown]
# What the trained MixConv layer of the last block learned (compare with the random kernels above):

# %%
trained_mix = [m for m in results[MIX_NAME]["model"].modules() if isinstance(m, nn.MixConv2d)][-1]
viz.plot_mixconv_kernels(trained_mix);

# %% [markdown]
# ## Summary
#
# * MixConv splits the channels into groups (equal or exponential rule) and gives each group its own
#   kernel size; with one group it is an ordinary depthwise convolution.
# * Its cost is $HW\sum_i c_i k_i^2$: the *average* kernel area, not the largest.
# * MixNet (next lesson) is built from blocks whose depthwise layers are MixConvs, with the kernel sizes
#   found by architecture search.
#
# Try it: set `SPLIT = "exponential"` at the top of the experiment cell (the MixConv then gives half its
# channels to the 3x3 kernels, a quarter to the 5x5, ...: the cell prints the split) and re-run it and the
# cells after it; or change `MIX_KERNELS` to `(3, 5)` or `(9,)`.
#
# Next: [Lesson 5](05_mixnet.ipynb) — building MixNet.
