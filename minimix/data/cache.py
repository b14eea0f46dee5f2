"""A cache of decoded datasets as ``.npy`` files, so that only the first load decodes.

Where: ``$MINIMIX_CACHE`` if set, else ``$XDG_CACHE_HOME/minimix``, else
``~/.cache/minimix`` -- never beside the dataset, whose folder may be read-only.

Key: a hash of the source's real path (``Path.resolve()``: symbolic links
followed, so a linked path and its target share one entry) and of the real path,
size and modification time of every file it is read from, plus :data:`VERSION`
(bumped when decoding changes). Editing, replacing or re-downloading the source changes the key, so a
stale cache is never used; entries of an older key for the same path are deleted
when a new one is written.

Checksums: the SHA-256 of each array's bytes (with its shape and dtype) is written
beside it (``...-<split>-sha256.json``) and verified on every load, so a cache file
whose pixels changed after it was written is never used: a mismatch warns and the
dataset is decoded (and cached) again. An entry without its checksum file (a write
that did not finish) is not used either. Loading memory-maps the images
(copy-on-write) and hashes them, which reads them once.

Each file is written to a temporary file and renamed into place (``os.replace``
is atomic), the checksums last, so an interrupted write never leaves an entry
that looks complete.
"""
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .errors import DatasetError

VERSION = 2  # 2: entries carry SHA-256 checksums


def cache_dir() -> Path:
    """The user's minimix cache folder (not created here)."""
    if os.environ.get("MINIMIX_CACHE"):
        return Path(os.environ["MINIMIX_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "minimix"


def fingerprint(files: list[Path]) -> str:
    """Hash of (real path, size, mtime) of each file: changes whenever any of them changes. The path
    is resolved like the entry's prefix (:func:`_prefix`), so the same archive reached through a
    symbolic link gets the same key and does not evict the entry of its real path."""
    digest = hashlib.sha256(f"v{VERSION}".encode())
    for file in files:
        try:
            stat = os.stat(file)
        except OSError as error:  # e.g. a broken symbolic link
            raise DatasetError(f"{file}: cannot read ({error.strerror})") from error
        digest.update(f"{Path(file).resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _prefix(name: str, source: Path) -> str:
    """Entries of one source share this prefix (real path, as in :func:`fingerprint`)."""
    return f"{name}-{hashlib.sha256(str(Path(source).resolve()).encode()).hexdigest()[:12]}"


def _paths(name: str, source: Path, key: str, split: str) -> tuple[Path, Path, Path]:
    """The images, labels and checksum files of one split's entry."""
    stem = cache_dir() / f"{_prefix(name, source)}-{key}-{split}"
    return tuple(stem.with_name(stem.name + suffix) for suffix in ("-images.npy", "-labels.npy", "-sha256.json"))


def _describe(array: np.ndarray) -> dict:
    """What the checksum file records of an array: shape, dtype and the SHA-256 of its bytes (C order)."""
    data = np.ascontiguousarray(array)
    return {"shape": list(data.shape), "dtype": data.dtype.str,
            "sha256": hashlib.sha256(data.reshape(-1).view(np.uint8)).hexdigest()}


def load(name: str, source: Path, key: str, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached (images, labels) of ``split``, or None if absent, incomplete, unreadable or changed
    since it was written (the last two with a warning)."""
    images_path, labels_path, sums_path = _paths(name, source, key, split)
    if not (images_path.is_file() and labels_path.is_file() and sums_path.is_file()):
        return None
    try:
        recorded = json.loads(sums_path.read_text())
        # copy-on-write memory map: pages are read when first used (here, by the checksum), and
        # the arrays stay writable without ever changing the file (plain ndarrays, not np.memmap)
        images = np.asarray(np.load(images_path, mmap_mode="c"))
        labels = np.load(labels_path)
    except (OSError, ValueError) as error:
        warnings.warn(f"ignoring unreadable cache file in {cache_dir()}: {error}", stacklevel=3)
        return None
    for part, path, array in (("labels", labels_path, labels), ("images", images_path, images)):
        if not isinstance(recorded, dict) or recorded.get(part) != _describe(array):
            warnings.warn(f"{path}: the cached {part} do not match the SHA-256 checksum recorded when the "
                          f"cache was written ({sums_path.name}): the file changed since. Not using it; "
                          "decoding the dataset again.", stacklevel=3)
            return None
    if images.dtype != np.uint8 or images.ndim != 4 or labels.dtype != np.int64 \
            or labels.shape != images.shape[:1]:
        return None
    return images, labels


def _atomic_write(path: Path, write):
    """``write(file)`` into a temporary file beside ``path``, then rename it to ``path``."""
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name + ".", suffix=".tmp",
                                         delete=False)
    try:
        with handle:
            write(handle)
        os.replace(handle.name, path)
    except BaseException:
        os.unlink(handle.name)
        raise


def save(name: str, source: Path, key: str, splits: dict[str, tuple[np.ndarray, np.ndarray]]):
    """Cache each split's (images, labels); on failure (read-only cache) warn and go on."""
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        for stale in cache_dir().glob(f"{_prefix(name, source)}-*"):
            if stale.suffix in (".npy", ".json") and f"-{key}-" not in stale.name:
                stale.unlink()
        for split, (images, labels) in splits.items():
            images_path, labels_path, sums_path = _paths(name, source, key, split)
            sums_path.unlink(missing_ok=True)  # an entry without checksums is never used
            sums = json.dumps({"labels": _describe(labels), "images": _describe(images)}, indent=1)
            _atomic_write(labels_path, lambda file: np.save(file, labels))
            _atomic_write(images_path, lambda file: np.save(file, images))
            _atomic_write(sums_path, lambda file: file.write(sums.encode()))
    except OSError as error:
        warnings.warn(f"could not write the dataset cache in {cache_dir()} ({error}); the next "
                      "load will decode again. Set MINIMIX_CACHE to a writable folder.", stacklevel=3)
