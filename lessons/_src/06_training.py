# %% [markdown]
# # Lesson 6 — Training on CIFAR-10
#
# Everything is in place: tensors with gradients (lesson 1), fast convolutions (2, 3), MixConv (4) and
# the MixNet architecture (5). This lesson trains the reduced MixNet on CIFAR-10 with minimix's own data
# pipeline and training loop: the images, normalisation, augmentation, the loss, the optimiser and its
# schedule, a short run with its progress bar, the learning curves and the confusion matrix — and, when
# a finished run exists, its checkpoint.
#
# A full training run (`python -m minimix train` from the repository root: 15 epochs over all 50,000
# images) takes a long time on a CPU; the run here is short on purpose, and section 6 shows what the full
# recipe reached in the run recorded with the repository.
#
# The first code cell calls `minimix.perf.configure()`, as `python -m minimix train` does: it sets this
# Python process up for training speed, with BLAS on one thread (minimix splits each batch over the cores
# itself), Numba's TBB thread pool, and an allocator that reuses large arrays. These are process-wide
# settings, so minimix never changes them on import; the call must come before any kernel runs.

# %%
%matplotlib inline
import tempfile
from pathlib import Path

import numpy as np
import matplotlib.pyplot as plt
from IPython.display import Image, display

import minimix as mm
import minimix.perf
from minimix import data as mmdata
from minimix.lessons import fast_mode, find_checkpoint, load_data, load_trained_model

FAST = fast_mode()
minimix.perf.configure()  # threads, BLAS, allocator: see above
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The data
#
# CIFAR-10: 50,000 training and 10,000 test images of 32x32 pixels in 10 classes. `minimix.data.CIFAR10`
# reads the official archives or an image-folder copy (from `$MINIMIX_DATA`) and caches the decoded arrays;
# `load_data` takes class-balanced subsets of it (or, if CIFAR-10 is not found, a clearly labelled
# synthetic stand-in so that the notebook still runs).

# %%
TRAIN_IMAGES, TEST_IMAGES = (128, 100) if FAST else (10_000, 1000)
data = load_data(train_limit=TRAIN_IMAGES, test_limit=TEST_IMAGES)
print("images", data.train_images.shape, data.train_images.dtype, "labels", data.train_labels.shape,
      data.train_labels.dtype)
print("images per class:", np.bincount(data.train_labels, minlength=10))

fig, axes = plt.subplots(4, 10, figsize=(13, 5.6))
for c, column in enumerate(axes.T):
    examples = np.flatnonzero(data.train_labels == c)[:4]
    for ax, i in zip(column, examples):
        ax.imshow(data.train_images[i])
        ax.axis("off")
    column[0].set_title(data.classes[c], fontsize=8)
plt.show()

# %% [markdown]
# ## 2. Normalisation
#
# The network sees channel-first float32 tensors whose channels have roughly zero mean and unit variance
# over the training set:
#
# $$ \hat x_{n,c,h,w} = \frac{x_{n,h,w,c}/255 - \mu_c}{\sigma_c}, \qquad
#    \mu = (0.491, 0.482, 0.447), \;\; \sigma = (0.245, 0.243, 0.261) $$
#
# (`minimix.data.CIFAR10_MEAN`, `CIFAR10_STD`). Note the transpose: the images are stored NHWC, the network
# wants NCHW.
#
# ### Exercise — `normalize`
#
# If your function does not pass its check yet, the cells after it use minimix's own (and say so), so that the
# lesson still runs top to bottom; once you have fixed it, run its cell again, then the check. The same holds
# for the other exercises of this lesson.

# %% tags=["solution"]
def normalize(images):
    ### BEGIN SOLUTION
    x = images.astype(np.float32) / 255.0
    x = (x - mmdata.CIFAR10_MEAN) / mmdata.CIFAR10_STD
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    ### END SOLUTION

