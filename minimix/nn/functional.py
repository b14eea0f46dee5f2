"""Functional forms of the ops, named as in ``torch.nn.functional``."""
from ..ops import (  # noqa: F401
    cross_entropy,
    dropout,
    linear,
    log_softmax,
    pad,
    relu,
    sigmoid,
    silu,
    softmax,
    tanh,
)

swish = silu
