"""Crash-safe checkpoints: NumPy arrays in an ``.npz``, everything else in a JSON file.

A checkpoint is a pair of files in the run directory::

    epoch-003-1f2e3d4c.npz   the arrays (weights, BatchNorm buffers, momentum buffers...)
    last.json                the rest (config, epoch, metrics history, RNG state, scheduler)
                             plus the name, size and SHA-256 of the .npz it belongs to

``save_checkpoint`` takes one nested dict (``{"model": model.state_dict(), "epoch": 3, ...}``),
moves every ``np.ndarray`` into the ``.npz`` and leaves a ``{"__array__": key}`` marker in its
place in the JSON tree; ``load_checkpoint`` puts the arrays back.

Why the ordering is safe: each file is written to a temporary name and then ``os.replace``'d
(an atomic rename on POSIX and Windows), the ``.npz`` always gets a fresh name, and the JSON is
written last. So a crash at any moment leaves either the old JSON naming the old ``.npz``
(untouched) or the new JSON naming the new, complete ``.npz``. A data file that was truncated
or swapped afterwards is caught by its size and checksum. Data files that no JSON names any
more are deleted after a successful save.

What is read and deleted stays inside the run directory: a JSON whose ``data`` names a file
anywhere else (``../other/epoch-001-....npz``, an absolute path, a symbolic link leading out) is
refused, and then no data file is deleted. A kill during a write leaves a ``.<name>.tmp`` file
behind; ``remove_stale_temporaries`` deletes those of a run directory (the trainer calls it when it
takes the directory's lock, see ``minimix.training.lock``). On load every floating-point array
must be finite: a run whose weights had become NaN is never checkpointed, so non-finite values
mean the file was damaged or edited.
"""
from __future__ import annotations

import hashlib
import json
import re
import secrets
import stat
import zipfile
from pathlib import Path

import numpy as np

from ..serialization import atomic_write  # the one atomic writer, shared with minimix.save

FORMAT = "minimix-checkpoint-1"
_ARRAY = "__array__"  # JSON marker: this value is the array stored in the .npz under this key
_INT_KEYS = "__int_keys__"  # JSON marker: a dict whose keys were ints (optimizer state by parameter index)