# %%
from minimix.lessons import check_normalize, yours_or_library

normalize = yours_or_library(check_normalize(normalize), normalize, mmdata.normalize)
x = normalize(data.train_images)
print("per-channel mean", x.mean(axis=(0, 2, 3)).round(3), " std", x.std(axis=(0, 2, 3)).round(3))

# %% [markdown]
# ## 3. Augmentation
#
# With 50,000 images and a network of 0.8 M parameters, overfitting starts after a few epochs. The
# standard CIFAR augmentations make every epoch see slightly different images:
#
# * **random crop**: pad by 4 black pixels on each side and cut a random 32x32 window (shifts by up to ±4 px);
# * **horizontal flip** with probability 1/2 (a mirrored cat is still a cat);
# * optionally **cutout**: blank a random square (DeVries & Taylor 2017).
#
# All are vectorised over the batch (`minimix.data.random_crop`, `random_flip`, `cutout`). One image,
# eight times:

# %%
image = data.train_images[np.flatnonzero(data.train_labels == 7)[0]]  # a horse (or stripes)
batch = np.repeat(image[None], 8, axis=0)
rows = {
    "original": batch,
    "crop": mmdata.random_crop(batch, 4, rng),
    "crop + flip": mmdata.random_flip(mmdata.random_crop(batch, 4, rng), rng),
    "cutout 12": mmdata.cutout(batch, 12, rng),
}
fig, axes = plt.subplots(len(rows), 8, figsize=(10, 5.5))
for ax_row, (name, images) in zip(axes, rows.items()):
    for ax, im in zip(ax_row, images):
        ax.imshow(im)
        ax.set_xticks([])
        ax.set_yticks([])
    ax_row[0].set_ylabel(name, fontsize=9)
plt.show()

# %% [markdown]
# `DataLoader` puts it together: shuffling, augmentation, normalisation, mini-batches. The order and the
# augmentation of epoch $e$ depend only on `(seed, e)` — which is what lets a crashed run resume exactly.

# %%
loader = mmdata.DataLoader(data.train_images, data.train_labels, batch_size=64, augment=True, seed=0)
print(len(loader), "batches per epoch")
loader.set_epoch(3)
xb, yb = next(iter(loader))
loader.set_epoch(3)
xb_again, _ = next(iter(loader))
print("batch:", xb.shape, xb.dtype, yb.shape, yb.dtype, "| epoch 3 reproducible:", np.array_equal(xb, xb_again))

# %% [markdown]
# ## 4. The loss: cross-entropy with label smoothing
#
# For logits $z \in \mathbb{R}^{C}$, $p = \operatorname{softmax}(z)$ and the target distribution $q$, the
# loss is $-\sum_c q_c \log p_c$, averaged over the batch. **Label smoothing** (Szegedy et al. 2016)
# replaces the one-hot target by
#
# $$ q_c = (1 - \varepsilon)\,[c = y] + \frac{\varepsilon}{C}, $$
#
# so the network is never pushed towards infinitely confident logits. The gradient is simply
# $\partial L / \partial z = (p - q)/N$. Compute $\log p$ stably: $\log p_c = z_c - m - \log\sum_j e^{z_j - m}$
# with $m = \max_j z_j$.
#
# ### Exercise — `cross_entropy(logits, labels, label_smoothing)` (a float)

# %% tags=["solution"]
def cross_entropy(logits, labels, label_smoothing):
    ### BEGIN SOLUTION
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n, c = logits.shape
    q = np.full_like(log_p, label_smoothing / c)
    q[np.arange(n), labels] += 1.0 - label_smoothing
    return float(-(q * log_p).sum() / n)
    ### END SOLUTION

# %%
from minimix.lessons import check_cross_entropy

check_cross_entropy(cross_entropy)

