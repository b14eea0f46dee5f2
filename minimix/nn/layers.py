"""Basic layers: Sequential, ModuleList, ParameterList, Linear, activations, Dropout, Flatten, Identity."""
import math

import numpy as np

from .. import ops
from ..random import generator
from ..tensor import Tensor
from .module import Module, Parameter


class Sequential(Module):
    """Apply modules in order; children are named 0, 1, 2... as in PyTorch."""

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"{type(self).__name__}: item {i} must be a Module, got {type(m).__name__}")
        object.__setattr__(self, "layers", list(modules))  # the container itself: no plain-list warning

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
        """Add ``module`` at the end (named by its position); returns self."""
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList.append: expected a Module, got {type(module).__name__}")
        self.layers.append(module)
        return self

    def extend(self, modules):
        """Append every module of ``modules``; returns self."""
        for m in modules:
            self.append(m)
        return self

    def forward(self, x):
        """Not callable as a whole (``TypeError``): call its items."""
        raise TypeError("ModuleList is a container; call its items instead")


class ParameterList(Module):
    """A list of parameters, registered under the names 0, 1, 2... (``torch.nn.ParameterList``).

    A plain Python list of parameters registers nothing (as in PyTorch); this one does, so its
    parameters are in ``parameters()``, ``state_dict()`` (``extras.0``) and the optimizer. Tensors
    and arrays given to it are made parameters (``Parameter``).
    """

    def __init__(self, values=None):
        super().__init__()
        object.__setattr__(self, "_values", [])
        if values is not None:
            self.extend(values)

    @staticmethod
    def _as_parameter(value, i):
        if isinstance(value, Parameter):
            return value
        if isinstance(value, (Tensor, np.ndarray)):
            return Parameter(value)
        raise TypeError(f"ParameterList: item {i} must be a Parameter, Tensor or NumPy array, "
                        f"got {type(value).__name__}")

    def append(self, value):
        """Add ``value`` (made a ``Parameter`` if it is not one) at the end; returns self."""
        self._values.append(self._as_parameter(value, len(self._values)))
        return self

    def extend(self, values):
        """Append every item of ``values``; returns self."""
        for v in values:
            self.append(v)
        return self

    def _own_parameters(self):
        for i, p in enumerate(self._values):
            yield str(i), p

    def __getitem__(self, i):
        return self._values[i]

    def __setitem__(self, i, value):
        self._values[i] = self._as_parameter(value, i)

    def __len__(self):
        return len(self._values)

    def __iter__(self):
        return iter(self._values)

    def forward(self, *args):
        """Not callable (``TypeError``): use its items."""
        raise TypeError("ParameterList is a container; use its items instead")

    def __repr__(self):
        lines = [f"  ({i}): Parameter of shape {p.shape}, dtype {p.dtype}" for i, p in enumerate(self._values)]
        return "ParameterList(" + "".join("\n" + line for line in lines) + ("\n)" if lines else ")")


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
    """max(x, 0), elementwise."""

    def forward(self, x):
        return ops.relu(x)


class SiLU(Module):
    """Swish: x * sigmoid(x)."""

    def forward(self, x):
        return ops.silu(x)


Swish = SiLU


class Sigmoid(Module):
    """1 / (1 + exp(-x)), elementwise."""

    def forward(self, x):
        return ops.sigmoid(x)


class Tanh(Module):
    """tanh(x), elementwise."""

    def forward(self, x):
        return ops.tanh(x)


class Identity(Module):
    """Returns its input unchanged (a placeholder, e.g. where a block has no squeeze-excite)."""

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
