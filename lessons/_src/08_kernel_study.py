# %% [markdown]
# # Lesson 8 — Does MixConv help? Reproducing the paper
#
# The MixConv paper (Tan & Le, 2019) rests on one experiment, run on MobileNets and ImageNet:
#
# 1. **Larger kernels help, up to a point**: making every depthwise kernel larger (3x3, 5x5, ... 13x13)
#    raises accuracy at first, then accuracy falls beyond about 9x9, while the cost keeps growing.
# 2. **Mixing beats one size**: a MixConv with kernels (3, 5, ..., k) is better than every kernel k x k.
# 3. **The channel split matters little**: an equal split and an exponential one (half the channels to
#    3x3, a quarter to 5x5, ...) are close.
# 4. **Dilated kernels are not a substitute**: 3x3 kernels at dilations 1, 2, 3, 4 span the same windows as
#    3x3 ... 9x9 kernels with far fewer weights, but lose accuracy.
#
# minimix reruns this on CIFAR-10 with `python -m minimix study kernels` (`minimix.study.kernels`): ten
# variants of the CIFAR MixNet, each trained with the same recipe and budget for three seeds. This
# lesson reads the committed results of that study, compares them claim by claim with the paper, and runs a
# miniature of the study itself. The one statistical rule used throughout: **a difference counts only if it
# is larger than the spread between seeds** — every seed of one variant above every seed of the other.

# %%
%matplotlib inline
import tempfile
from pathlib import Path

import numpy as np
from IPython.display import Image, display

import minimix
import minimix.perf
from minimix import models, nn
from minimix.lessons import fast_mode, load_data
from minimix.study import kernels

FAST = fast_mode()
minimix.perf.configure()  # minimix's speed settings for this process (lesson 7 explains them)
RESULTS = Path(minimix.__file__).resolve().parent.parent / "docs" / "results"  # the committed results

# %% [markdown]
# ## 1. The variants
#
# Every variant is `mixnet_cifar` (MixNet-S's block table for 32x32 images) with every MixConv replaced;
# the 3x3 stem and all 1x1 convolutions stay the same. `minimix.study.kernels.VARIANTS` lists them, and
# `Variant.model_kwargs` gives the builder's arguments. Their size and cost, at the study's width:

# %%
WIDTH = kernels.DEFAULT_WIDTH
print(f"{'variant':16} {'kernels':10} {'split':12} {'dilated':8} {'parameters':>11} {'MACs/image':>11}")
costs = {}
for name, variant in kernels.VARIANTS.items():
    model = models.mixnet_cifar(**variant.model_kwargs(WIDTH))
    counted = models.summary(model, (3, 32, 32), verbose=False)
    costs[name] = counted.total_macs
    print(f"{name:16} {'.'.join(map(str, variant.kernel_sizes)):10} {variant.split:12} {str(variant.dilated):8} "
          f"{counted.total_params:>11,} {counted.total_macs / 1e6:>10.1f}M")
print(f"\nk11 costs {costs['k11'] / costs['k3']:.1f}x the multiply-accumulates of k3; "
      f"mix3579 {costs['mix3579'] / costs['k9']:.2f}x those of k9, mix3579-dilated {costs['mix3579-dilated'] / costs['mix3579']:.2f}x those of mix3579.")

# %% [markdown]
# The dilated variant keeps 3x3 weights: `nn.mixconv.dilated_kernels` is the reference code's rule, a k x k
# kernel (k > 3) becomes 3x3 at dilation (k - 1) / 2, in stride-1 blocks only.

# %%
print(nn.mixconv.dilated_kernels((3, 5, 7, 9)))
dilated = models.mixnet_cifar(**kernels.VARIANTS["mix3579-dilated"].model_kwargs(WIDTH))
print(dilated.blocks[4][1].conv_dw)

