"""``CIFAR10``: the 60,000 32x32 colour images of CIFAR-10, from any of its usual formats.

Where the data is looked for (``root``):

1. the ``root`` argument, else
2. the ``MINIMIX_DATA`` environment variable, else
3. the minimix cache folder (``$MINIMIX_CACHE`` or ``~/.cache/minimix``; where
   ``download=True`` puts it by default).

``root`` may be an archive itself, or a folder holding (first match wins):

* ``cifar-10-batches-py/`` or ``cifar-10-python.tar.gz``   (official python version)
* ``cifar-10-batches-bin/`` or ``cifar-10-binary.tar.gz``  (official binary version)
* a batches folder itself (``data_batch_1``... or ``data_batch_1.bin``...)
* an image-folder tree ``train/<class>/*.png|jpg``, ``test/<class>/...``,
  directly or in one subfolder
* one ``.tar.gz``/``.tgz``/``.tar`` archive (of any of the above)

Nothing goes silently missing: CIFAR-10 has the same number of images in every
class (5,000 training and 1,000 test images, :data:`OFFICIAL_PER_CLASS`), so after
decoding, the images of each class are counted (:func:`check_class_counts`) and a
split whose classes differ is refused, with a message naming the file, the split,
each class that is off and its count against the expected one. By default the
expected count is the one most classes have, at most the official one (so a
balanced reduced copy, like the small sets the tests write, loads);
``per_class={"train": n, "test": m}`` asks for exact counts instead
(``per_class=OFFICIAL_PER_CLASS``: the full data set, nothing less). A ``--limit``
run takes its class-balanced subset after loading (``minimix.training.recipe``), so
the check always sees the whole set.

The first load decodes, checks and caches both splits as ``.npy`` (see
:mod:`minimix.data.cache`; a decode that fails a check is never cached); later
loads take a fraction of a second, verifying the cache's SHA-256 checksums.
"""
import os
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import cache
from .archive import is_archive_name, iter_tar_files
from .download import URL, download_cifar10
from .errors import DatasetError
from .image_folder import find_tree, list_image_files, read_image_folder
from .official import (BINARY_ARCHIVE, BINARY_FOLDER, CLASSES, NUM_CLASSES, OFFICIAL_PER_CLASS,
                       PYTHON_ARCHIVE, PYTHON_FOLDER, batch_files, read_official)

FORMATS_SEARCHED = f"""\
  - {PYTHON_FOLDER}/ or {PYTHON_ARCHIVE}  (official python version)
  - {BINARY_FOLDER}/ or {BINARY_ARCHIVE}  (official binary version)
  - the batch files themselves (data_batch_1..5, test_batch, with or without .bin)
  - an image-folder tree train/<class>/*.png|jpg and test/<class>/..., directly or in one subfolder
  - a .tar.gz/.tgz/.tar archive of any of these"""


