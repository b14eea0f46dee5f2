"""Inverted dropout: in training, zero each element with probability p and
scale the survivors by 1 / (1 - p) so the expected value is unchanged."""
from .. import random
from ..tensor import Function


class Dropout(Function):
    def forward(self, x, p):
        self.mask = (random.generator().random(x.shape, dtype=x.dtype) >= p) * x.dtype.type(1.0 / (1.0 - p))
        return x * self.mask

    def backward(self, g):
        return (g * self.mask,)


def dropout(x, p=0.5, training=True):
    """Apply dropout when ``training`` (identity otherwise)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    return Dropout.apply(x, p=p)
