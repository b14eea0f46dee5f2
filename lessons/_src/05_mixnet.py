# %% [markdown]
# # Lesson 5 — Building MixNet
#
# MixNet-S, -M and -L were found by neural architecture search over a MobileNet-style space whose
# depthwise layers could be MixConvs. This lesson reads the result the way the reference implementation
# writes it — as **block strings** — and assembles it from the parts of the previous lessons: grouped 1x1
# convolutions, MixConv, BatchNorm, squeeze-and-excitation, residual connections.

# %%
%matplotlib inline
import numpy as np
import matplotlib.pyplot as plt

import minimix as mm
from minimix import models, nn
from minimix.lessons import fast_mode

FAST = fast_mode()
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Block strings
#
# The TensorFlow reference describes each group of identical blocks in one line. MixNet-S's table:

# %%
for stage, strings in enumerate(models.MIXNET_S):
    for s in strings:
        print(f"stage {stage}: {s}")

# %% [markdown]
# Each field is a key and a value, separated by `_`:
#
# | field | meaning | in `r3_k3.5_a1.1_p1.1_s11_e6_i40_o40_se0.5_sw` |
# |---|---|---|
# | `r` | repeats: blocks in the group | 3 blocks |
# | `k` | depthwise kernel sizes, one per MixConv group | MixConv(3, 5) |
# | `a`, `p` | expansion / projection 1x1 convs: one entry per channel group | 2 groups each |
# | `s` | stride (rows, columns) | 1 |
# | `e` | expansion ratio: hidden width = input width x e | 40 -> 240 |
# | `i`, `o` | input / output channels | 40 -> 40 |
# | `se` | squeeze-excite ratio, of the *input* width | 40 x 0.5 = 20 |
# | `sw` | swish (SiLU) instead of ReLU | SiLU |
#
# `decode_block_string` turns a string into a `BlockArgs`; `encode_block_string` turns it back.

# %%
args = models.decode_block_string("r3_k3.5_a1.1_p1.1_s11_e6_i40_o40_se0.5_sw")
print(repr(args))
print("round trip:", models.encode_block_string(args))

# %% [markdown]
# ## 2. Width scaling
#
# MixNet-L is MixNet-M with every channel count multiplied by 1.3, and the CIFAR model in this course
# uses MixNet-S at 0.5. The reference rounds each scaled count to a multiple of 8 (friendly to vector
# hardware), never below 8, and goes up one step if rounding lost more than 10 %:
#
# $$ c' = \max\!\Big(8,\; 8 \Big\lfloor \frac{c\,w + 4}{8} \Big\rfloor\Big), \qquad c' \mathrel{+}= 8 \text{ if } c' < 0.9\, c\, w . $$
#
# ### Exercise — `round_filters`