class Source(NamedTuple):
    """Where a dataset is read from: ``kind`` is "python", "binary" or "images"."""
    kind: str
    path: Path

    def files(self) -> list[Path]:
        """The files whose size and mtime make up the cache key."""
        if self.path.is_file():
            return [self.path]
        if self.kind == "images":
            return list_image_files(find_tree(self.path) or self.path)
        names = batch_files(self.kind)
        # a missing batch is reported by read(); here it just changes the key
        return [self.path / name for name in names["train"] + names["test"]
                if (self.path / name).is_file()]

    def read(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        if self.kind == "images":
            return read_image_folder(self.path)
        return read_official(self.path, self.kind)


def resolve_root(root=None) -> tuple[Path, str]:
    """(root folder or archive, where it came from) following argument > $MINIMIX_DATA > cache."""
    if root is not None:
        return Path(root).expanduser(), "given as root="
    if os.environ.get("MINIMIX_DATA"):
        return Path(os.environ["MINIMIX_DATA"]).expanduser(), "from $MINIMIX_DATA"
    return cache.cache_dir(), "the minimix cache folder, as neither root= nor $MINIMIX_DATA was given"


def _archive_kind(path: Path) -> str:
    """Tell the official archives from an image-folder archive by their member names."""
    if path.name == PYTHON_ARCHIVE:
        return "python"
    if path.name == BINARY_ARCHIVE:
        return "binary"
    for member, _ in iter_tar_files(path, limit=3):
        parts = Path(member).parts
        if PYTHON_FOLDER in parts:
            return "python"
        if BINARY_FOLDER in parts:
            return "binary"
    return "images"


def find_source(root: Path) -> Source | None:
    """The dataset found at ``root`` (a folder or an archive), or None."""
    if root.is_file():
        if not is_archive_name(root):
            raise DatasetError(f"{root}: not a dataset archive (expected a name ending in "
                               ".tar.gz, .tgz or .tar)")
        return Source(_archive_kind(root), root)
    if not root.is_dir():
        return None
    for kind in ("python", "binary"):
        if (root / batch_files(kind)["train"][0]).is_file():
            return Source(kind, root)
    for kind, name in (("python", PYTHON_FOLDER), ("python", PYTHON_ARCHIVE),
                       ("binary", BINARY_FOLDER), ("binary", BINARY_ARCHIVE)):
        if (root / name).exists():
            return Source(kind, root / name)
    if find_tree(root) is not None:
        return Source("images", root)
    archives = sorted(p for p in root.iterdir() if p.is_file() and is_archive_name(p))
    if len(archives) > 1:  # prefer the ones that say what they are
        archives = [p for p in archives if "cifar" in p.name.lower()] or archives
    if len(archives) > 1:
        raise ValueError(f"root {root} holds several archives ({', '.join(p.name for p in archives)}); "
                         "pass root=<the archive> to choose one")
    return Source(_archive_kind(archives[0]), archives[0]) if archives else None


def checked_per_class(per_class) -> dict[str, int] | None:
    """``per_class`` as a dict after checking it: None, or ``{"train": n, "test": m}`` (either key may
    be left out) with positive counts."""
    if per_class is None:
        return None
    if not isinstance(per_class, Mapping) or not set(per_class) <= set(OFFICIAL_PER_CLASS) or any(
            isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1 for n in per_class.values()):
        raise ValueError(f"per_class must be None or a dict like {OFFICIAL_PER_CLASS} (images per class in "
                         f"each split, positive integers), got {per_class!r}")
    return {split: int(n) for split, n in per_class.items()}


def check_class_counts(labels: np.ndarray, split: str, where, per_class: dict | None = None):
    """Refuse a split whose classes do not all have the expected number of images.

    The expected count is ``per_class[split]`` when given; otherwise the count most classes have
    (the larger one on a tie; classes with no images do not vote), but at most the official one
    (:data:`OFFICIAL_PER_CLASS`). The :class:`DatasetError` names ``where`` (the file or folder), the
    split, every class that is off with its count against the expected one, and the totals.
    """
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    official = OFFICIAL_PER_CLASS[split]
    if per_class is not None and split in per_class:
        expected, rule = per_class[split], f"per_class={per_class} was asked for"
    else:
        values, votes = np.unique(counts[counts > 0], return_counts=True)
        expected = min(int(values[votes == votes.max()].max()), official) if values.size else official
        rule = ("a reduced copy must keep every class the same size; if the archive or folder was cut "
                "short or lost files, copy or download it again")
    off = [label for label in range(NUM_CLASSES) if counts[label] != expected]
    if off:
        listing = ", ".join(f"{CLASSES[label]} ({counts[label]:,} of {expected:,})" for label in off)
        found, wanted = int(counts.sum()), expected * NUM_CLASSES
        raise DatasetError(
            f"{where}: the {split} split is incomplete or not CIFAR-10; classes whose image count is off "
            f"(found of expected): {listing} ({found:,} images found, {wanted:,} expected). Every CIFAR-10 "
            f"class has the same number of images ({OFFICIAL_PER_CLASS['train']:,} per class for training, "
            f"{OFFICIAL_PER_CLASS['test']:,} for testing in the official set); {rule}.")


def load_split(source: Source, split: str, per_class: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of ``split`` from the cache, decoding and caching both splits on a miss.

    Both splits are counted (:func:`check_class_counts`) before anything is cached, so an incomplete
    decode is never cached; a cached split is counted again (``per_class`` may differ from the
    first load's)."""
    key = cache.fingerprint(source.files())
    cached = cache.load("cifar10", source.path, key, split)
    if cached is not None:
        check_class_counts(cached[1], split, source.path, per_class)
        return cached
    splits = source.read()
    for name, (_, labels) in splits.items():
        check_class_counts(labels, name, source.path, per_class)
    cache.save("cifar10", source.path, key, splits)
    return splits[split]


class CIFAR10:
    """The CIFAR-10 training (50,000 images) or test (10,000 images) split.

    Attributes:
        images:  uint8 array (N, 32, 32, 3), RGB, "NHWC" layout.
        labels:  int64 array (N,), values 0..9.
        classes: the ten class names; ``classes[label]`` names a label.
        source:  the folder or archive the data was read from.

    ``CIFAR10(train=False)`` is the test split. ``download=True`` fetches the
    official python version (163 MB) into ``root`` when no dataset is found there.
    Corrupt or truncated files raise :class:`DatasetError` naming the file, and so
    does a split whose classes do not all have the same number of images: at most
    the official 5,000 (train) / 1,000 (test) by default, exactly
    ``per_class[split]`` when ``per_class={"train": n, "test": m}`` is given
    (``per_class=OFFICIAL_PER_CLASS`` insists on the full data set).
    """

    classes = CLASSES

    def __init__(self, root=None, train: bool = True, download: bool = False, per_class=None):
        per_class = checked_per_class(per_class)
        root, origin = resolve_root(root)
        source = find_source(root)
        if source is None and download:
            if is_archive_name(root):
                raise ValueError(f"download=True needs root to be a folder to download into, "
                                 f"got the archive path {root} (which does not exist)")
            source = Source("python", download_cifar10(root))
        if source is None:
            raise FileNotFoundError(
                f"No CIFAR-10 data found at {root} ({origin}). Looked for:\n"
                f"{FORMATS_SEARCHED}\n"
                f"Pass download=True to fetch the official archive from {URL}, or point root= or "
                "the MINIMIX_DATA environment variable at a folder or archive holding one of these.")
        self.source = source.path
        self.train = bool(train)
        self.images, self.labels = load_split(source, "train" if train else "test", per_class)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        """``(image (32, 32, 3) uint8, label)``; slices and index arrays give batches."""
        return self.images[index], self.labels[index]

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return f"CIFAR10(split={split!r}, n={len(self)}, source={str(self.source)!r})"
