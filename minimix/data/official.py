"""Readers for the two official CIFAR-10 formats (https://www.cs.toronto.edu/~kriz/cifar.html).

Both hold five training batches and one test batch of 10,000 images each; an
image is 3072 bytes: the 1024 red values of the 32x32 image row by row, then
the 1024 green, then the 1024 blue ("planar" or CHW order). We return images in
the usual NHWC layout: ``row.reshape(3, 32, 32).transpose(1, 2, 0)``.

* python version (``cifar-10-python.tar.gz`` -> ``cifar-10-batches-py/``):
  ``data_batch_1`` ... ``data_batch_5``, ``test_batch``; each a pickled dict
  with ``b"data"`` (uint8, (10000, 3072)) and ``b"labels"`` (list of ints),
  loaded with :mod:`minimix.data.safe_pickle`.
* binary version (``cifar-10-binary.tar.gz`` -> ``cifar-10-batches-bin/``):
  ``data_batch_1.bin`` ... ``test_batch.bin``; each a sequence of 3073-byte
  records ``[label byte][3072 pixel bytes]``.

Either can be read from the extracted folder or straight from the archive.
"""
from pathlib import Path

import numpy as np

from .archive import iter_tar_files
from .errors import DatasetError
from .safe_pickle import restricted_loads

IMAGE_BYTES = 32 * 32 * 3
# Label i is CLASSES[i] (the order of the official batches.meta).
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
NUM_CLASSES = len(CLASSES)
PYTHON_FOLDER, BINARY_FOLDER = "cifar-10-batches-py", "cifar-10-batches-bin"
PYTHON_ARCHIVE, BINARY_ARCHIVE = "cifar-10-python.tar.gz", "cifar-10-binary.tar.gz"
SPLIT_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
# Images per class in each split of the official set (50,000 training and 10,000 test images).
OFFICIAL_PER_CLASS = {"train": 5000, "test": 1000}


def batch_files(kind: str) -> dict[str, list[str]]:
    """File names of the batches of each split, for the ``"python"`` or ``"binary"`` version."""
    suffix = ".bin" if kind == "binary" else ""
    return {split: [name + suffix for name in names] for split, names in SPLIT_BATCHES.items()}


def planes_to_nhwc(rows: np.ndarray) -> np.ndarray:
    """(N, 3072) planar R,G,B rows -> contiguous uint8 images (N, 32, 32, 3)."""
    return np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def check_labels(labels: np.ndarray, where: str) -> np.ndarray:
    """Return labels as int64 after checking they are class indices 0..9."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{where}: labels must be a flat list of integers, got dtype "
                           f"{labels.dtype} and shape {labels.shape}")
    bad = (labels < 0) | (labels >= NUM_CLASSES)
    if bad.any():
        i = int(np.argmax(bad))
        raise DatasetError(f"{where}: label {int(labels[i])} at position {i} is out of range "
                           f"0..{NUM_CLASSES - 1}")
    return labels.astype(np.int64)


def parse_python_batch(content: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch -> (images (n, 32, 32, 3) uint8, labels (n,) int64)."""
    try:
        batch = restricted_loads(content)
    except Exception as error:  # a corrupt pickle can raise almost any exception type
        raise DatasetError(f"{where}: not a valid CIFAR-10 pickle batch "
                           f"({type(error).__name__}: {error})") from error
    if not isinstance(batch, dict):
        raise DatasetError(f"{where}: expected a pickled dict, got {type(batch).__name__}")
    # official files are Python-2 pickles (bytes keys); accept str keys from re-pickled copies
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise DatasetError(f"{where}: the dict lacks the 'data' and/or 'labels' entry "
                           f"(keys: {sorted(map(repr, batch))})")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != IMAGE_BYTES:
        shape = getattr(data, "shape", None)
        raise DatasetError(f"{where}: 'data' must be a uint8 array of shape (n, {IMAGE_BYTES}), "
                           f"got {type(data).__name__} {getattr(data, 'dtype', '')} {shape}")
    labels = check_labels(labels, where)
    if len(labels) != len(data):
        raise DatasetError(f"{where}: {len(labels)} labels for {len(data)} images")
    return planes_to_nhwc(data), labels


def parse_binary_batch(content: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch of 3073-byte records -> (images uint8 NHWC, labels int64)."""
    record = 1 + IMAGE_BYTES
    if len(content) == 0 or len(content) % record:
        raise DatasetError(f"{where}: {len(content)} bytes is not a whole number of "
                           f"{record}-byte records (1 label byte + {IMAGE_BYTES} pixel bytes); "
                           "is the file truncated?")
    records = np.frombuffer(content, np.uint8).reshape(-1, record)
    return planes_to_nhwc(records[:, 1:]), check_labels(records[:, 0], where)


def _read_batch_files(path: Path, names: list[str]) -> dict[str, tuple[str, bytes]]:
    """name -> (where, content) for each batch file, from a folder or an archive."""
    if path.is_dir():
        missing = [name for name in names if not (path / name).is_file()]
        if missing:
            raise DatasetError(f"{path}: missing batch file(s) {missing}; expected {names}")
        return {name: (str(path / name), (path / name).read_bytes()) for name in names}
    found = {}
    for member, content in iter_tar_files(path):
        name = Path(member).name
        if name in names:
            if name in found:
                raise DatasetError(f"{path}: archive holds two '{name}' files "
                                   f"({found[name][0]} and {member})")
            found[name] = (f"{path}:{member}", content)
    missing = [name for name in names if name not in found]
    if missing:
        raise DatasetError(f"{path}: archive lacks batch file(s) {missing}; expected {names}")
    return found


def read_official(path: Path, kind: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read both splits of the ``kind`` ("python" or "binary") version from a folder or archive.

    Returns ``{"train": (images, labels), "test": (images, labels)}``.
    """
    parse = parse_python_batch if kind == "python" else parse_binary_batch
    names = batch_files(kind)
    files = _read_batch_files(Path(path), names["train"] + names["test"])
    splits = {}
    for split, split_names in names.items():
        parts = []
        for name in split_names:
            where, content = files[name]
            parts.append(parse(content, where))
        splits[split] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return splits
