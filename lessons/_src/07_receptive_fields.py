# %% [markdown]
# # Lesson 7 — Receptive fields: theoretical and effective
#
# MixConv's promise is that its large kernels let a layer "see more" of the image. How much more? The
# **theoretical receptive field** of a unit is the window of input pixels that *can* influence it — pure
# geometry. The **effective receptive field** (Luo et al., NeurIPS 2016) measures how much each of those
# pixels *does* influence it, with one backward pass. This lesson computes both for the CIFAR MixNet,
# per MixConv kernel group, at initialisation and (when a finished run exists) after training.
#
# The first code cell calls `minimix.perf.configure()`, which sets this Python process up the way minimix
# trains, so that the many backward passes below run at full speed: BLAS on one thread (minimix splits
# each batch over the cores itself), Numba's TBB thread pool, and an allocator that reuses large arrays.
# These are process-wide settings, so minimix never changes them on import; the call must come before any
# kernel runs.

# %%
%matplotlib inline
import numpy as np
import matplotlib.pyplot as plt
from IPython.display import display

import minimix as mm
import minimix.perf
from minimix import models, nn, viz
from minimix.lessons import fast_mode, find_checkpoint, load_data, load_trained_model

FAST = fast_mode()
minimix.perf.configure()  # threads, BLAS, allocator: see above
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The recurrence
#
# Describe a feature map, along one axis, by two numbers: $r$, the size of each unit's field in input
# pixels, and $j$ ("jump"), the distance in input pixels between neighbouring units. The image itself has
# $r = j = 1$. A layer with kernel $k$, stride $s$ and dilation $d$ (effective kernel
# $k_{\text{eff}} = d\,(k-1) + 1$) maps them to
#
# $$ r_{\text{out}} = r_{\text{in}} + (k_{\text{eff}} - 1)\, j_{\text{in}}, \qquad j_{\text{out}} = j_{\text{in}}\, s . $$
#
# Each layer adds $k_{\text{eff}} - 1$ of *its own* units, and each of those is $j_{\text{in}}$ pixels wide:
# after downsampling, every kernel tap covers more of the image. A 1x1 convolution adds nothing.
#
# ### Exercise — one step of the recurrence

# %% tags=["solution"]
def rf_step(r, jump, kernel, stride, dilation):
    """(r, jump) after one layer."""
    ### BEGIN SOLUTION
    k_eff = dilation * (kernel - 1) + 1
    return r + (k_eff - 1) * jump, jump * stride
    ### END SOLUTION

# %%
from minimix.lessons import check_rf_recurrence, yours_or_library
from minimix.viz.receptive_field import AxisField


def library_rf_step(r, jump, kernel, stride, dilation):
    """minimix's recurrence (``AxisField.through``), for the cells below while the exercise is unsolved."""
    field = AxisField(r, jump, 0.0).through(kernel, stride, 0, dilation)
    return field.r, field.jump


rf_step = yours_or_library(check_rf_recurrence(rf_step), rf_step, library_rf_step)

# %% [markdown]
# ## 2. The CIFAR MixNet, layer by layer
#
# `minimix.viz.receptive_field` runs one forward pass and records, for every convolution-like layer, its
# kernel(s), stride, jump and field — **per MixConv group** (a 9x9 group sees more than a 3x3 group of the
# same layer) and the largest. Where paths merge (residual additions, squeeze-excite gates) the larger
# field wins.

# %%
model = models.mixnet_cifar()
records = viz.receptive_field(model, (3, 32, 32))
print(viz.format_table(records[:20]))
print(f"... {len(records)} layers in all; the last one: {records[-1].name}, r = {records[-1].rf}")

# %% [markdown]
# MixNet's main path is a chain (the residual branch never has the larger field), so folding your
# `rf_step` over the layers — with each layer's largest kernel — must reproduce the table:

# %%
r, jump = 1, 1
mismatches = 0
for rec in records:
    r, jump = rf_step(r, jump, max(rec.kernel_sizes), rec.stride, rec.dilation)
    mismatches += (r != rec.rf)
print(f"rf_step folded over {len(records)} layers: final r = {r}, jump = {jump}; "
      f"{mismatches} mismatches with viz.receptive_field")

# %% [markdown]
# By the last block each unit's theoretical field (339 px) is ten times the 32-pixel image. Compared with
# the same network with every depthwise kernel 3x3 (`mixnet_cifar(kernel_sizes=(3,))`):

# %%
baseline = models.mixnet_cifar(kernel_sizes=(3,))
viz.plot_rf_vs_depth({"mixnet_cifar (MixConv)": records,
                      "all 3x3 depthwise": viz.receptive_field(baseline, (3, 32, 32))}, image_size=32)

