"""Activation functions beyond ReLU/Sigmoid/SiLU/Tanh, named as in ``torch.nn.functional``.

Each is an element-wise ``y = f(x)``: one small ``Function`` whose backward is the local
derivative f'(x) times the incoming gradient. Where f has a kink (leaky_relu and elu at 0,
hardswish and hardsigmoid at -3 and 3, softplus at its threshold), f'(x) at the kink point is
the value PyTorch uses, so that gradients match exactly; each class says which one.

Overflow: softplus and mish need log(1 + e^x), which as written overflows for x > 88 in float32
(e^x = inf). They use the equivalent ``max(x, 0) + log1p(e^-|x|)``, whose exponent is never
positive, so no input gives inf or a RuntimeWarning.

``inplace=``: accepted for PyTorch compatibility, but minimix never overwrites its input: the
result is always a new tensor (so ``inplace=True`` computes the same values, out of place).
"""
import math

import numpy as np

from ..tensor import Function
from .elementwise import _sigmoid


class LeakyReLU(Function):
    """y = x if x > 0 else negative_slope * x; dy/dx = 1 if x > 0 else negative_slope (so slope at 0)."""

    def forward(self, x, negative_slope):
        self.slope = np.where(x > 0, x.dtype.type(1), x.dtype.type(negative_slope))
        return x * self.slope

    def backward(self, g):
        return (g * self.slope,)


class ELU(Function):
    """y = x if x > 0 else alpha (e^x - 1); dy/dx = 1 if x > 0 else alpha e^x (so alpha at 0, as torch)."""

    def forward(self, x, alpha):
        self.positive, self.alpha = x > 0, alpha
        # expm1 of min(x, 0): exact for small |x|, and e^x of a large positive x (unused) never overflows
        self.neg = alpha * np.expm1(np.minimum(x, 0))
        return np.where(self.positive, x, self.neg)

    def backward(self, g):
        # alpha e^x = alpha (e^x - 1) + alpha = y + alpha on the negative side
        return (g * np.where(self.positive, 1, self.neg + self.neg.dtype.type(self.alpha)),)


class GELU(Function):
    """Gaussian error linear unit, y = x Phi(x) with Phi the standard normal CDF.

    exact ("none"):  y = x/2 (1 + erf(x / sqrt 2)),  dy/dx = Phi(x) + x phi(x),  phi(x) = e^(-x^2/2) / sqrt(2 pi)
    "tanh":          y = x/2 (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3),
                     dy/dx = (1 + tanh u)/2 + x/2 (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
    """

    BETA = math.sqrt(2 / math.pi)
    KAPPA = 0.044715

    def forward(self, x, approximate):
        self.x, self.approximate = x, approximate
        if approximate == "tanh":
            self.t = np.tanh(self.BETA * (x + self.KAPPA * x * x * x))
            return 0.5 * x * (1 + self.t)
        self.cdf = 0.5 * (1 + erf(x * x.dtype.type(math.sqrt(0.5))))
        return x * self.cdf

    def backward(self, g):
        x = self.x
        if self.approximate == "tanh":
            t = self.t
            inner = self.BETA * (1 + 3 * self.KAPPA * x * x)
            return (g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * inner),)
        pdf = np.exp(-0.5 * x * x) * x.dtype.type(1 / math.sqrt(2 * math.pi))
        return (g * (self.cdf + x * pdf),)


class Hardsigmoid(Function):
    """y = min(max(x + 3, 0), 6) / 6; dy/dx = 1/6 for -3 < x < 3, else 0 (0 at both kinks, as torch)."""

    def forward(self, x):
        self.inside = (x > -3) & (x < 3)
        return np.clip(x + 3, 0, 6) / 6

    def backward(self, g):
        return (g * self.inside / 6,)


class Hardswish(Function):
    """y = x min(max(x + 3, 0), 6) / 6 (MobileNetV3's cheap swish).

    dy/dx = 0 for x <= -3, x/3 + 1/2 for -3 < x < 3, 1 for x >= 3 (torch's values at the kinks).
    """

    def forward(self, x):
        self.x = x
        return x * np.clip(x + 3, 0, 6) / 6

    def backward(self, g):
        x = self.x
        slope = np.where(x <= -3, 0, np.where(x < 3, x / 3 + 0.5, 1)).astype(x.dtype, copy=False)
        return (g * slope,)


def _log1p_exp(z):
    """log(1 + e^z) computed as max(z, 0) + log1p(e^-|z|): the exponent is never positive (no overflow)."""
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


class Softplus(Function):
    """y = log(1 + e^(beta x)) / beta, and y = x where beta x > threshold (numerically x already).

    dy/dx = sigmoid(beta x), and 1 where beta x > threshold (strictly: at beta x == threshold the
    smooth formula is used, as in torch).
    """

    def forward(self, x, beta, threshold):
        z = x * x.dtype.type(beta)
        self.linear = z > threshold
        self.s = _sigmoid(z)
        return np.where(self.linear, x, _log1p_exp(z) / x.dtype.type(beta))

    def backward(self, g):
        return (g * np.where(self.linear, 1, self.s),)


