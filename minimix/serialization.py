"""Save and load a state dict: ``minimix.save(model.state_dict(), "model.npz")``, ``minimix.load(path)``.

The file type comes from the suffix:

* ``.npz``: NumPy's zip of ``.npy`` files, one per key (readable with ``np.load`` anywhere);
* ``.safetensors``: the format of Hugging Face's ``safetensors`` package (an optional dependency,
  ``pip install minimix[safetensors]``), readable by PyTorch and most other frameworks.

Neither is ever unpickled: ``.npz`` files are read with ``allow_pickle=False`` and object arrays
are refused when writing, so loading a file cannot run code (``torch.load`` of a ``.pt`` can).

What can be saved: a flat dict ``{str: array}``, which is what ``Module.state_dict()`` returns.
Values may be NumPy arrays, NumPy scalars or minimix Tensors (their ``.data`` is saved). Anything
nested (an optimizer's ``state_dict()``, which holds dicts and lists) or a plain Python number is
refused with a ``TypeError`` naming the key: keep such state in a training checkpoint
(``minimix.training.save_checkpoint``), which stores nested dicts as JSON next to an ``.npz``.
Keys, their order, shapes and dtypes come back exactly (for ``.safetensors`` the order is kept in
the file's metadata; a file written elsewhere comes back in the file's order).

Writing is atomic: the data goes to a temporary file in the same folder, which is then renamed
over ``path`` (``os.replace``), so an interrupted save leaves the old file (or none), never half
a file.

Differs from PyTorch on purpose: ``torch.save`` pickles any Python object and ``torch.load``
unpickles it; these two store arrays only.
"""
from __future__ import annotations

import json
import os
import secrets
import zipfile
from pathlib import Path

import numpy as np

from .tensor import Tensor

SUFFIXES = (".npz", ".safetensors")
_ORDER = "minimix.key_order"  # safetensors metadata entry: the keys in the order they were given


def _suffix(owner: str, path) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{owner}: path must be a str or os.PathLike, got {type(path).__name__}")
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{owner}: cannot tell the file type of {str(path)!r} from its suffix {suffix!r}; "
                         f"expected .npz or .safetensors (minimix never pickles, so there is no .pt/.pth)")
    return suffix


def _arrays(state_dict) -> dict:
    """``state_dict`` checked and turned into ``{str: np.ndarray}`` (same order)."""
    if not isinstance(state_dict, dict):
        raise TypeError(f"minimix.save: state_dict must be a dict {{name: array}}, got {type(state_dict).__name__}")
    arrays = {}
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise TypeError(f"minimix.save: keys must be str, got {key!r} ({type(key).__name__})")
        if isinstance(value, Tensor):
            value = value.data
        if isinstance(value, np.generic):
            value = np.asarray(value)
        if not isinstance(value, np.ndarray):
            nested = " (nested state such as an optimizer's state_dict goes in a training checkpoint: " \
                     "minimix.training.save_checkpoint)" if isinstance(value, (dict, list, tuple)) else ""
            raise TypeError(f"minimix.save: the value of key {key!r} is a {type(value).__name__}; expected a "
                            f"NumPy array or a Tensor{nested}")
        if value.dtype.hasobject:
            raise TypeError(f"minimix.save: the value of key {key!r} has dtype object, which only pickling "
                            f"could store; expected numbers")
        arrays[key] = value
    return arrays


def atomic_write(path, write) -> Path:
    """Call ``write(binary_file)`` on a temporary file next to ``path`` (``.NAME.<8 hex>.tmp``, its own
    name, so two processes writing the same path never share one), then rename it to ``path``.

    Readers see either the old file or the complete new one, never half of it; an error or a kill
    during ``write`` leaves the old file as it was (a kill can leave the temporary file behind).
    Used by ``save`` and by the training checkpoints (``minimix.training.checkpoint``).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic: readers see the old file or the whole new one
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _write_npz(f, arrays: dict):
    # The .npz layout np.savez writes (a zip of KEY.npy), spelled out because np.savez takes the
    # keys as keyword arguments and so cannot store a key named "file" or "allow_pickle".
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, value in arrays.items():
            with archive.open(key + ".npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, value, allow_pickle=False)


def _safetensors_numpy(owner: str):
    try:
        import safetensors.numpy
    except ImportError:
        raise ImportError(f"{owner}: .safetensors files need the safetensors package "
                          f"(pip install safetensors, or minimix[safetensors]); .npz needs nothing") from None
    return safetensors.numpy


def save(state_dict: dict, path) -> None:
    """Write ``state_dict`` (``{name: array}``, e.g. ``model.state_dict()``) to ``path``.

    The suffix picks the format: ``.npz`` or ``.safetensors``; any other is refused (ValueError).
    Non-array values (nested dicts, lists, Python numbers) are refused with a TypeError naming
    the key. The write is atomic (temporary file + ``os.replace``). Returns None, like ``torch.save``.
    """
    suffix = _suffix("minimix.save", path)
    arrays = _arrays(state_dict)
    path = Path(path)
    if suffix == ".npz":
        atomic_write(path, lambda f: _write_npz(f, arrays))
        return
    st = _safetensors_numpy("minimix.save")
    # (np.ascontiguousarray would turn a 0-d array into shape (1,))
    contiguous = {k: v if v.flags.c_contiguous else v.copy(order="C") for k, v in arrays.items()}
    try:
        data = st.save(contiguous, metadata={_ORDER: json.dumps(list(arrays))})
    except Exception as err:  # e.g. a dtype the format has no code for
        raise TypeError(f"minimix.save: safetensors cannot store this state dict ({err}); "
                        f"dtypes: {sorted({str(v.dtype) for v in arrays.values()})}") from err
    atomic_write(path, lambda f: f.write(data))


def load(path) -> dict:
    """Read a state dict written by :func:`save` (or any ``.npz`` / ``.safetensors`` of arrays).

    Returns ``{name: np.ndarray}`` with the keys in their saved order, ready for
    ``model.load_state_dict(minimix.load(path))``. Never unpickles: an ``.npz`` holding object
    arrays is refused. A damaged file raises ValueError naming it.
    """
    suffix = _suffix("minimix.load", path)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"minimix.load: no file {str(path)!r}")
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {key: npz[key] for key in npz.files}
        except (zipfile.BadZipFile, ValueError, EOFError, OSError) as err:
            raise ValueError(f"minimix.load: {str(path)!r} is not a readable .npz of arrays ({err})") from err
    st = _safetensors_numpy("minimix.load")
    raw = path.read_bytes()
    try:
        arrays = st.load(raw)
        header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])  # the format's JSON header
    except Exception as err:
        raise ValueError(f"minimix.load: {str(path)!r} is not a readable .safetensors file ({err})") from err
    order = (header.get("__metadata__") or {}).get(_ORDER)
    keys = json.loads(order) if order else None
    if not isinstance(keys, list) or sorted(keys) != sorted(arrays):
        keys = [k for k in header if k != "__metadata__"]  # written elsewhere: the file's own order
    return {key: arrays[key] for key in keys}


__all__ = ["save", "load"]
