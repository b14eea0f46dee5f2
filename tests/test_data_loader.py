"""DataLoader (shapes, order, determinism under seed and set_epoch) and the augmentations."""
import numpy as np
import pytest

from minimix.data import (CIFAR10_MEAN, CIFAR10_STD, DataLoader, cutout, cutout_mask, normalize,
                          random_crop, random_flip)


def random_images(n, h=32, w=32, low=0, seed=0):
    return np.random.default_rng(seed).integers(low, 256, (n, h, w, 3), dtype=np.uint8)


def batches(loader):
    return [(x.copy(), y.copy()) for x, y in loader]


# ---------------------------------------------------------------- normalize

def test_normalize_formula_and_layout():
    images = random_images(3, 5, 7)
    x = normalize(images)
    assert x.dtype == np.float32 and x.shape == (3, 3, 5, 7) and x.flags.c_contiguous
    expected = (images / 255.0 - CIFAR10_MEAN.astype(np.float64)) / CIFAR10_STD
    np.testing.assert_allclose(x, expected.transpose(0, 3, 1, 2), rtol=1e-5, atol=1e-5)
    custom = normalize(images, mean=[0.5, 0.5, 0.5], std=[0.5, 0.25, 1.0])
    np.testing.assert_allclose(custom[:, 1], (images[..., 1] / 255.0 - 0.5) / 0.25, atol=1e-5)
    with pytest.raises(ValueError, match="one value per channel"):
        normalize(images, mean=[0.5, 0.5])
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        normalize(images[0])


# ---------------------------------------------------------------- augmentations

@pytest.mark.parametrize("padding", [0, 1, 4])
def test_random_crop_is_a_window_of_the_zero_padded_image(padding):
    images = random_images(300, 6, 5, low=1)  # no zero pixels: padding is recognisable
    out = random_crop(images, padding, np.random.default_rng(0))
    assert out.shape == images.shape and out.dtype == np.uint8
    padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = set()
    for i in range(len(images)):  # find the window each crop came from (a test may loop)
        hits = [(dy, dx) for dy in range(2 * padding + 1) for dx in range(2 * padding + 1)
                if np.array_equal(out[i], padded[i, dy:dy + 6, dx:dx + 5])]
        assert len(hits) == 1, f"crop {i} is not exactly one window of the padded image"
        offsets |= set(hits)
    for axis in (0, 1):
        assert {o[axis] for o in offsets} == set(range(2 * padding + 1)), "all shifts 0..2p occur"


def test_random_flip_is_an_exact_mirror_half_of_the_time():
    images = random_images(1000, 4, 6)
    before = images.copy()
    out = random_flip(images, np.random.default_rng(0))
    same = np.all(out == images, axis=(1, 2, 3))
    mirrored = np.all(out == images[:, :, ::-1], axis=(1, 2, 3))
    assert np.all(same ^ mirrored), "each image is either unchanged or exactly mirrored"
    assert 400 < mirrored.sum() < 600
    np.testing.assert_array_equal(images, before)  # input untouched


@pytest.mark.parametrize("size", [1, 4, 7])
def test_cutout_zeroes_exactly_one_clipped_square(size):
    images = random_images(500, 8, 9, low=1)
    out = cutout(images, size, np.random.default_rng(0))
    zero = out == 0
    assert np.all(zero.all(axis=3) == zero.any(axis=3)), "all channels of a pixel go together"
    zero = zero[..., 0]
    clipped = [0, 0]  # per axis
    for i in range(len(images)):
        rows, cols = np.flatnonzero(zero[i].any(axis=1)), np.flatnonzero(zero[i].any(axis=0))
        top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        square = np.zeros_like(zero[i])
        square[top:bottom, left:right] = True
        np.testing.assert_array_equal(zero[i], square)  # a full rectangle, nothing else
        for axis, (start, stop, extent) in enumerate(((top, bottom, 8), (left, right, 9))):
            if start > 0 and stop < extent:
                assert stop - start == size, "a square away from the border is not clipped"
            else:
                assert 1 <= stop - start <= size
                clipped[axis] += stop - start < size
        np.testing.assert_array_equal(out[i][~square], images[i][~square])
    assert size == 1 or min(clipped) > 0, "squares near each border are clipped"
    mask = cutout_mask(500, 8, 9, size, np.random.default_rng(0))
    np.testing.assert_array_equal(mask, zero)  # cutout is exactly its mask