# %% [markdown]
# ## 5. Optimiser and learning-rate schedule
#
# The recipe (`minimix.training.TrainConfig`) is SGD with Nesterov momentum 0.9, weight decay $5\cdot10^{-4}$
# on convolution and linear weights only (not on biases and BatchNorm parameters:
# `minimix.optim.weight_decay_groups`), and a learning rate that warms up linearly, then follows a cosine
# to zero, updated every step:
#
# $$ \eta_t = \eta_{\max} \frac{t+1}{T_w} \;\; (t < T_w), \qquad
#    \eta_t = \tfrac{1}{2}\,\eta_{\max}\Big(1 + \cos\frac{\pi (t - T_w)}{T - T_w}\Big) \;\; (t \ge T_w). $$

# %%
from minimix.optim import SGD
from minimix.optim.lr_scheduler import WarmupCosineLR

steps_per_epoch, epochs = 196, 15  # the full run: 50,000 images in batches of 256
optimizer = SGD([mm.nn.Parameter(np.zeros(1, dtype=np.float32))], lr=0.2, momentum=0.9, nesterov=True)
schedule = WarmupCosineLR(optimizer, warmup_steps=steps_per_epoch, total_steps=epochs * steps_per_epoch)
lrs = []
for _ in range(epochs * steps_per_epoch):
    lrs.append(schedule.get_last_lr()[0])
    optimizer.step()
    schedule.step()
plt.plot(np.arange(len(lrs)) / steps_per_epoch, lrs)
plt.xlabel("epoch")
plt.ylabel("learning rate")
plt.title("one epoch of warm-up, then cosine decay (per step)")
plt.show()

# %% [markdown]
# Two more choices complete the recipe of `python -m minimix train`:
#
# * **the initial weights**: PyTorch's layer defaults (`init="pytorch"`), not the paper's initialisation
#   (He-normal on fan-out, a classifier that starts over-confident at a loss of about 3 instead of
#   $\ln 10$), which trained much more slowly with this recipe;
# * **the peak learning rate follows the batch**: 0.2 is the rate for a batch of 256; a batch of $B$
#   gets $0.2 \cdot B / 256$ (linear scaling: with fewer images per step, each step should move less), halved
#   when the warm-up is shorter than the full run's 195 steps (it then climbs too fast).
#
# `minimix.training.recipe.recipe_config(train_images, **options)` applies these rules and says what it chose;
# the command line uses the very same function.
#
# ## 6. A short training run
#
# `Trainer` runs the loop of every PyTorch training script — forward, loss, `zero_grad`, `backward`,
# `step`, scheduler step — with a `tqdm` progress bar (loss, accuracy and images per second), evaluates on
# the test subset after each epoch, and writes a checkpoint and `metrics.csv` into its run directory. Each
# epoch's summary line says where its time went: the training steps, waiting for data, the test-set
# evaluation and writing checkpoints.
#
# Here: the recipe above, four epochs over the 10,000-image subset at a batch of 128, with the MixNet at a
# quarter of its channels (`width_multiplier=0.25`), so that the run stays short on two cores
# (fast mode: a still narrower MixNet and a handful of steps).

# %%
import time

from minimix.training import Trainer, read_log
from minimix.training.plots import plot_confusion_matrix, plot_curves
from minimix.training.recipe import build_model, recipe_config

if FAST:
    model_kwargs, epochs, batch_size = {"width_multiplier": 0.25, "head_channels": 64}, 1, 32
else:
    model_kwargs, epochs, batch_size = {"width_multiplier": 0.25}, 4, 128
config = recipe_config(len(data.train_labels), log=print, model_kwargs=model_kwargs, epochs=epochs,
                       batch_size=batch_size)
mm.manual_seed(config.seed)
model = build_model(config.model, config.model_kwargs)
run_dir = Path(tempfile.mkdtemp(prefix="lesson6-"))
print(f"{config.model} {config.model_kwargs}: {model.num_parameters():,} parameters; batch {config.batch_size}, "
      f"peak learning rate {config.lr:g}, {config.epochs} epoch(s); run directory {run_dir}")
