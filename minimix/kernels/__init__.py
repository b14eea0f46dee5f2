"""Hot array kernels behind minimix's operations.

Each kernel is a pure function on NumPy arrays (no autograd); the ops in
``minimix.ops`` / ``minimix.nn.functional`` wrap them. Submodules are imported
on demand, so ``import minimix`` (and even ``import minimix.kernels``) never
imports Numba:

* ``minimix.kernels.depthwise_numba``: Numba depthwise convolution (forward,
  input gradient, weight gradient).
* ``minimix.kernels.norm_act_numba``: batch norm fused with ReLU/SiLU (Numba).
* ``minimix.kernels.excite_numba``: squeeze-and-excitation's plane means and gate (Numba).
* ``minimix.kernels.im2col`` / ``minimix.kernels.pointwise``: convolutions as BLAS
  products (NumPy); ``minimix.kernels.naive``: the readable loops.
* ``minimix.kernels.geometry``: ``output_size`` and ``as_pair``, shared by every convolution.
* ``minimix.kernels.threads``: ``run_chunks``, NumPy work split over threads.

Importing a kernel changes no process-wide setting; the BLAS, thread-pool and allocator
settings that make them fast are one explicit call, ``minimix.perf.configure()``.
"""

import functools
import importlib

import numpy as np


@functools.lru_cache(maxsize=None)
def optional(name):
    """The kernel module ``minimix.kernels.<name>``, or None when it cannot be imported (no Numba):
    callers then run their NumPy definition instead. The answer is kept, so a missing Numba
    costs one failed import, not one per op."""
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ImportError:
        return None


def for_dtype(name, dtype):
    """``optional(name)`` for float32 and float64 data, the dtypes the Numba kernels are written for;
    None for any other dtype (the caller's NumPy definition handles it)."""
    return optional(name) if dtype in (np.float32, np.float64) else None
