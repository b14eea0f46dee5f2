"""A cache of decoded datasets as ``.npy`` files, so that only the first load decodes.

Where: ``$MINIMIX_CACHE`` if set, else ``$XDG_CACHE_HOME/minimix``, else
``~/.cache/minimix`` -- never beside the dataset, whose folder may be read-only.

Key: a hash of the source's absolute path and of the size and modification
time of every file it is read from, plus :data:`VERSION` (bumped when decoding
changes). Editing, replacing or re-downloading the source changes the key, so a
stale cache is never used; entries of an older key for the same path are deleted
when a new one is written.

Loading memory-maps the images (copy-on-write), so it takes milliseconds.
Each array is written to a temporary file and renamed into place (``os.replace``
is atomic), so an interrupted write never leaves a file that looks complete.
"""
import hashlib
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

VERSION = 1


def cache_dir() -> Path:
    """The user's minimix cache folder (not created here)."""
    if os.environ.get("MINIMIX_CACHE"):
        return Path(os.environ["MINIMIX_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "minimix"


def fingerprint(files: list[Path]) -> str:
    """Hash of (path, size, mtime) of each file: changes whenever any of them changes."""
    digest = hashlib.sha256(f"v{VERSION}".encode())
    for file in files:
        stat = os.stat(file)
        digest.update(f"{os.path.abspath(file)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _prefix(name: str, source: Path) -> str:
    return f"{name}-{hashlib.sha256(str(Path(source).resolve()).encode()).hexdigest()[:12]}"


def _paths(name: str, source: Path, key: str, split: str) -> tuple[Path, Path]:
    stem = cache_dir() / f"{_prefix(name, source)}-{key}-{split}"
    return stem.with_name(stem.name + "-images.npy"), stem.with_name(stem.name + "-labels.npy")


def load(name: str, source: Path, key: str, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached (images, labels) of ``split``, or None if absent or unreadable."""
    images_path, labels_path = _paths(name, source, key, split)
    if not (images_path.is_file() and labels_path.is_file()):
        return None
    try:
        # copy-on-write memory map: instant, pages are read when first used, and the
        # arrays stay writable without ever changing the file (plain ndarrays, not np.memmap)
        images = np.asarray(np.load(images_path, mmap_mode="c"))
        labels = np.load(labels_path)
    except (OSError, ValueError) as error:
        warnings.warn(f"ignoring unreadable cache file in {cache_dir()}: {error}", stacklevel=3)
        return None
    if images.dtype != np.uint8 or images.ndim != 4 or labels.dtype != np.int64 \
            or labels.shape != images.shape[:1]:
        return None
    return images, labels


def _atomic_save(path: Path, array: np.ndarray):
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name + ".", suffix=".tmp",
                                         delete=False)
    try:
        with handle:
            np.save(handle, array)
        os.replace(handle.name, path)
    except BaseException:
        os.unlink(handle.name)
        raise


def save(name: str, source: Path, key: str, splits: dict[str, tuple[np.ndarray, np.ndarray]]):
    """Cache each split's (images, labels); on failure (read-only cache) warn and go on."""
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        for stale in cache_dir().glob(f"{_prefix(name, source)}-*.npy"):
            if f"-{key}-" not in stale.name:
                stale.unlink()
        for split, (images, labels) in splits.items():
            images_path, labels_path = _paths(name, source, key, split)
            _atomic_save(labels_path, labels)
            _atomic_save(images_path, images)
    except OSError as error:
        warnings.warn(f"could not write the dataset cache in {cache_dir()} ({error}); the next "
                      "load will decode again. Set MINIMIX_CACHE to a writable folder.", stacklevel=3)
