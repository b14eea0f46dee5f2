"""Activation modules, as in ``torch.nn``: each holds its arguments and calls the functional form
in ``minimix.ops.activation`` (``ReLU``, ``SiLU``, ``Sigmoid`` and ``Tanh`` live in ``layers.py``).

``inplace=``: accepted for PyTorch compatibility (and shown in the repr where torch shows it), but minimix
never overwrites its input: the output is always a new tensor.
"""
from ..ops import activation as A
from .module import Module


def _inplace_str(inplace):
    return ", inplace=True" if inplace else ""


class LeakyReLU(Module):
    """``torch.nn.LeakyReLU``: y = x where x > 0, negative_slope * x elsewhere."""

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        A._check_number("LeakyReLU", "negative_slope", negative_slope)
        A._check_inplace("LeakyReLU", inplace)
        self.negative_slope, self.inplace = negative_slope, inplace

    def forward(self, x):
        return A.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}{_inplace_str(self.inplace)}"


class ELU(Module):
    """``torch.nn.ELU``: y = x where x > 0, alpha (e^x - 1) elsewhere."""

    def __init__(self, alpha=1.0, inplace=False):
        super().__init__()
        A._check_number("ELU", "alpha", alpha)
        A._check_inplace("ELU", inplace)
        self.alpha, self.inplace = alpha, inplace

    def forward(self, x):
        return A.elu(x, self.alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}{_inplace_str(self.inplace)}"


class GELU(Module):
    """``torch.nn.GELU``: y = x Phi(x); ``approximate="tanh"`` for the tanh approximation."""

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        return A.gelu(x, approximate=self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class Hardsigmoid(Module):
    """``torch.nn.Hardsigmoid``: y = relu6(x + 3) / 6."""

    def __init__(self, inplace=False):
        super().__init__()
        A._check_inplace("Hardsigmoid", inplace)
        self.inplace = inplace

    def forward(self, x):
        return A.hardsigmoid(x)


class Hardswish(Module):
    """``torch.nn.Hardswish``: y = x relu6(x + 3) / 6 (MobileNetV3)."""

    def __init__(self, inplace=False):
        super().__init__()
        A._check_inplace("Hardswish", inplace)
        self.inplace = inplace

    def forward(self, x):
        return A.hardswish(x)


class Softplus(Module):
    """``torch.nn.Softplus``: y = log(1 + e^(beta x)) / beta, and x where beta x > threshold."""

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        A._check_number("Softplus", "beta", beta)
        A._check_number("Softplus", "threshold", threshold)
        if beta == 0:
            raise ValueError("Softplus: beta must not be 0")
        self.beta, self.threshold = beta, threshold

    def forward(self, x):
        return A.softplus(x, self.beta, self.threshold)

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"


class Mish(Module):
    """``torch.nn.Mish``: y = x tanh(softplus(x))."""

    def __init__(self, inplace=False):
        super().__init__()
        A._check_inplace("Mish", inplace)
        self.inplace = inplace

    def forward(self, x):
        return A.mish(x)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""