# %% [markdown]
# ## 3. The effective receptive field
#
# Put a gradient of 1 on the centre unit of a layer's map (all its channels, or one MixConv group's
# channels) and back-propagate to the image. The magnitude of the input gradient,
#
# $$ \text{ERF}(u, v) = \frac{1}{N}\sum_n \sum_{\text{ch}} \left| \frac{\partial\, y_n^{\text{centre}}}{\partial x_{n,\text{ch},u,v}} \right|, $$
#
# shows how strongly each pixel moves that unit. `minimix.viz.erf_summary` reports the sides of the
# smallest centred squares holding 20 %, 50 % and 99 % of that gradient mass.
#
# **Why the ERF is smaller than the theory.** For a stack of $n$ linear layers the input gradient is the
# $n$-fold convolution of the kernels, which tends to a Gaussian (central limit theorem): its width grows
# like $\sqrt{n}$ while the theoretical field grows like $n$. A stack of uniform 3x3 convolutions shows it:

# %%
depths = [1, 2, 4, 8, 16, 32]
theory, width = [], []
for n in depths:
    stack = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1, bias=False) for _ in range(n)])
    for conv in stack:
        conv.weight.data[...] = 1 / 9  # uniform 3x3 kernels
    erf = viz.compute_erf(stack, np.ones((1, 1, 80, 80), dtype=np.float32), layer=str(n - 1))
    profile = erf.map.sum(axis=1) / erf.map.sum()  # the mass per row
    rows = np.arange(len(profile))
    sigma = np.sqrt(np.sum(profile * (rows - erf.centre[0]) ** 2))
    theory.append(max(erf.rf))
    width.append(4 * sigma)
plt.plot(depths, theory, "o-", label="theoretical r = 2n + 1")
plt.plot(depths, width, "s-", label=r"effective: width $4\sigma$ of the gradient map")
plt.plot(depths, 4 * np.sqrt(2 * np.array(depths) / 3), "k:", label=r"$4\sqrt{2n/3}$ (central limit theorem)")
plt.xlabel("number of stacked 3x3 convolutions n")
plt.ylabel("pixels")
plt.legend()
plt.title("the effective field grows like the square root of depth")
plt.show()

# %% [markdown]
# (One uniform 3-tap filter has variance $2/3$ pixel$^2$; $n$ of them in a row add their variances.)
#
# %% [markdown]
# ## 4. Per MixConv group, at initialisation
#
# Two MixConv layers of the CIFAR MixNet:
#
# * `blocks.2.0.conv_dw`, kernels 3/5/7 at stride 2 (theoretical fields 11/13/15 px): small enough to
#   measure on real 32x32 CIFAR images;
# * `blocks.4.1.conv_dw`, kernels 3/5/7/9 deep in the network (fields 115-139 px): measured on random
#   images large enough to contain the field (`viz.layer_field` tells how large).
#
# `viz.mixconv_group_erfs` puts the gradient on one group's channels at a time. Models run in eval mode
# (BatchNorm uses its running statistics, so the images do not interact).

# %%
N_IMAGES = 4 if FAST else 32
N_LARGE = 1 if FAST else 4
data = load_data(train_limit=1, test_limit=max(N_IMAGES, 10), verbose=False)
cifar_images = mm.data.normalize(data.test_images[:N_IMAGES])
print("ERF inputs:", "synthetic stand-in images" if data.synthetic else "CIFAR-10 test images", cifar_images.shape)

SHALLOW, DEEP = "blocks.2.0.conv_dw", "blocks.4.1.conv_dw"
deep_side = max(axis.r + 2 * axis.jump for axis in viz.layer_field(model, (3, 32, 32), DEEP))
large_images = mm.random.generator().standard_normal((N_LARGE, 3, deep_side, deep_side)).astype(np.float32)
print(f"{DEEP}: random inputs of {deep_side}x{deep_side}")


def group_erfs(net):
    """{layer: [ERF of each kernel group]} for the two layers above."""
    return {SHALLOW: viz.mixconv_group_erfs(net, cifar_images, SHALLOW),
            DEEP: viz.mixconv_group_erfs(net, large_images, DEEP)}


def print_erf_table(erfs_by_layer, title):
    print(title)
    for layer, erfs in erfs_by_layer.items():
        for erf in erfs:
            sides = erf.summary()
            print(f"  {erf.label:32s} theoretical r = {max(erf.rf):3d}   ERF squares holding "
                  f"20/50/99 %: {sides[0.2]:3d} /{sides[0.5]:3d} /{sides[0.99]:3d} px")


