"""The fast path: implementations that stand in for reference ops, registered in ``minimix.backends``.

Nothing here is needed to understand what minimix computes: each module replaces a piece of the
reference code in ``minimix.ops`` / ``minimix.nn`` by one that computes the same numbers faster,
and ``tests/test_backends.py`` checks every one against the reference it replaces.

* ``conv``: the kernels behind ``conv2d`` for depthwise (Numba) and 1x1 (one product per image)
  convolutions.
* ``mixconv``: MixConv and grouped 1x1 convolutions as ONE op whose groups read and write their
  channels of whole-layer arrays (no split/concatenate copies).
* ``norm_act``: batch norm and its activation in one Numba pass per direction.
* ``excite``: squeeze-and-excitation's plane means and gating product in Numba.
* ``inference``: MixConv -> BatchNorm -> activation in one pass, for models made by ``nn.fuse``.
* ``blocks``: MixNet blocks at inference: each 1x1 conv with its BatchNorm, activation and residual add in
  one pass, squeeze-excite's gate folded into the projection's weights.

``python -c "import minimix; minimix.backends.print_table()"`` lists them with what each replaces.
Importing this package imports nothing; each module is imported when its op first runs.
"""