trainer = Trainer(model, (data.train_images, data.train_labels), (data.test_images, data.test_labels), config,
                  run_dir=run_dir, progress=True)
started = time.perf_counter()
history = trainer.fit()
run_seconds = time.perf_counter() - started

# %% [markdown]
# How this run went, and what the full recipe does — all computed: this run's numbers from its history,
# and the full recipe's accuracy read from the per-epoch metrics of the 15-epoch run recorded in the
# repository (`docs/results/`, see the README's "Results"; all 50,000 images, the full-width network).

# %%
images_per_s = np.mean([h["images_per_s"] for h in history])
print(f"this run: {run_seconds / 60:.1f} min for {config.epochs} epoch(s) of {len(data.train_labels):,} images "
      f"({images_per_s:.0f} training images/s), test accuracy {history[-1]['test_acc']:.1%} on "
      f"{len(data.test_labels):,} test images")
if model_kwargs:
    print("(this run trains a narrower MixNet than the full recipe's, so its speed does not tell the full run's "
          "time; `python -m minimix train` prints its own images/s and time per epoch)")
else:
    full_epoch_minutes = 50_000 / images_per_s / 60
    print(f"at this speed one epoch over all 50,000 images takes about {full_epoch_minutes:.0f} min, the full "
          f"recipe's 15 epochs about {15 * full_epoch_minutes / 60:.1f} h (its batch of 256 is somewhat faster "
          "per image)")
recorded = Path(mm.__file__).resolve().parents[1] / "docs" / "results" / "mixnet_cifar-15ep-metrics.csv"
if recorded.is_file():
    full = read_log(recorded)
    print(f"the recorded 15-epoch run ({recorded}): test accuracy {full['test_acc'][-1]:.1%} after 15 epochs, "
          f"{full['test_acc'][0]:.1%} after its first")
else:
    print(f"(the recorded 15-epoch run's metrics are not here: {recorded} is missing)")

# %% [markdown]
# The learning curves (`minimix.training.plots.plot_curves` reads the run's `metrics.csv`). Remember that
# the training loss includes label smoothing (it cannot reach 0) and the training accuracy is measured on
# augmented images while the weights change. The test loss uses BatchNorm's running statistics, which lag
# behind weights that are still changing fast early in a run; the cell after the curves compares the
# first epoch's test loss with the last's.

# %%
display(Image(filename=plot_curves(read_log(run_dir / "metrics.csv"), run_dir / "curves.png")))
first, last = history[0], history[-1]
test_losses = ", ".join(f"{h['test_loss']:.2f}" for h in history)
train_losses = ", ".join(f"{h['train_loss']:.2f}" for h in history)
print(f"per epoch: test loss {test_losses}; training loss (with label smoothing) {train_losses}")
if len(history) > 1 and first["test_loss"] > first["train_loss"] * 1.2:
    print("after the first epoch the test loss was well above the training loss; by the last epoch the gap had closed"
          if last["test_loss"] < last["train_loss"] * 1.2 else
          "after the first epoch the test loss was well above the training loss, and it still was at the end")

# %% [markdown]
# ## 7. The confusion matrix
#
# Accuracy hides *which* classes are confused. $M_{ij}$ = number of test images of true class $i$
# predicted as class $j$; the diagonal holds the correct ones.
#
# ### Exercise — `confusion_matrix(predictions, labels, num_classes)`

# %% tags=["solution"]
def confusion_matrix(predictions, labels, num_classes):
    ### BEGIN SOLUTION
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix
    ### END SOLUTION

# %%
from minimix.lessons import check_confusion_matrix
from minimix.training import evaluate

confusion_matrix = yours_or_library(check_confusion_matrix(confusion_matrix), confusion_matrix,
                                    mm.training.confusion_matrix)