# %% [markdown]
# ## 2. When is a difference real?
#
# A network trained twice with different seeds (a different initialisation and data order) ends at a
# different accuracy. With several seeds per variant, variant A is *separated* from B only when every seed of A
# is above every seed of B (or every one below); when the seeds' ranges overlap, the data cannot tell them
# apart at this budget, whatever the means say. With a single seed there is no spread at all, so no verdict.
#
# Separated is not proven. If two variants were in truth equally good, their seeds' accuracies would come out
# in a random order, and the chance that every seed of one lands above every seed of the other is
# 2 · n_a! · n_b! / (n_a + n_b)! (`kernels.chance_of_separation`): 1 in 3 with two seeds each, 1 in 10 with
# three. So the study's sentences say how often a separation like theirs happens by chance alone, and a
# third seed is worth its cost: the study runs three of every variant.
#
# ### Exercise — separated or not?
#
# Write `separation(accs_a, accs_b)`: `+1` if every accuracy in `accs_a` is above every one in `accs_b`,
# `-1` if every one is below, `0` if the ranges overlap or touch, or if either list has fewer than 2 seeds.

# %% tags=["solution"]
def separation(accs_a, accs_b):
    """+1, -1 or 0 (see above)."""
    ### BEGIN SOLUTION
    if len(accs_a) < 2 or len(accs_b) < 2:
        return 0
    if min(accs_a) > max(accs_b):
        return 1
    if max(accs_a) < min(accs_b):
        return -1
    return 0
    ### END SOLUTION

# %%
from minimix.lessons import check_seed_separation, yours_or_library

separation = yours_or_library(check_seed_separation(separation), separation, kernels.separation)

# %% [markdown]
# ## 3. The committed results
#
# The study's results live in `docs/results/`: `kernel-study.csv` (one row per variant: parameters,
# multiply-accumulates, each seed's test accuracy (its final weights on all 10,000 test images), mean, min, max, standard
# deviation, seconds per epoch, the receptive fields), `kernel-study-runs.csv` (one row per run, with its full
# recipe and the commit that trained it), two figures and `kernel-study.md`, which also says why its budget
# was chosen.

# %%
rows = kernels.read_results(RESULTS / "kernel-study.csv")
if not rows:
    print(f"The study has not been run yet: there is no {RESULTS / 'kernel-study.csv'}.\n"
          "Run `python -m minimix study kernels` (hours on 2 cores: docs/results/kernel-study.md says how many\n"
          "and why; it can be stopped and continued at any time). Until then this lesson shows only the\n"
          "miniature of section 4.")
else:
    first = rows[0]
    runs = sum(len(r["accs"]) for r in rows)
    planned = len(kernels.VARIANTS) * len(kernels.DEFAULT_SEEDS)
    if runs < planned:
        print(f"The study is still running: {runs} of its {planned} runs have finished. Every comparison below "
              "is provisional, and a variant with one seed has no spread to judge it by.\n")
    print(f"{len(rows)} variants, {first['epochs']} epochs each at width {first['width']} on "
          f"{first['limit'] or 50000} training images; seeds per variant: "
          f"{sorted({len(r['accs']) for r in rows})}\n")
    print(f"{'variant':16} {'mean':>7} {'min':>7} {'max':>7}  seeds")
    for row in sorted(rows, key=lambda r: -r["mean"]):
        print(f"{row['variant']:16} {row['mean']:7.2%} {row['min']:7.2%} {row['max']:7.2%}  "
              + " ".join(f"{a:.2%}" for a in row["accs"]))
    for figure in kernels.FIGURES:
        if (RESULTS / figure).is_file():
            display(Image(filename=str(RESULTS / figure)))

# %% [markdown]
# ### The paper's claims, one by one
#
# Each sentence below is computed from the table (`kernels.claims`), with the separation rule of section 2:
# a claim "reproduces" here only where the difference is beyond the seed spread.

# %%
def verdicts(rows):
    """Each claim of the paper, then what the rows say about it."""
    for claim, finding in kernels.claims(rows):
        print(f"PAPER: {claim}\nHERE:  {finding}\n")


if rows:
    verdicts(rows)
    print("ranking by mean (>: separated from the next, ~: within the seed spread):", kernels.ranking(rows, separation))
else:
    print("No committed results yet: nothing to compare with the paper (see section 4 for the machinery).")