def test_augmentations_are_deterministic_given_the_generator():
    images = random_images(64)
    for fn in (lambda b, r: random_crop(b, 4, r), random_flip, lambda b, r: cutout(b, 8, r)):
        a, b = fn(images, np.random.default_rng(5)), fn(images, np.random.default_rng(5))
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, fn(images, np.random.default_rng(6)))


# ---------------------------------------------------------------- DataLoader

@pytest.mark.parametrize("drop_last", [False, True])
def test_loader_shapes_dtypes_and_length(drop_last):
    images, labels = random_images(70), np.arange(70) % 10
    loader = DataLoader(images, labels, batch_size=32, drop_last=drop_last, augment=True, cutout=8)
    sizes = [len(x) for x, _ in loader]
    assert len(loader) == len(sizes) == (2 if drop_last else 3)
    assert sizes == ([32, 32] if drop_last else [32, 32, 6])
    x, y = next(iter(loader))
    assert x.dtype == np.float32 and x.shape == (32, 3, 32, 32) and x.flags.c_contiguous
    assert y.dtype == np.int64 and y.shape == (32,)


def test_loader_visits_every_image_once_and_matches_the_labels():
    images = random_images(50)
    loader = DataLoader(images, np.arange(50), batch_size=8, shuffle=True, seed=3)
    seen = []
    for x, y in loader:
        np.testing.assert_allclose(x, normalize(images[y]))  # no augmentation: exact
        seen += list(y)
    assert sorted(seen) == list(range(50)) and seen != list(range(50))
    plain = DataLoader(images, np.arange(50), batch_size=8, shuffle=False)
    assert [int(i) for _, y in plain for i in y] == list(range(50))


@pytest.mark.parametrize("augment, cutout_size", [(False, 0), (True, 0), (True, 12)])
def test_loader_epochs_are_a_pure_function_of_seed_and_epoch(augment, cutout_size):
    images, labels = random_images(40), np.arange(40)

    def make(seed=7):
        return DataLoader(images, labels, 16, augment=augment, cutout=cutout_size, seed=seed)

    run = make()
    epochs = [batches(run) for _ in range(3)]  # each pass advances the epoch
    resumed = make()
    resumed.set_epoch(2)  # e.g. a run resumed at epoch 2
    for (x, y), (x2, y2) in zip(epochs[2], batches(resumed)):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    run.set_epoch(0)
    np.testing.assert_array_equal(batches(run)[0][0], epochs[0][0][0])
    assert not np.array_equal(epochs[0][0][1], epochs[1][0][1]), "epochs are shuffled differently"
    assert not np.array_equal(batches(make(seed=8))[0][1], epochs[0][0][1]), "seeds differ"


def test_loader_cutout_sets_a_square_to_the_mean_colour():
    images = random_images(20, low=1)
    loader = DataLoader(images, np.arange(20), batch_size=20, shuffle=False, cutout=10)
    x, _ = next(iter(loader))
    zero = np.all(x == 0, axis=1)
    reference = normalize(images)
    np.testing.assert_array_equal(x[~np.broadcast_to(zero[:, None], x.shape)],
                                  reference[~np.broadcast_to(zero[:, None], x.shape)])
    assert zero.any(axis=(1, 2)).all() and zero.sum(axis=(1, 2)).max() <= 100


@pytest.mark.parametrize("kwargs, match", [
    (dict(images=np.zeros((4, 32, 32, 3), np.float32)), "uint8"),
    (dict(labels=np.zeros(3, np.int64)), "labels"),
    (dict(batch_size=0), "batch_size"),
    (dict(cutout=-1), "cutout"),
    (dict(seed=-1), "seed"),
])
def test_loader_rejects_bad_arguments(kwargs, match):
    args = dict(images=np.zeros((4, 32, 32, 3), np.uint8), labels=np.zeros(4, np.int64), batch_size=2)
    with pytest.raises(ValueError, match=match):
        DataLoader(**{**args, **kwargs})
