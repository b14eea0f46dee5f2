"""Hot array kernels behind minimix's operations.

Each kernel is a pure function on NumPy arrays (no autograd); the ops in
``minimix.ops`` / ``minimix.nn.functional`` wrap them. Submodules are imported
on demand, so ``import minimix`` (and even ``import minimix.kernels``) never
imports Numba:

* ``minimix.kernels.depthwise_numba``: Numba depthwise convolution (forward,
  input gradient, weight gradient).
* ``minimix.kernels.norm_act_numba``: batch norm fused with ReLU/SiLU (Numba).
* ``minimix.kernels.im2col`` / ``minimix.kernels.pointwise``: convolutions as BLAS
  products (NumPy); ``minimix.kernels.naive``: the readable loops.
* ``minimix.kernels.threads``: thread and allocator settings, in one place.
"""
