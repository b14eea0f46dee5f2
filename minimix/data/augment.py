"""Normalisation and the standard CIFAR augmentations, vectorised over a whole batch.

All functions take a batch of images in NHWC layout (N, H, W, C) -- the layout
of ``CIFAR10.images`` -- and a ``numpy.random.Generator``; none loops over the
images in Python. They return new arrays and leave their input untouched.

* :func:`random_crop`: pad each image with ``padding`` zero pixels on every side,
  then cut a random HxW window out of it (shifts the content by up to
  ``padding`` pixels, filling the uncovered border with black).
* :func:`random_flip`: mirror each image left-right with probability 1/2.
* :func:`cutout`: zero a random ``size``x``size`` square in each image
  (DeVries & Taylor 2017); its centre may lie near the border, so the square is
  clipped to the image.
* :func:`normalize`: uint8 NHWC -> float32 NCHW, ``(x/255 - mean[c]) / std[c]``.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

# Per-channel (R, G, B) mean and standard deviation of the 50,000 CIFAR-10 training
# images on the 0..1 scale, over all 50000*32*32 pixels of each channel (population
# std, not the mean of per-image stds). Computed from the decoded training set with
#     x = CIFAR10(train=True).images.reshape(-1, 3) / 255.0   # float64
#     x.mean(axis=0), x.std(axis=0)
# on the JPEG copy in ../shared/data (the only copy available here), giving
# mean (0.49125, 0.48209, 0.44652) and std (0.24523, 0.24278, 0.26063). The official
# lossless archives give the often quoted (0.4914, 0.4822, 0.4465) and
# (0.2470, 0.2435, 0.2616): JPEG smoothing lowers the std by ~0.002. Either set
# works for training; tests/test_data_cifar.py checks these against the real data.
CIFAR10_MEAN = np.array([0.4913, 0.4821, 0.4465], dtype=np.float32)
CIFAR10_STD = np.array([0.2452, 0.2428, 0.2606], dtype=np.float32)


def _check_batch(batch: np.ndarray, name: str = "batch") -> np.ndarray:
    batch = np.asarray(batch)
    if batch.ndim != 4:
        raise ValueError(f"{name} must be a batch of images (N, H, W, C), got shape {batch.shape}")
    return batch


def normalize(batch: np.ndarray, mean=CIFAR10_MEAN, std=CIFAR10_STD) -> np.ndarray:
    """uint8 images (N, H, W, C) -> float32 (N, C, H, W) with ``y = (x/255 - mean[c]) / std[c]``.

    This is the tensor the network sees: channel-first, and each channel about
    zero-mean and unit-variance over the training set.
    """
    batch = _check_batch(batch)
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    if mean.shape != (batch.shape[3],) or std.shape != (batch.shape[3],):
        raise ValueError(f"mean and std need one value per channel ({batch.shape[3]}), got shapes "
                         f"{mean.shape} and {std.shape}")
    # transpose the uint8 array first: moving 1-byte values is 4x cheaper than float32
    out = np.ascontiguousarray(batch.transpose(0, 3, 1, 2)).astype(np.float32)
    out *= (1.0 / (255.0 * std))[:, None, None]
    out -= (mean / std)[:, None, None]
    return out


def random_crop(batch: np.ndarray, padding: int, rng: np.random.Generator) -> np.ndarray:
    """Zero-pad by ``padding`` on each side, then take a random (H, W) window per image.

    With ``P = padded batch (N, H+2p, W+2p, C)`` and offsets ``dy, dx`` drawn
    uniformly from 0..2p for each image, ``out[i] = P[i, dy:dy+H, dx:dx+W]``.
    All N windows are gathered at once through a strided *view* ``windows`` with
    ``windows[i, dy, dx, y, x, c] = P[i, dy + y, dx + x, c]`` (no copies), then
    one fancy index ``windows[arange(N), dy, dx]`` copies the chosen ones.
    """
    batch = _check_batch(batch)
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    n, h, w, c = batch.shape
    padded = np.zeros((n, h + 2 * padding, w + 2 * padding, c), batch.dtype)
    padded[:, padding:padding + h, padding:padding + w] = batch
    dy = rng.integers(0, 2 * padding + 1, size=n)
    dx = rng.integers(0, 2 * padding + 1, size=n)
    s_n, s_y, s_x, s_c = padded.strides
    windows = as_strided(padded, shape=(n, 2 * padding + 1, 2 * padding + 1, h, w, c),
                         strides=(s_n, s_y, s_x, s_y, s_x, s_c), writeable=False)
    return windows[np.arange(n), dy, dx]


def random_flip(batch: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """Mirror each image left-right (``image[:, ::-1]``) with probability ``p``."""
    batch = _check_batch(batch)
    flip = rng.random(batch.shape[0]) < p
    out = batch.copy()
    out[flip] = batch[flip, :, ::-1]
    return out


def cutout_mask(n: int, height: int, width: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean (n, height, width), True inside one ``size`` x ``size`` square per image.

    Each centre ``(cy, cx)`` is uniform over the image; the square covers rows
    ``cy - size//2 <= y < cy - size//2 + size`` (same for columns), clipped to the image.
    """
    if size < 0:
        raise ValueError(f"cutout size must be >= 0, got {size}")
    top = rng.integers(0, height, size=n) - size // 2
    left = rng.integers(0, width, size=n) - size // 2
    rows = np.arange(height) - top[:, None]  # (n, height): row index relative to the square
    cols = np.arange(width) - left[:, None]
    inside_rows = (rows >= 0) & (rows < size)
    inside_cols = (cols >= 0) & (cols < size)
    return inside_rows[:, :, None] & inside_cols[:, None, :]


def cutout(batch: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Set a random (clipped) ``size`` x ``size`` square of each NHWC image to 0 (all channels)."""
    batch = _check_batch(batch)
    mask = cutout_mask(batch.shape[0], batch.shape[1], batch.shape[2], size, rng)
    return np.where(mask[..., None], np.zeros((), batch.dtype), batch)