class Mish(Function):
    """y = x tanh(softplus(x)); dy/dx = tanh(sp) + x sigmoid(x) (1 - tanh(sp)^2), sp = log(1 + e^x)."""

    def forward(self, x):
        self.x = x
        self.t = np.tanh(_log1p_exp(x))
        return x * self.t

    def backward(self, g):
        t = self.t
        return (g * (t + self.x * _sigmoid(self.x) * (1 - t * t)),)


def _check_inplace(name, inplace):
    if not isinstance(inplace, bool):
        raise TypeError(f"{name}: inplace must be a bool, got {inplace!r}")


def _check_number(name, arg, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: {arg} must be a real number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name}: {arg} must be finite, got {value!r}")
    return float(value)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    """``torch.nn.functional.leaky_relu``: x where x > 0, negative_slope * x elsewhere (any shape).

    ``inplace`` is accepted for PyTorch compatibility; minimix always returns a new tensor.
    """
    _check_inplace("leaky_relu", inplace)
    return LeakyReLU.apply(input, negative_slope=_check_number("leaky_relu", "negative_slope", negative_slope))


def elu(input, alpha=1.0, inplace=False):
    """``torch.nn.functional.elu``: x where x > 0, alpha (e^x - 1) elsewhere (any shape).

    ``inplace`` is accepted for PyTorch compatibility; minimix always returns a new tensor.
    """
    _check_inplace("elu", inplace)
    return ELU.apply(input, alpha=_check_number("elu", "alpha", alpha))


def gelu(input, approximate="none"):
    """``torch.nn.functional.gelu``: x Phi(x), Phi the standard normal CDF (any shape).

    ``approximate="none"`` uses erf (exact in float64; within 1.5e-7 in float32, see ``minimix.ops.activation.erf``);
    ``"tanh"`` uses the tanh approximation of GPT-2/BERT.
    """
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return GELU.apply(input, approximate=approximate)


def hardsigmoid(input, inplace=False):
    """``torch.nn.functional.hardsigmoid``: relu6(x + 3) / 6, a piecewise-linear sigmoid (any shape).

    ``inplace`` is accepted for PyTorch compatibility; minimix always returns a new tensor.
    """
    _check_inplace("hardsigmoid", inplace)
    return Hardsigmoid.apply(input)


def hardswish(input, inplace=False):
    """``torch.nn.functional.hardswish``: x relu6(x + 3) / 6, a piecewise swish (any shape).

    ``inplace`` is accepted for PyTorch compatibility; minimix always returns a new tensor.
    """
    _check_inplace("hardswish", inplace)
    return Hardswish.apply(input)


def softplus(input, beta=1.0, threshold=20.0):
    """``torch.nn.functional.softplus``: log(1 + e^(beta x)) / beta, a smooth ReLU (any shape).

    Where beta x > threshold the result is x itself (as torch). Never overflows (module docstring).
    """
    beta = _check_number("softplus", "beta", beta)
    if beta == 0:
        raise ValueError("softplus: beta must not be 0 (the result is log(2)/beta)")
    return Softplus.apply(input, beta=beta, threshold=_check_number("softplus", "threshold", threshold))


def mish(input, inplace=False):
    """``torch.nn.functional.mish``: x tanh(softplus(x)) (any shape). Never overflows (module docstring).

    ``inplace`` is accepted for PyTorch compatibility; minimix always returns a new tensor.
    """
    _check_inplace("mish", inplace)
    return Mish.apply(input)


# -- erf: NumPy has none -------------------------------------------------------------------------------
_erf_elementwise = np.frompyfunc(math.erf, 1, 1)

# Abramowitz & Stegun, Handbook of Mathematical Functions, formula 7.1.26 (|error| <= 1.5e-7)
_AS_P = 0.3275911
_AS_A = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)  # a5 ... a1, for Horner


def erf(x):
    """The error function erf(x) = 2/sqrt(pi) * integral from 0 to x of e^(-t^2) dt, element-wise,
    in x's dtype (float32 or float64).

    NumPy has no erf. float64: the standard library's ``math.erf`` element by element, exact but slow
    (a Python call per element). float32: Abramowitz & Stegun 7.1.26,
    erf(z) = 1 - t (a1 + t (a2 + ... + t a5)) e^(-z^2) with t = 1 / (1 + p z) for z >= 0 (odd in z),
    within 1.5e-7 of erf (float32's own resolution near 1 is 6e-8), vectorised over the array.
    """
    x = np.asarray(x)
    if x.dtype != np.float32:
        return np.asarray(_erf_elementwise(x.astype(np.float64)), dtype=np.float64)
    z = np.abs(x).astype(np.float64)  # float64 inside: 1 - (a number near 1) in float32 would lose digits
    t = 1 / (1 + _AS_P * z)
    poly = np.full_like(t, _AS_A[0])
    for a in _AS_A[1:]:
        poly *= t
        poly += a
    with np.errstate(under="ignore"):  # e^(-z^2) is 0 for |z| > 27: erf is then +-1
        y = 1 - t * poly * np.exp(-z * z)
    return np.copysign(y, x).astype(np.float32)
