"""Element-wise ops. Each is ``y = f(x)`` (or ``f(a, b)`` with broadcasting) and
its backward is the local derivative times the incoming gradient."""
import numpy as np

from ..tensor import Function, Tensor, tensor_method


# -- binary arithmetic (broadcasting; the engine sums gradients back to each input's shape)
class Add(Function):
    def forward(self, a, b):
        return a + b

    def backward(self, g):
        return g, g


class Sub(Function):
    def forward(self, a, b):
        return a - b

    def backward(self, g):
        return g, -g


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, g):
        # Skip the product for an input that needs no gradient (x * 0.5: a full-size multiply saved).
        ga = g * self.b if self.parents[0].requires_grad else None
        gb = g * self.a if self.parents[1].requires_grad else None
        return ga, gb


class Div(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, g):
        ga = g / self.b  # d(a/b)/da = 1/b
        gb = -ga * self.a / self.b if self.parents[1].requires_grad else None  # d(a/b)/db = -a/b^2
        return ga, gb


class Pow(Function):
    """a ** b; d/da = b a^(b-1), d/db = a^b log a."""

    def forward(self, a, b):
        self.a, self.b = a, b
        self.out = a**b
        return self.out

    def backward(self, g):
        ga = g * self.b * self.a ** (self.b - 1) if self.parents[0].requires_grad else None
        gb = None
        if self.parents[1].requires_grad:
            with np.errstate(divide="ignore", invalid="ignore"):
                gb = g * self.out * np.log(self.a)
        return ga, gb


@tensor_method("add", "__add__", "__radd__")
def add(a, b):
    """Element-wise ``a + b`` with broadcasting (``torch.add``); also ``a + b`` and ``b + a``."""
    return Add.apply(a, b)


@tensor_method("sub", "__sub__")
def sub(a, b):
    """Element-wise ``a - b`` with broadcasting (``torch.sub``); also ``a - b``."""
    return Sub.apply(a, b)


@tensor_method("mul", "__mul__", "__rmul__")
def mul(a, b):
    """Element-wise ``a * b`` with broadcasting (``torch.mul``); also ``a * b`` and ``b * a``."""
    return Mul.apply(a, b)


@tensor_method("div", "__truediv__")
def div(a, b):
    """Element-wise ``a / b`` with broadcasting (``torch.div``); also ``a / b``."""
    return Div.apply(a, b)


@tensor_method("pow", "__pow__")
def pow(a, b):
    """Element-wise ``a ** b`` with broadcasting (``torch.pow``); also ``a ** b``."""
    return Pow.apply(a, b)


Tensor.__rsub__ = lambda self, other: Sub.apply(other, self)
Tensor.__rtruediv__ = lambda self, other: Div.apply(other, self)
Tensor.__rpow__ = lambda self, other: Pow.apply(other, self)


# -- unary ops -------------------------------------------------------------------------
class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, g):
        return (-g,)


class Abs(Function):
    """``|x|``; ``d|x|/dx = sign(x)``, 0 at x = 0 (as PyTorch)."""

    def forward(self, x):
        self.sign = np.sign(x)
        return np.abs(x)

    def backward(self, g):
        return (g * self.sign,)


class Exp(Function):
    def forward(self, x):
        self.y = np.exp(x)
        return self.y

    def backward(self, g):
        return (g * self.y,)


class Log(Function):
    def forward(self, x):
        self.x = x
        return np.log(x)

    def backward(self, g):
        return (g / self.x,)


class Sqrt(Function):
    def forward(self, x):
        self.y = np.sqrt(x)
        return self.y

    def backward(self, g):
        return (g / (2 * self.y),)


class ReLU(Function):
    """max(x, 0) (NaN stays NaN); the gradient passes except where x <= 0, so also at NaN, as in torch."""

    def forward(self, x):
        self.mask = ~(x <= 0)
        return np.maximum(x, 0)

    def backward(self, g):
        return (g * self.mask,)


class Sigmoid(Function):
    """s = 1 / (1 + e^-x); ds/dx = s (1 - s)."""

    def forward(self, x):
        self.s = _sigmoid(x)
        return self.s

    def backward(self, g):
        return (g * self.s * (1 - self.s),)


class SiLU(Function):
    """Swish: x * s(x); d/dx = s(x) (1 + x (1 - s(x)))."""

    def forward(self, x):
        self.x, self.s = x, _sigmoid(x)
        return x * self.s

    def backward(self, g):
        s = self.s
        return (g * (s * (1 + self.x * (1 - s))),)


class Tanh(Function):
    def forward(self, x):
        self.y = np.tanh(x)
        return self.y

    def backward(self, g):
        return (g * (1 - self.y * self.y),)


def _sigmoid(x):
    """1 / (1 + exp(-x)) in one buffer. For x very negative exp(-x) overflows to inf and the
    result is 1 / inf = 0, the right limit; for x very positive it underflows to 0 and the
    result is 1: both warnings are silenced."""
    s = np.negative(x, out=np.empty_like(x))  # out=: an array even for 0-d x
    with np.errstate(over="ignore", under="ignore"):
        np.exp(s, out=s)
    s += 1
    return np.reciprocal(s, out=s)


@tensor_method("neg", "__neg__")
def neg(x):
    """Element-wise ``-x`` (``torch.neg``)."""
    return Neg.apply(x)


@tensor_method("abs", "__abs__")
def abs(x):
    """Element-wise absolute value ``|x|`` (``torch.abs``); its gradient is sign(x), 0 at x = 0."""
    return Abs.apply(x)


@tensor_method("exp")
def exp(x):
    """Element-wise ``e ** x`` (``torch.exp``)."""
    return Exp.apply(x)


@tensor_method("log")
def log(x):
    """Element-wise natural logarithm (``torch.log``)."""
    return Log.apply(x)


@tensor_method("sqrt")
def sqrt(x):
    """Element-wise square root (``torch.sqrt``); its gradient is ``1 / (2 sqrt(x))``."""
    return Sqrt.apply(x)


@tensor_method("relu")
def relu(x):
    """``max(x, 0)`` element-wise (``torch.relu``); the gradient passes where x > 0."""
    return ReLU.apply(x)


@tensor_method("sigmoid")
def sigmoid(x):
    """``1 / (1 + exp(-x))`` element-wise (``torch.sigmoid``), without overflow warnings."""
    return Sigmoid.apply(x)


@tensor_method("silu", "swish")
def silu(x):
    """SiLU (swish), ``x * sigmoid(x)`` element-wise (``torch.nn.functional.silu``); ``swish`` is an alias."""
    return SiLU.apply(x)


@tensor_method("tanh")
def tanh(x):
    """Element-wise hyperbolic tangent (``torch.tanh``)."""
    return Tanh.apply(x)