# %% [markdown]
# ### Does the cost predict the ranking?
#
# The verdicts compare pairs. One question across all of them: is a variant's accuracy at this budget
# related to how much its depthwise layers compute? The variants differ only in their depthwise kernels, so
# their multiply-accumulates per image (section 1) measure how large their kernels are, channel by channel.
# Spearman's rank correlation between the MACs and the mean accuracy is -1 when every cheaper variant is
# the more accurate one, +1 when every costlier one is, and near 0 when the two are unrelated. How often
# would a correlation at least that strong (either sign) come out by chance, if the accuracies had nothing to
# do with the cost? Shuffling the accuracies among the variants many times answers that (a permutation test).

# %%
def ranks(values):
    """0 for the smallest value, 1 for the next, ... (the values here have no ties)."""
    return np.argsort(np.argsort(values))


def rank_correlation(x_ranks, y_ranks):
    """Spearman's rho: the correlation coefficient of two rankings (along the last axis, so each row of
    ``y_ranks`` may be one shuffle)."""
    def standardized(r):
        return (r - r.mean(axis=-1, keepdims=True)) / r.std(axis=-1, keepdims=True)
    return (standardized(x_ranks) * standardized(y_ranks)).mean(axis=-1)


if len(rows) >= 4:
    mac_ranks = ranks(np.array([row["macs"] for row in rows], dtype=float))
    mean_ranks = ranks(np.array([row["mean"] for row in rows]))
    rho = float(rank_correlation(mac_ranks, mean_ranks))
    # shuffling the accuracies shuffles their ranks: rank once, then shuffle the ranks
    shuffled = rank_correlation(mac_ranks, np.random.default_rng(0).permuted(np.tile(mean_ranks, (20000, 1)), axis=1))
    chance = float((np.abs(shuffled) >= abs(rho) - 1e-12).mean())
    print(f"rank correlation of MACs and mean accuracy over {len(rows)} variants: rho = {rho:+.2f}")
    print(f"shuffled accuracies reach |rho| >= {abs(rho):.2f} in {chance:.2%} of 20,000 shuffles")
    print("the cheaper variants are the more accurate ones" if rho < 0 else
          "the costlier variants are the more accurate ones" if rho > 0 else "no relation")
else:
    print("Fewer than 4 variants have finished: too few to rank.")

# %% [markdown]
# A correlation, of either sign, says which variants did well together, not why. Here a variant's cost
# measures how large its kernels are, and at a budget of a few short epochs the ranking also reflects how fast
# each variant learns (section 5). It describes this study's budget, not the paper's.

# %% [markdown]
# ## 4. The study in miniature
#
# The same runner, on a small scale: a few variants, two seeds, one short epoch each, in a temporary
# directory. `run_study` trains each (variant, seed) as an ordinary resumable run (one directory each,
# checkpoints, `metrics.csv`), skips finished runs when called again, and `collect` writes the table,
# the figures and the page. In fast mode this takes well under a minute (the full mode, 3 variants x 2 seeds x
# 2 epochs on 2,500 images, several minutes on 2 cores: the runner prints how long it trained); its
# accuracies are a smoke test of the machinery, not evidence about kernels.

# %%
MINI = dict(variants=["k3", "k7", "mix357"], seeds=[0, 1], epochs=1, width=0.25, limit=160) if FAST else \
    dict(variants=["k3", "k7", "mix357"], seeds=[0, 1], epochs=2, width=0.25, limit=2500)
