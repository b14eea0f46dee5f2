"""A restricted unpickler for the official CIFAR-10 python batches.

``pickle.load`` runs whatever a file tells it to: a pickle can name any
importable function (``os.system``, ``builtins.exec``) and have it called with
arguments of the file's choosing. A downloaded dataset must not be able to do
that, so the unpickler here resolves only the few globals a pickled NumPy array
needs and refuses every other one before anything is called.

The official batches are Python-2 pickles of a dict with ``bytes`` keys::

    {b"batch_label": b"...", b"labels": [6, 9, ...],          # list of ints
     b"data": uint8 array (10000, 3072),                      # R, G, B planes
     b"filenames": [b"leptodactylus_pentadactylus_s_000004.png", ...]}

``encoding="bytes"`` keeps Python-2 ``str`` values as ``bytes`` (the raw pixel
buffer of the array must not be decoded as text).
"""
import io
import pickle

import numpy as np


def _allowed_globals() -> dict:
    try:  # NumPy >= 2 moved the modules; older pickles still name numpy.core
        from numpy._core.multiarray import _reconstruct
        from numpy._core.numeric import _frombuffer
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core.multiarray import _reconstruct
        from numpy.core.numeric import _frombuffer
    import _codecs

    return {
        # pickle protocols 0-4 rebuild an array with _reconstruct + ndarray.__setstate__
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        # protocol 5 (Python 3's default) with _frombuffer(buffer, dtype, shape, order)
        ("numpy.core.numeric", "_frombuffer"): _frombuffer,
        ("numpy._core.numeric", "_frombuffer"): _frombuffer,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # Python 3 writes bytes objects at protocol 2 as _codecs.encode(str, "latin1").
        ("_codecs", "encode"): _codecs.encode,
    }


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that admits only NumPy arrays, dtypes and plain Python values."""

    def find_class(self, module: str, name: str):
        allowed = _allowed_globals()
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(
                f"refusing to load global '{module}.{name}': only NumPy arrays and plain "
                "Python values are allowed in a CIFAR-10 batch")
        return allowed[(module, name)]


def restricted_loads(data: bytes):
    """Unpickle ``data`` (Python-2 or 3 pickle) with :class:`RestrictedUnpickler`."""
    return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