test_loader = mmdata.DataLoader(data.test_images, data.test_labels, batch_size=250, shuffle=False)
result = evaluate(model, test_loader)
matrix = confusion_matrix(result["predictions"], result["labels"], len(data.classes))
print(f"test accuracy {result['acc']:.1%} on {len(result['labels'])} images")
display(Image(filename=plot_confusion_matrix(matrix, data.classes, run_dir / "confusion.png",
                                             title=f"short run: {result['acc']:.1%}")))

# %% [markdown]
# ## 8. A finished run
#
# A checkpoint is two files: a JSON with the recipe (`config`), the epoch, the metrics history and the
# random-number state, and an `.npz` with every array (weights, BatchNorm statistics, momentum buffers).
# Rebuilding the model from the recipe and loading the weights is what `load_trained_model` does
# (`minimix.training.read_checkpoint` checks the file first: keys, dtypes, finite values, the recipe).
# `find_checkpoint` takes `$MINIMIX_CHECKPOINT` if set, else your most recent *completed* full-data run in
# `runs/` (a `--limit` quick look or an unfinished run is not a trained model), else the small checkpoint
# shipped with minimix; it prints which one and its accuracy.

# %%
checkpoint = find_checkpoint()
if checkpoint is not None:
    trained, trained_config, state = load_trained_model(checkpoint)
    print(f"{trained_config.model} {trained_config.model_kwargs}, trained for {state['epoch']} epoch(s) "
          f"({trained.num_parameters():,} parameters)")

# %%
if checkpoint is not None:
    history_log = {key: np.array([epoch[key] for epoch in state["history"]], dtype=float)
                   for key in ("epoch", "train_loss", "test_loss", "train_acc", "test_acc")}
    display(Image(filename=plot_curves(history_log, run_dir / "trained_curves.png")))

    n_eval = 500 if FAST else 2000  # `python -m minimix evaluate RUN_DIR` scores all 10,000
    eval_data = load_data(train_limit=1, test_limit=n_eval, verbose=False)
    trained_result = evaluate(trained, mmdata.DataLoader(eval_data.test_images, eval_data.test_labels,
                                                         batch_size=250, shuffle=False))
    trained_matrix = confusion_matrix(trained_result["predictions"], trained_result["labels"], 10)
    print(f"test accuracy {trained_result['acc']:.1%} on {n_eval} test images")
    display(Image(filename=plot_confusion_matrix(trained_matrix, eval_data.classes, run_dir / "trained_cm.png",
                                                 title=f"finished run: {trained_result['acc']:.1%}")))

    wrong = np.flatnonzero(trained_result["predictions"] != trained_result["labels"])[:8]
    if len(wrong):
        fig, axes = plt.subplots(1, len(wrong), figsize=(1.6 * len(wrong), 2.2), squeeze=False)
        for ax, i in zip(axes[0], wrong):
            ax.imshow(eval_data.test_images[i])
            ax.set_title(f"{eval_data.classes[trained_result['labels'][i]]}\n"
                         f"-> {eval_data.classes[trained_result['predictions'][i]]}", fontsize=7)
            ax.axis("off")
        fig.suptitle("mistakes: true class -> prediction", fontsize=9)
        plt.show()
else:
    print("(skipped: no trained checkpoint)")

# %% [markdown]
# ## Summary
#
# * The pipeline: uint8 NHWC images -> augmentation (crop, flip, cutout) -> normalisation to NCHW float32
#   -> mini-batches whose order and augmentation are a pure function of (seed, epoch).
# * The loss is cross-entropy with label smoothing; the optimiser SGD + Nesterov with weight decay on
#   weights only; the learning rate warms up, then follows a cosine.
# * `Trainer` checkpoints every epoch; a checkpoint holds the recipe, so a model can be rebuilt from it
#   alone.
#
# Next: [Lesson 7](07_receptive_fields.ipynb) — what does each MixConv group actually look at?