mm.manual_seed(0)
untrained = models.mixnet_cifar()
erfs_init = group_erfs(untrained)
print_erf_table(erfs_init, "mixnet_cifar at initialisation:")

# %%
viz.plot_erfs(erfs_init[SHALLOW], titles=[f"{e.label}\nuntrained" for e in erfs_init[SHALLOW]])

# %%
viz.plot_erfs(erfs_init[DEEP], titles=[f"{e.label}\nuntrained" for e in erfs_init[DEEP]], log=True)

# %% [markdown]
# The cyan square is each group's theoretical field. Even at initialisation the larger kernels give a
# (somewhat) wider effective field, but most of the mass stays near the centre, far inside the square —
# the $\sqrt{n}$ effect. (The log scale of the second figure shows the long tails; the squeeze-excite
# gates, which pool the whole image, also spread a faint gradient everywhere.)
#
# ## 5. After training
#
# Luo et al. found that effective fields *grow* during training. Does that hold here? `find_checkpoint`
# gives a trained network: your own completed run if there is one in `runs/` (or `$MINIMIX_CHECKPOINT`),
# else the small checkpoint shipped with minimix. We compare the same layers, groups and inputs.

# %%
checkpoint = find_checkpoint()
if checkpoint is not None:
    trained, trained_config, state = load_trained_model(checkpoint)
    print(f"{trained_config.model} {trained_config.model_kwargs}, trained for {state['epoch']} epoch(s)")
    erfs_trained = group_erfs(trained)
    print_erf_table(erfs_trained, "after training:")

    before = [e.summary()[0.5] for layer in (SHALLOW, DEEP) for e in erfs_init[layer]]
    after = [e.summary()[0.5] for layer in (SHALLOW, DEEP) for e in erfs_trained[layer]]
    labels = [e.label.replace("blocks.", "").replace(".conv_dw", "") for layer in (SHALLOW, DEEP)
              for e in erfs_init[layer]]
    positions = np.arange(len(labels))
    plt.bar(positions - 0.2, before, width=0.4, label="initialisation")
    plt.bar(positions + 0.2, after, width=0.4, label="trained")
    plt.xticks(positions, labels, rotation=30, ha="right")
    plt.ylabel("side of the square holding 50 % (px)")
    plt.title("effective receptive field per MixConv group")
    plt.legend()
    plt.show()
    grew = sum(b < a for b, a in zip(before, after))
    print(f"after training, {grew} of {len(before)} groups have a wider 50% square than at initialisation "
          f"({'as Luo et al. found' if grew > len(before) / 2 else 'unlike what Luo et al. found: here most shrank'}"
          f"; mean side {np.mean(before):.1f} -> {np.mean(after):.1f} px)")
    for layer in (SHALLOW, DEEP):
        sides = [e.summary()[0.5] for e in erfs_trained[layer]]
        order = "grows with the kernel size" if all(np.diff(sides) >= 0) else "does not grow monotonically with the kernel size"
        print(f"{layer}: trained 50% side per group {[round(x, 1) for x in sides]} px: {order}")
else:
    erfs_trained = None
    print("(skipped: the after-training comparison needs a finished checkpoint)")

# %%
if erfs_trained is not None:
    display(viz.plot_erfs(erfs_trained[SHALLOW], titles=[f"{e.label}\ntrained" for e in erfs_trained[SHALLOW]]))
    display(viz.plot_erfs(erfs_trained[DEEP], titles=[f"{e.label}\ntrained" for e in erfs_trained[DEEP]],
                          log=True))
    display(viz.plot_mixconv_kernels(dict(trained.named_modules())[SHALLOW]))

# %% [markdown]
# ## Summary
#
# * Theoretical field: $r \leftarrow r + (k_{\text{eff}} - 1)\,j$, $j \leftarrow j\,s$; strides make later
#   kernels count more. MixConv gives each channel group its own $r$.
# * Effective field: the input-gradient magnitude of one unit; roughly Gaussian, growing like
#   $\sqrt{\text{depth}}$, much smaller than the theoretical field.
# * Whether MixConv's large-kernel groups see further, at initialisation and after training, is what the
#   lines above printed for this network — measure it on your own run with
#   `python -m minimix rf --checkpoint runs/<run> --layer blocks.4.1.conv_dw --out runs/erf.png`.
#
# That completes the course: from a scalar graph differentiated by hand to the receptive fields of a
# trained MixNet, all on a few thousand lines of NumPy you can read.
