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
from ..ops.conv import conv2d, conv_backend, mixed_conv2d  # noqa: F401
from .norm import batch_norm  # noqa: F401
from ..ops.normalization import group_norm, layer_norm  # noqa: F401
from ..ops.loss import nll_loss  # noqa: F401
from ..ops.elementwise_loss import binary_cross_entropy_with_logits, l1_loss, mse_loss  # noqa: F401
from .pooling import adaptive_avg_pool2d  # noqa: F401
from ..ops.activation import elu, gelu, hardsigmoid, hardswish, leaky_relu, mish, softplus  # noqa: F401
from ..ops.pooling import adaptive_max_pool2d, avg_pool2d, max_pool2d  # noqa: F401

swish = silu