# The temporary files ``atomic_write`` makes in a run directory: ``.epoch-003-1f2e3d4c.npz.<token>.tmp``,
# ``.last.json.<token>.tmp``, ``.best.json.<token>.tmp``, ``.metrics.csv.<token>.tmp`` (8 hex digits
# of token; older versions wrote them without one).
STALE_TEMPORARY = re.compile(r"\.(epoch-\d+-[0-9a-f]+\.npz|last\.json|best\.json|metrics\.csv)\.(?:[0-9a-f]{8}\.)?tmp")


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupted, truncated, or does not match its partner."""


# -- nested state <-> (JSON tree, arrays) ---------------------------------------------------------
def _split(value, key: str, arrays: dict):
    """Return a JSON-friendly copy of ``value``; arrays move into ``arrays[key]``.

    Keys are the path to the value, e.g. ``model/blocks.0.conv.weight`` or ``optimizer/state/3/momentum_buffer``.
    """
    def child(k):
        return f"{key}/{k}" if key else str(k)

    if isinstance(value, np.ndarray):
        arrays[key] = value
        return {_ARRAY: key}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: _split(v, child(k), arrays) for k, v in value.items()}
        if all(isinstance(k, (int, np.integer)) for k in value):
            return {_INT_KEYS: {str(k): _split(v, child(k), arrays) for k, v in value.items()}}
        raise TypeError(f"checkpoint: dict keys at '{key}' must be all str or all int, got {list(value)}")
    if isinstance(value, (list, tuple)):
        return [_split(v, child(i), arrays) for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"checkpoint: cannot store a {type(value).__name__} at '{key}'")


def _join(value, arrays: dict, error):
    """Inverse of ``_split``; ``error(message)`` makes the exception for a tree that names an array
    the data file lacks (or is malformed)."""
    if isinstance(value, dict):
        if set(value) == {_ARRAY}:
            key = value[_ARRAY]
            if not isinstance(key, str) or key not in arrays:
                raise error(f"names the array {key!r}, which the data file does not hold")
            return arrays[key]
        if set(value) == {_INT_KEYS} and isinstance(value[_INT_KEYS], dict):
            keys = list(value[_INT_KEYS])
            if not all(k.lstrip("-").isdigit() for k in keys):
                raise error(f"has a dict of parameter indices whose keys are not integers: {keys}")
            return {int(k): _join(v, arrays, error) for k, v in value[_INT_KEYS].items()}
        return {k: _join(v, arrays, error) for k, v in value.items()}
    if isinstance(value, list):
        return [_join(v, arrays, error) for v in value]
    return value


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- save ------------------------------------------------------------------------------------------
def save_checkpoint(directory, state: dict, names=("last",)) -> Path:
    """Save ``state`` (a nested dict of arrays and plain values) as ``<directory>/<name>.json``
    for every name in ``names`` (e.g. ``("last", "best")``), sharing one ``.npz``.

    Returns the path of the first JSON file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays: dict = {}
    tree = _split(state, "", arrays)

    data_path = directory / f"epoch-{int(state.get('epoch', 0)):03d}-{secrets.token_hex(4)}.npz"
    atomic_write(data_path, lambda f: np.savez(f, **arrays))
    record = {
        "format": FORMAT,
        "data": data_path.name,
        "data_bytes": data_path.stat().st_size,
        "data_sha256": _sha256(data_path),
        "state": tree,
    }
    text = json.dumps(record, indent=1).encode()
    for name in names:
        atomic_write(directory / f"{name}.json", lambda f: f.write(text))
    _remove_unreferenced_data(directory)
    return directory / f"{names[0]}.json"


def _remove_unreferenced_data(directory: Path):
    """Delete ``epoch-*.npz`` files of ``directory`` that no checkpoint JSON in it names.

    If any JSON cannot be read, or a checkpoint JSON names no data file or one outside
    ``directory``, delete nothing: better a stale file than a lost checkpoint.
    """
    referenced = set()
    for meta in directory.glob("*.json"):
        try:
            record = json.loads(meta.read_text())
        except (OSError, ValueError):
            return
        if isinstance(record, dict) and record.get("format") == FORMAT:
            try:
                referenced.add(_data_path(meta, record.get("data")).name)
            except CheckpointError:
                return
    for data in directory.glob("epoch-*.npz"):
        if data.name not in referenced and _is_regular_file(data):
            data.unlink(missing_ok=True)


def _is_regular_file(path: Path) -> bool:
    """A plain file (not a symbolic link, folder, socket...), without following links."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def remove_stale_temporaries(directory) -> list:
    """Delete the temporary files an interrupted write left in the run directory ``directory``
    (``.epoch-003-1f2e3d4c.npz.tmp``, ``.last.json.tmp``...; see ``STALE_TEMPORARY``) and return
    their names. Only plain files directly in ``directory`` whose names match are touched.

    Call it only while holding the directory's lock (``minimix.training.lock.lock_run_dir``):
    another process writing into the same directory would lose the file it is writing.
    """
    directory = Path(directory)
    removed = []
    for path in sorted(directory.glob(".*.tmp")):
        if STALE_TEMPORARY.fullmatch(path.name) and _is_regular_file(path):
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


# -- load ------------------------------------------------------------------------------------------
def resolve_checkpoint(path) -> Path:
    """The JSON file of a checkpoint given a run directory (-> its ``last.json``),
    a checkpoint ``.json``, or a checkpoint's ``.npz`` (-> the JSON that names it)."""
    path = Path(path)
    if path.is_dir():
        meta = path / "last.json"
        if not meta.is_file():
            if (path / "config.json").is_file():  # the train command writes it when a run starts
                raise FileNotFoundError(
                    f"no checkpoint yet in {path} (the run stopped before its first epoch ended); start it again "
                    f"with: python -m minimix train --resume {path}")
            raise FileNotFoundError(f"no checkpoint in directory {path}: expected {meta}")
        return meta
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".json":
        return path
    if path.suffix == ".npz":
        for name in ("last.json", "best.json"):
            meta = path.parent / name
            try:
                if json.loads(meta.read_text()).get("data") == path.name:
                    return meta
            except (OSError, ValueError, AttributeError):
                continue
        raise CheckpointError(f"{path}: no last.json or best.json beside it names this data file; "
                              "pass the checkpoint's .json file or its run directory")
    raise CheckpointError(f"{path}: expected a run directory, a checkpoint .json or its .npz")


