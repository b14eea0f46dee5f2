"""Differentiable ops, one small forward/backward ``Function`` each.

Importing this package also registers the Tensor methods (``x.exp()``, ``a + b``...).
"""
from .dropout import dropout
from .elementwise import add, div, exp, log, mul, neg, pow, relu, sigmoid, silu, sqrt, sub, tanh
from .linalg import linear, matmul
from .loss import cross_entropy, log_softmax, softmax
from .reduce import max, mean, sum
from .shape import cat, concatenate, flatten, pad, permute, reshape, split, transpose

__all__ = [
    "add", "sub", "mul", "div", "neg", "pow", "exp", "log", "sqrt",
    "relu", "sigmoid", "silu", "tanh", "sum", "mean", "max", "matmul", "linear",
    "reshape", "permute", "transpose", "flatten", "cat", "concatenate", "split", "pad",
    "softmax", "log_softmax", "cross_entropy", "dropout",
]
