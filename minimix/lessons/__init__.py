"""Support for the Jupyter lessons in ``lessons/``: exercise checks, data, fast mode, stripping.

    from minimix.lessons import check_split_channels, fast_mode, load_data, yours_or_library
    FAST = fast_mode()                       # MINIMIX_FAST=1: the quick CI setting
    check_split_channels(my_split_channels)  # prints PASS/FAIL with the first mismatch; true on PASS
    split = yours_or_library(check_split_channels(my_split_channels), my_split_channels,
                             minimix.nn.split_channels)  # later cells run while an exercise is unsolved

* :mod:`~minimix.lessons.checks`: one ``check_*`` per exercise, testing the learner's function on
  random cases against minimix's own implementation; each returns a ``CheckResult`` (true on PASS,
  not echoed by a notebook) from :mod:`~minimix.lessons.checking`, which also has ``yours_or_library``.
* :mod:`~minimix.lessons.course`: ``fast_mode``, ``load_data`` (CIFAR-10 or a labelled synthetic
  stand-in), ``find_checkpoint``, ``load_trained_model``, ``best_time``.
* :mod:`~minimix.lessons.strip_solutions`: ``python -m minimix.lessons.strip_solutions lessons/ OUT``
  writes the learner's notebooks, solution cells replaced by stubs.
"""
from .checks import (
    check_block_params,
    check_confusion_matrix,
    check_conv_output_size,
    check_cross_entropy,
    check_depthwise_backward_input,
    check_depthwise_backward_weight,
    check_depthwise_forward,
    check_im2col,
    check_mixconv_macs,
    check_mixconv_params,
    check_normalize,
    check_op,
    check_rf_recurrence,
    check_round_filters,
    check_seed_separation,
    check_sigmoid_backward,
    check_split_channels,
)
from .checking import CheckResult, yours_or_library
from .course import LessonData, best_time, fast_mode, find_checkpoint, load_data, load_trained_model

__all__ = [
    "check_sigmoid_backward", "check_op", "check_conv_output_size", "check_im2col", "check_depthwise_forward",
    "check_depthwise_backward_weight", "check_depthwise_backward_input", "check_split_channels",
    "check_mixconv_params", "check_mixconv_macs", "check_round_filters", "check_block_params",
    "check_normalize", "check_confusion_matrix", "check_cross_entropy", "check_rf_recurrence", "check_seed_separation",
    "CheckResult", "yours_or_library",
    "fast_mode", "load_data", "LessonData", "find_checkpoint", "load_trained_model", "best_time",
]