# %% tags=["solution"]
def round_filters(channels, width_multiplier):
    ### BEGIN SOLUTION
    scaled = channels * width_multiplier
    rounded = max(8, int(scaled + 4) // 8 * 8)
    if rounded < 0.9 * scaled:
        rounded += 8
    return rounded
    ### END SOLUTION

# %%
from minimix.lessons import check_round_filters

check_round_filters(round_filters)

# %% [markdown]
# ## 3. The inverted-residual block
#
# Most MixNet blocks are MobileNetV2's **inverted residual**: narrow -> wide -> narrow.
#
# $$ x \xrightarrow{\text{1x1 expand}} \text{BN, act} \xrightarrow{\text{MixConv}} \text{BN, act}
#    \xrightarrow{\text{SE}} \xrightarrow{\text{1x1 project}} \text{BN} \;(+\,x) $$
#
# * the expansion widens $C_{in}$ to $e \cdot C_{in}$ so the depthwise layer has many channels to filter;
# * the projection back is **linear** (no activation): a ReLU on a narrow bottleneck would destroy information;
# * the residual $+x$ is used when the shapes allow it (stride 1, $C_{in} = C_{out}$);
# * MixNet splits the 1x1 convolutions into channel groups too (`GroupedConv2d`, the `a`/`p` fields),
#   which cuts their cost by the number of groups.
#
# A block with expansion ratio 1 (MixNet's first) skips the expansion: that is the depthwise-separable
# block of lesson 4. `make_block` picks the right class:

# %%
block = models.make_block(args.replace(repeats=1))
print(block)

# %%
x = mm.Tensor(rng.standard_normal((2, 40, 16, 16)).astype(np.float32))
block.eval()
print("input", x.shape, "-> output", block(x).shape, "| residual used:", block.has_skip)

# %% [markdown]
# ## 4. Squeeze-and-excitation
#
# Squeeze-and-excitation (Hu et al. 2018) lets the whole image decide how much each channel matters.
# For $x$ of shape $(N, C, H, W)$:
#
# $$ s = \operatorname{mean}_{H,W}(x), \quad z = \operatorname{act}(W_1 s + b_1) \in \mathbb{R}^{R}, \quad
#    \text{gate} = \sigma(W_2 z + b_2) \in (0,1)^C, \quad y = x \odot \text{gate} . $$
#
# It costs little ($2CR$ multiply-adds per image, on a $1\times1$ map) and gives every unit a global view.
# The gates of the block above, for two random inputs:

# %%
se = block.se
for name, module in (("squeeze", se.conv_reduce), ("excite", se.conv_expand)):
    print(f"{name:8s}: {module}")
hidden = block.bn1(block.conv_pw(x))       # 1x1 expansion -> BN -> act (BatchNormAct2d)
hidden = block.bn2(block.conv_dw(hidden))  # MixConv -> BN -> act
gate = mm.ops.sigmoid(se.conv_expand(se.act(se.conv_reduce(nn.functional.adaptive_avg_pool2d(hidden, 1)))))
plt.plot(gate.data[0, :, 0, 0], ".", label="image 0")
plt.plot(gate.data[1, :, 0, 0], ".", label="image 1")
plt.xlabel("channel of the 240-wide hidden layer")
plt.ylabel("gate")
plt.title("squeeze-and-excitation gates (random weights)")
plt.legend()
plt.show()
print("SE output equals hidden * gate:", np.allclose(se(hidden).data, (hidden * gate).data, atol=1e-6))

# %% [markdown]
# ### Exercise — how many parameters does a block have?
#
# Count the parameters of `make_block(a)` from its `BlockArgs` `a` (fields `in_channels`,
# `out_channels`, `expand_ratio`, `kernel_sizes`, `expand_kernel_sizes`, `project_kernel_sizes`,
# `se_ratio`). Remember:
#
# * a grouped 1x1 conv splits *both* its input and its output channels with the equal rule
#   (`nn.split_channels`) and has no bias: $\sum_i c^{in}_i c^{out}_i$;
# * every BatchNorm has a weight and a bias per channel (its running statistics are buffers, not parameters);
# * the SE convs have biases, and $R = \max(1, \lfloor C_{in} \cdot \text{se} \rfloor)$;
# * no expansion conv (and no first BatchNorm) when `expand_ratio == 1`.

# %% tags=["solution"]
def block_params(a):
    ### BEGIN SOLUTION
    def grouped(c_in, c_out, groups):
        ins, outs = nn.split_channels(c_in, groups), nn.split_channels(c_out, groups)
        return sum(i * o for i, o in zip(ins, outs))

    mid = a.in_channels * a.expand_ratio
    total = 0
    if a.expand_ratio != 1:
        total += grouped(a.in_channels, mid, len(a.expand_kernel_sizes)) + 2 * mid
    splits = nn.split_channels(mid, len(a.kernel_sizes))
    total += sum(c * k * k for c, k in zip(splits, a.kernel_sizes)) + 2 * mid
    if a.se_ratio:
        r = max(1, int(a.in_channels * a.se_ratio))
        total += mid * r + r + r * mid + mid
    total += grouped(mid, a.out_channels, len(a.project_kernel_sizes)) + 2 * a.out_channels
    return total
    ### END SOLUTION

# %%
from minimix.lessons import check_block_params

check_block_params(block_params)

# %% [markdown]
# ## 5. The whole network
#
# $$ \text{image} \to \underbrace{\text{3x3 conv, stride 2}}_{\text{stem}} \to \text{blocks (the table)} \to
#    \underbrace{\text{1x1 conv to 1536} \to \text{pool} \to \text{dropout} \to \text{linear}}_{\text{head}} $$
#
# `minimix.models.summary` runs one forward pass on zeros and lists every layer's output shape, parameters
# and multiply-adds. MixNet-S on a 224x224 ImageNet image (4.1 M parameters, about 0.26 G MACs):

# %%
mixnet_s = models.mixnet_s()
table_s = models.summary(mixnet_s, (3, 224, 224))

# %% [markdown]
# ### The reduced MixNet for CIFAR-10
#
# 32x32 images are 49 times smaller than 224x224. `mixnet_cifar` keeps MixNet-S's table but
#
# * halves every width (`width_multiplier=0.5`) and uses a 1024-wide head,
# * removes the stem's stride and the first stride-2 block's stride, so the maps go 32 -> 16 -> 8 -> 4
#   instead of shrinking to 1x1.

# %%
mixnet_cifar = models.mixnet_cifar()
table_cifar = models.summary(mixnet_cifar, (3, 32, 32))

# %% [markdown]
# Where do the parameters and the multiply-adds go? Grouping the summary rows by layer type:

# %%
def by_type(table):
    totals = {}
    for row in table.rows:
        params, macs = totals.get(row.type, (0, 0))
        totals[row.type] = (params + row.params, macs + row.macs)
    return totals


fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for ax, (title, table) in zip(axes, (("MixNet-S, 224x224", table_s), ("mixnet_cifar, 32x32", table_cifar))):
    totals = {k: v for k, v in by_type(table).items() if v[0] or v[1]}
    names = list(totals)
    ax.barh(names, [100 * totals[n][1] / table.total_macs for n in names], label="% of MACs")
    ax.barh(names, [100 * totals[n][0] / table.total_params for n in names], height=0.4, label="% of parameters")
    ax.set_title(title)
    ax.set_xlabel("%")
    ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# The grouped 1x1 convolutions do most of the multiply-adds; the squeeze-excite layers and (for 1000
# ImageNet classes) the classifier hold many parameters but do almost no arithmetic; the depthwise
# MixConvs are cheap in both — yet lesson 3 showed why they can still take a large share of the *time*.
#
# Finally, the three ImageNet models, with the parameter counts of the reference implementation (timm):

# %%
for name in ("mixnet_s", "mixnet_m", "mixnet_l"):
    print(f"{name}: {models.MODELS[name]().num_parameters():,} parameters")

# %% [markdown]
# ## Summary
#
# * A block string encodes one group of blocks; `decode_block_string` / `make_block` build it.
# * The inverted-residual block: grouped 1x1 expansion, MixConv, squeeze-excite, linear grouped 1x1
#   projection, residual when shapes allow.
# * `summary` tells where parameters and multiply-adds go; the CIFAR variant keeps MixNet-S's table at
#   half width and without the early downsampling.
#
# Next: [Lesson 6](06_training.ipynb) — training the CIFAR MixNet.
