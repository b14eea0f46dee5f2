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

The first load decodes and caches both splits as ``.npy`` (see
:mod:`minimix.data.cache`); later loads take a fraction of a second.
"""
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import cache
from .archive import is_archive_name, iter_tar_files
from .download import URL, download_cifar10
from .errors import DatasetError
from .image_folder import find_tree, list_image_files, read_image_folder
from .official import (BINARY_ARCHIVE, BINARY_FOLDER, CLASSES, PYTHON_ARCHIVE, PYTHON_FOLDER,
                       batch_files, read_official)

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


def load_split(source: Source, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of ``split`` from the cache, decoding and caching both splits on a miss."""
    key = cache.fingerprint(source.files())
    cached = cache.load("cifar10", source.path, key, split)
    if cached is not None:
        return cached
    splits = source.read()
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
    Corrupt or truncated files raise :class:`DatasetError` naming the file.
    """

    classes = CLASSES

    def __init__(self, root=None, train: bool = True, download: bool = False):
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
        self.images, self.labels = load_split(source, "train" if train else "test")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        """``(image (32, 32, 3) uint8, label)``; slices and index arrays give batches."""
        return self.images[index], self.labels[index]

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return f"CIFAR10(split={split!r}, n={len(self)}, source={str(self.source)!r})"
