"""Basic layers: Sequential, ModuleList, Linear, activations, Dropout, Flatten, Identity."""
import math

import numpy as np

from .. import ops
from ..random import generator
from .module import Module, Parameter


class Sequential(Module):
    """Apply modules in order; children are named 0, 1, 2... as in PyTorch."""

    def __init__(self, *modules):
        super().__init__()
        self.layers = list(modules)

    def named_children(self):
        for i, m in enumerate(self.layers):
            yield str(i), m

    def forward(self, x):
        for m in self.layers:
            x = m(x)
        return x

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)


class ModuleList(Sequential):
    """A list of modules (not called as a whole); children named 0, 1, 2..."""

    def __init__(self, modules=()):
        super().__init__(*modules)

    def append(self, module):
        self.layers.append(module)
        return self

    def extend(self, modules):
        self.layers.extend(modules)
        return self

    def forward(self, x):
        raise TypeError("ModuleList is a container; call its items instead")


class Linear(Module):
    """y = x W^T + b, W: (out_features, in_features).

    Initialised like PyTorch: W and b uniform in +-1/sqrt(in_features).
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        rng = generator()
        self.weight = Parameter(rng.uniform(-bound, bound, (out_features, in_features)).astype(dtype))
        self.bias = Parameter(rng.uniform(-bound, bound, out_features).astype(dtype)) if bias else None

    def forward(self, x):
        return ops.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class ReLU(Module):
    def forward(self, x):
        return ops.relu(x)


class SiLU(Module):
    """Swish: x * sigmoid(x)."""

    def forward(self, x):
        return ops.silu(x)


Swish = SiLU


class Sigmoid(Module):
    def forward(self, x):
        return ops.sigmoid(x)


class Tanh(Module):
    def forward(self, x):
        return ops.tanh(x)


class Identity(Module):
    def forward(self, x):
        return x


class Dropout(Module):
    """Zero elements with probability p while training; identity in eval mode."""

    def __init__(self, p=0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x):
        return ops.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Flatten(Module):
    """Merge axes ``start_dim..end_dim`` into one (default: all but the batch axis)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return ops.flatten(x, self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
