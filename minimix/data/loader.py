"""``DataLoader``: shuffled, augmented, normalised mini-batches from arrays in memory.

Reproducibility: everything random in epoch ``e`` -- the order of the images
and every crop offset, flip and cutout square -- is drawn from one generator
seeded by ``(seed, e)``. So epoch e looks the same on every run, and a run
resumed at epoch e (after ``loader.set_epoch(e)``) continues exactly as if it
had never stopped.
"""
import math

import numpy as np

from .augment import cutout_mask, normalize, random_crop, random_flip

CROP_PADDING = 4


class DataLoader:
    """Iterate over ``(x, y)`` mini-batches of a dataset held in two arrays.

    Args:
        images: uint8 (N, H, W, 3), e.g. ``CIFAR10().images``.
        labels: integer (N,).
        batch_size: images per batch; the last batch is smaller unless ``drop_last``.
        shuffle: visit the images in a new random order each epoch.
        augment: random crop (4-pixel zero padding) and horizontal flip.
        cutout: if > 0, zero a random ``cutout`` x ``cutout`` square of each
            normalised image (0 = the dataset's mean colour).
        seed: with the epoch, determines all randomness.

    Yields ``x`` float32 (B, 3, H, W) normalised with CIFAR-10's mean and std and
    ``y`` int64 (B,). ``len(loader)`` is the number of batches per epoch. Each
    ``iter(loader)`` uses the current epoch and then advances it by one, so
    plain ``for epoch ...: for x, y in loader`` also reshuffles every epoch.
    """

    def __init__(self, images, labels, batch_size: int, shuffle: bool = True, augment: bool = False,
                 cutout: int = 0, drop_last: bool = False, seed: int = 0):
        images, labels = np.asarray(images), np.asarray(labels)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
        if labels.shape != images.shape[:1] or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be integers of shape ({len(images)},), got "
                             f"{labels.dtype} {labels.shape}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if int(seed) < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if int(cutout) < 0:
            raise ValueError(f"cutout must be >= 0, got {cutout}")
        self.images, self.labels = images, labels.astype(np.int64)
        self.batch_size, self.shuffle, self.augment = int(batch_size), bool(shuffle), bool(augment)
        self.cutout, self.drop_last, self.seed = int(cutout), bool(drop_last), int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int):
        """Make the next iteration epoch ``epoch`` (its order and augmentation depend only on
        (seed, epoch))."""
        self.epoch = int(epoch)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        n = len(self.labels)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start:start + self.batch_size]
            images = self.images[index]
            if self.augment:
                images = random_flip(random_crop(images, CROP_PADDING, rng), rng)
            x = normalize(images)
            if self.cutout:
                x *= ~cutout_mask(len(x), x.shape[2], x.shape[3], self.cutout, rng)[:, None]
            yield x, self.labels[index]