def _data_path(meta: Path, name) -> Path:
    """The data file ``name`` of the checkpoint ``meta``: a plain file name in ``meta``'s directory,
    which does not lead out of it (no ``..``, no absolute path, no symbolic link pointing elsewhere)."""
    if not isinstance(name, str) or not name:
        raise CheckpointError(f'{meta}: "data" must be the file name of the checkpoint\'s .npz, got {name!r}')
    path = meta.parent / name
    directory = meta.parent.resolve()
    if Path(name).name != name or path.resolve().parent != directory:
        raise CheckpointError(f"{meta} names the data file {name!r}, which is not in its run directory "
                              f"{meta.parent}: a checkpoint only reads the data file beside its JSON "
                              "(refusing to read or delete anything else)")
    return path


_RECORD_FIELDS = {"data": (str, "the data file's name"), "data_bytes": (int, "its size in bytes"),
                  "data_sha256": (str, "its SHA-256 as hex"), "state": (dict, "the saved state (a JSON object)")}


def load_checkpoint(path, finite: bool = True) -> dict:
    """Load the state saved by ``save_checkpoint``; ``path`` as in ``resolve_checkpoint``.

    Raises ``CheckpointError`` naming the bad file (and key) if the JSON is corrupted or lacks a
    field, names a data file outside its directory, or its data file is missing, truncated, not
    the one it was saved with, lacks an array the JSON names or (``finite``) holds NaN or inf.
    """
    meta = resolve_checkpoint(path)
    try:
        record = json.loads(meta.read_text())
    except (UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"{meta}: corrupted checkpoint metadata (not valid JSON: {err})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(f"{meta}: not a minimix checkpoint (expected \"format\": \"{FORMAT}\")")
    for key, (kind, what) in _RECORD_FIELDS.items():
        if key not in record:
            raise CheckpointError(f"{meta}: the checkpoint metadata has no {key!r} (expected {what})")
        if not isinstance(record[key], kind) or isinstance(record[key], bool):
            raise CheckpointError(f"{meta}: {key!r} must be {what}, got {record[key]!r}")
    data = _data_path(meta, record["data"])
    if not data.is_file():
        raise CheckpointError(f"{meta} names the data file {data}, which does not exist")
    size = data.stat().st_size
    if size != record["data_bytes"]:
        raise CheckpointError(f"{data} has {size} bytes but {meta} expects {record['data_bytes']}: "
                              "the data file is truncated or was replaced")
    if _sha256(data) != record["data_sha256"]:
        raise CheckpointError(f"{data} does not match the SHA-256 recorded in {meta}: the data file is corrupted")
    try:
        with np.load(data, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError) as err:
        raise CheckpointError(f"{data}: cannot read the checkpoint arrays ({err})") from None
    if finite:
        for key, array in arrays.items():
            if array.dtype.kind in "fc" and not np.isfinite(array).all():
                bad = int(array.size - np.count_nonzero(np.isfinite(array)))
                raise CheckpointError(f"{data}: array {key!r} holds {bad} non-finite values (NaN or inf) of "
                                      f"{array.size}: the checkpoint is damaged (a run is only saved with "
                                      "finite weights)")

    def error(problem):
        return CheckpointError(f"{meta} {problem} ({data.name}): the data file does not match its metadata")

    return _join(record["state"], arrays, error)
