"""Studies: sets of ordinary training runs that reproduce a paper's evidence, resumable and collected
into a results table and figures.

* :mod:`minimix.study.kernels`: the MixConv paper's kernel-size study on CIFAR-10
  (``python -m minimix study kernels``).
"""
from .kernels import VARIANTS, Variant, collect, run_study

__all__ = ["VARIANTS", "Variant", "run_study", "collect"]
