"""MixNet weight initialisation, as in the reference (TensorFlow MnasNet/MixNet, timm ``_init_weight_goog``).

* Convolutions: ``w ~ Normal(0, sqrt(2 / fan_out))`` with
  ``fan_out = kh * kw * out_channels / groups`` -- "He init" computed on the output side, so the
  backward signal keeps its variance through ReLUs. For a depthwise conv (groups = channels)
  this is ``kh * kw``; for one group of a grouped 1x1 conv it is that group's output width.
  Conv biases (squeeze-excite) start at 0.
* BatchNorm: weight (gamma) 1, bias (beta) 0.
* Classifier: ``W ~ Uniform(-r, r)`` with ``r = 1 / sqrt(num_classes)`` (the reference's dense
  initialiser uses the OUTPUT width, unlike PyTorch's default 1/sqrt(in_features)); bias 0.

Random numbers come from ``minimix.random.generator()``, so ``minimix.manual_seed(s)`` before
building a model makes its weights reproducible.
"""
import math

import numpy as np

from .. import nn
from ..random import generator


def _set(param, values):
    param.data = np.asarray(values).astype(param.dtype)


def init_mixnet_weights(model):
    """Re-initialise every Conv2d, BatchNorm2d and Linear inside ``model`` in place; returns it."""
    rng = generator()
    for _, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            kh, kw = m.weight.shape[2:]
            fan_out = kh * kw * m.weight.shape[0] // m.groups
            _set(m.weight, rng.normal(0.0, math.sqrt(2.0 / fan_out), m.weight.shape))
            if m.bias is not None:
                _set(m.bias, np.zeros(m.bias.shape))
        elif isinstance(m, nn.BatchNorm2d):
            _set(m.weight, np.ones(m.weight.shape))
            _set(m.bias, np.zeros(m.bias.shape))
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.weight.shape[0])
            _set(m.weight, rng.uniform(-bound, bound, m.weight.shape))
            if m.bias is not None:
                _set(m.bias, np.zeros(m.bias.shape))
    return model