MINI["batch_size"] = None  # the recipe's rule for few images (16 in fast mode, 64 in full), not the study's 64
data = load_data(MINI["limit"], MINI["limit"] // 5)
workdir = Path(tempfile.mkdtemp(prefix="kernel-study-"))
mini_rows = kernels.run_study(out=workdir / "runs", results=workdir / "results", erf_images=4,
                              dataset=tuple(data), **MINI)

# %%
mini = kernels.read_results(workdir / "results" / "kernel-study.csv")
for row in mini:
    print(f"{row['variant']:8} mean {row['mean']:.1%}  seeds " + ", ".join(f"{a:.1%}" for a in row["accs"])
          + f"  ({row['macs'] / 1e6:.1f} M MACs, {row['wall_seconds_per_epoch']} s per epoch)")
display(Image(filename=str(workdir / "results" / kernels.FIGURES[0])))
pairs = [(a["variant"], b["variant"]) for i, a in enumerate(mini) for b in mini[i + 1:]]
separated = [f"{a} vs {b}" for a, b in pairs
             if separation(*(next(r["accs"] for r in mini if r["variant"] == n) for n in (a, b)))]
chance = kernels.chance_of_separation(len(MINI["seeds"]), len(MINI["seeds"]))
print(f"{len(separated)} of {len(pairs)} pairs separated beyond the seed spread"
      + (": " + ", ".join(separated) if separated else "")
      + f" (with {len(MINI['seeds'])} seeds each, 1 time in {round(1 / chance)} by chance alone)"
      + f" — with {MINI['epochs']} epoch(s) on {MINI['limit']} images, this is what the machinery shows, "
      "not what kernels do.")

# %% [markdown]
# Calling the runner again does not train anything: every run is finished. Killed in the middle (Ctrl-C,
# a closed laptop), the same call would resume each unfinished run from its last checkpoint, bit for bit.

# %%
log = []
kernels.run_study(out=workdir / "runs", results=None, dataset=tuple(data), log=log.append, **MINI)
print("\n".join(log))

# %% [markdown]
# ## 5. Why CIFAR-10 can disagree with ImageNet
#
# The paper's networks see 224x224 images; the CIFAR MixNet sees 32x32, and its last stages work on 8x8 and
# 4x4 feature maps. A k x k kernel on an n x n map, with zero padding, has part of its window outside the
# map for most positions; the share of its taps that land on the map, averaged over positions, is computed
# below for the depthwise layers of `mixnet_cifar` at each resolution they run at.

# %%
def inside_share(n, k):
    """Mean share of a k x k kernel's taps that fall inside an n x n map ('same' padding, stride 1)."""
    offsets = np.arange(k) - k // 2
    positions = np.arange(n)
    per_axis = ((positions[:, None] + offsets[None, :] >= 0) & (positions[:, None] + offsets[None, :] < n)).mean()
    return per_axis ** 2


layers = models.summary(models.mixnet_cifar(width_multiplier=WIDTH), (3, 32, 32), verbose=False).rows
resolutions = sorted({r.output_shape[-1] for r in layers if r.type == "MixConv2d"}, reverse=True)
print("map side: share of taps inside the map for k = 3, 5, 7, 9, 11")
for n in resolutions:
    print(f"{n:>3}x{n:<3}  " + "  ".join(f"k{k}: {inside_share(n, k):5.0%}" for k in (3, 5, 7, 9, 11)))
small = min(resolutions)
print(f"\nAt {small}x{small}, a 9x9 kernel has on average {inside_share(small, 9):.0%} of its taps on the map and a "
      f"3x3 kernel {inside_share(small, 3):.0%}: beyond the map's size, a larger kernel adds weights that "
      "multiply padding.")

# %% [markdown]
# So at this scale large kernels may stop helping earlier than on ImageNet, simply because the maps are
# small, and a study of a few hours has a seed spread that can hide differences of a few tenths of a point —
# the size of several of the paper's.
#
# The budget is a second reason. The paper trains each network to convergence (hundreds of epochs on
# ImageNet); here each run stops after 5 short epochs, far below the 85% the full recipe reaches. A larger
# kernel has more weights per channel to fit (k x k), and at the same number of updates it can simply be
# further from where it would end: a ranking at this budget says which variant learns most in a few
# minutes of CPU time, which need not be the ranking after full training. The per-epoch test accuracies in
# `kernel-study-records/` show each run's learning curve, to see where the variants stood when training stopped. Where the committed results above say "within the seed spread", that is
# the honest answer at this budget; a fourth seed (`--seeds 0,1,2,3`: only the new runs are trained) would narrow it.
