"""Hot array kernels behind minimix's operations.

Each kernel is a pure function on NumPy arrays (no autograd). ``naive`` and ``im2col`` are
the reference path's convolution (``minimix.ops.conv``); the others are called by the fast
implementations in ``minimix.fast``, registered in ``minimix.backends``. Submodules are imported
on demand, so ``import minimix`` (and even ``import minimix.kernels``) never
imports Numba:

* ``minimix.kernels.depthwise_numba``: Numba depthwise convolution (forward,
  input gradient, weight gradient); ``minimix.kernels.depthwise_rows``: the same three for "same"
  padding at stride 1 or 2, row by row with the taps written out (generated Numba source per kernel
  size and plane size), where they are faster; ``minimix.kernels.depthwise_dense``: the same three on
  small planes as one small matrix per channel (NumPy products).
* ``minimix.kernels.norm_act_numba``: batch norm fused with ReLU/SiLU (Numba).
* ``minimix.kernels.excite_numba``: squeeze-and-excitation's plane means and gate (Numba).
* ``minimix.kernels.vector_math``: an exp that Numba vectorizes (SiLU's sigmoid).
* ``minimix.kernels.im2col`` / ``minimix.kernels.pointwise``: convolutions as BLAS
  products (NumPy); ``minimix.kernels.naive``: the readable loops.
* ``minimix.kernels.pointwise_fused``: a grouped 1x1 convolution with its batch norm, activation and
  residual add applied while the output is in cache (inference; NumPy products, Numba epilogue).
* ``minimix.kernels.geometry``: ``output_size`` and ``as_pair``, shared by every convolution.
* ``minimix.kernels.threads``: ``run_chunks``, NumPy work split over threads.

Importing a kernel changes no process-wide setting; the BLAS, thread-pool and allocator
settings that make them fast are one explicit call, ``minimix.perf.configure()``.
"""
