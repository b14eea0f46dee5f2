"""A small synthetic stand-in for CIFAR-10, so the lessons run where the real data is absent.

Ten classes of 32x32 RGB images: stripes (a sinusoidal grating) at one of five orientations,
in a warm (red/yellow) or a cold (blue/green) colour scheme. Every image gets a random stripe
frequency, phase and contrast, a random tint within its scheme, and pixel noise, so a network
must learn oriented filters (and colour) to tell the classes apart -- a few epochs of a small
convnet reach high accuracy. It has CIFAR-10's layout (uint8 NHWC images, int64 labels), so
every lesson runs unchanged on it; its numbers say nothing about CIFAR-10 itself.
"""
from __future__ import annotations

import numpy as np

ORIENTATIONS = (0, 36, 72, 108, 144)  # degrees
SCHEMES = ("warm", "cold")
CLASSES = tuple(f"{scheme} stripes {angle}deg" for scheme in SCHEMES for angle in ORIENTATIONS)


def synthetic_images(n: int, seed: int = 0, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (n, size, size, 3), labels int64 (n,))``, the classes in turn (balanced)."""
    if n < 1:
        raise ValueError(f"synthetic_images: n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % len(CLASSES)
    rng.shuffle(labels)
    angle = np.deg2rad(np.array(ORIENTATIONS, dtype=np.float64)[labels % len(ORIENTATIONS)])
    angle += rng.normal(0.0, np.deg2rad(4), n)  # a little jitter within each class
    frequency = rng.uniform(0.15, 0.45, n)  # radians per pixel
    phase = rng.uniform(0, 2 * np.pi, n)
    contrast = rng.uniform(0.25, 0.5, n)

    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    along = (np.cos(angle)[:, None, None] * cols + np.sin(angle)[:, None, None] * rows)
    wave = np.sin(frequency[:, None, None] * along + phase[:, None, None])  # (n, size, size) in [-1, 1]

    warm = labels < len(ORIENTATIONS)
    base = np.where(warm[:, None], [0.85, 0.45, 0.15], [0.15, 0.45, 0.85])  # (n, 3) RGB
    tint = base + rng.normal(0.0, 0.08, (n, 3))
    brightness = 0.5 + contrast[:, None, None, None] * wave[..., None]  # (n, size, size, 1)
    images = brightness * tint[:, None, None, :] * 1.4 + rng.normal(0.0, 0.03, (n, size, size, 3))
    return (np.clip(images, 0.0, 1.0) * 255).round().astype(np.uint8), labels
