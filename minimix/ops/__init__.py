"""Differentiable ops, one small forward/backward ``Function`` each.

Importing this package also registers the Tensor methods (``x.exp()``, ``a + b``...).
"""
from .cast import astype, double, float, to
from .compare import clamp, clip, maximum, minimum, where
from .dropout import dropout
from .elementwise import abs, add, div, exp, log, mul, neg, pow, relu, sigmoid, silu, sqrt, sub, tanh
from .indexing import gather
from .linalg import linear, matmul
from .loss import cross_entropy, log_softmax, softmax
from .reduce import amax, amin, argmax, argmin, max, mean, min, std, sum, var
from .shape import (cat, concatenate, expand, flatten, pad, permute, reshape, split, squeeze, stack, transpose,
                    unsqueeze)

__all__ = [
    "add", "sub", "mul", "div", "neg", "pow", "exp", "log", "sqrt", "abs",
    "relu", "sigmoid", "silu", "tanh", "sum", "mean", "max", "min", "amax", "amin", "argmax", "argmin",
    "var", "std", "maximum", "minimum", "clamp", "clip", "where", "matmul", "linear",
    "reshape", "permute", "transpose", "flatten", "unsqueeze", "squeeze", "expand", "stack", "gather",
    "cat", "concatenate", "split", "pad", "to", "float", "double", "astype",
    "softmax", "log_softmax", "cross_entropy", "dropout",
]
