"""Element-wise ops against PyTorch: binary arithmetic with broadcasting, unary functions, scalars."""
import numpy as np
import pytest
from parity import DTYPES, check_parity, randn, torch

import minimix as mm
import minimix.nn.functional as F

pytestmark = pytest.mark.usefixtures("each_path")  # every test on the fast and the reference path

# (a shape, b shape): equal, broadcast both ways, size-1 dims, fewer dims, a 0-d operand, batch 1.
BINARY_SHAPES = [
    ((3, 4), (3, 4)),
    ((1, 5), (4, 1)),
    ((2, 1, 3), (3,)),
    ((1,), (2, 3)),
    ((1, 1), (1, 1)),
    ((), (2, 3)),
    ((1, 3, 1, 2), (4, 1, 1, 1)),
]
UNARY_SHAPES = [(), (1,), (2, 3), (1, 4, 1, 5)]


def positive(*shape, seed=0):
    """Values in [0.5, 2.5): safe for log, sqrt, division and fractional powers."""
    return np.random.default_rng(seed).uniform(0.5, 2.5, shape)


BINARY_OPS = {
    "add": (lambda a, b: a + b, lambda a, b: a + b),
    "sub": (lambda a, b: a - b, lambda a, b: a - b),
    "mul": (lambda a, b: a * b, lambda a, b: a * b),
    "div": (lambda a, b: a / b, lambda a, b: a / b),
    "pow": (lambda a, b: a**b, lambda a, b: a**b),
    "add_method": (lambda a, b: a.add(b), torch.add),
    "sub_method": (lambda a, b: a.sub(b), torch.sub),
    "mul_method": (lambda a, b: a.mul(b), torch.mul),
    "div_method": (lambda a, b: a.div(b), torch.div),
    "pow_method": (lambda a, b: a.pow(b), torch.pow),
}


@DTYPES
@pytest.mark.parametrize("shapes", BINARY_SHAPES, ids=str)
@pytest.mark.parametrize("op", list(BINARY_OPS))
def test_binary_broadcasting(op, shapes, dtype):
    mm_fn, torch_fn = BINARY_OPS[op]
    a_shape, b_shape = shapes
    a, b = positive(*a_shape, seed=1), positive(*b_shape, seed=2)
    if op.startswith(("add", "sub", "mul")):  # signs matter there, and no domain limits
        a, b = randn(*a_shape, seed=1), randn(*b_shape, seed=2)
    check_parity(mm_fn, torch_fn, [a, b], dtype)


@DTYPES
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((1, 5), (4, 1))], ids=str)
def test_binary_with_one_constant_input(shapes, dtype):
    """Only one side requires grad: the other side's gradient is neither needed nor produced."""
    a, b = positive(*shapes[0], seed=3), positive(*shapes[1], seed=4)
    for mm_fn, torch_fn in BINARY_OPS.values():
        check_parity(mm_fn, torch_fn, [a, b], dtype, requires_grad=[True, False])
        check_parity(mm_fn, torch_fn, [a, b], dtype, requires_grad=[False, True])


@DTYPES
def test_same_tensor_on_both_sides(dtype):
    """x * x and x / x: both gradient contributions land on the one input."""
    check_parity(lambda x: x * x + x / (x + 3.0), lambda x: x * x + x / (x + 3.0), [positive(2, 3)], dtype)


SCALAR_EXPRESSIONS = {
    "x*2.5": lambda x: x * 2.5,
    "2.5*x": lambda x: 2.5 * x,
    "x+1": lambda x: x + 1,
    "1-x": lambda x: 1 - x,
    "x-0.5": lambda x: x - 0.5,
    "x/3": lambda x: x / 3,
    "1/x": lambda x: 1 / x,
    "x**2": lambda x: x**2,
    "x**-1.5": lambda x: x**-1.5,
    "2**x": lambda x: 2**x,
    "-x": lambda x: -x,
}


@DTYPES
@pytest.mark.parametrize("name", list(SCALAR_EXPRESSIONS))
def test_python_scalars_keep_dtype(name, dtype):
    """check_parity also asserts the output dtype: a Python scalar never upcasts float32."""
    fn = SCALAR_EXPRESSIONS[name]
    check_parity(fn, fn, [positive(3, 1, 2)], dtype)


@DTYPES
def test_numpy_scalar_keeps_tensor_dtype(dtype):
    fn_mm = lambda x: np.float64(2.0) * x + np.float32(1.0)  # noqa: E731
    fn_t = lambda x: 2.0 * x + 1.0  # noqa: E731
    check_parity(fn_mm, fn_t, [randn(2, 3)], dtype)


UNARY_OPS = {
    "neg": (lambda x: x.neg(), torch.neg, randn),
    "exp": (lambda x: x.exp(), torch.exp, randn),
    "log": (lambda x: x.log(), torch.log, positive),
    "sqrt": (lambda x: x.sqrt(), torch.sqrt, positive),
    "relu": (lambda x: x.relu(), torch.relu, randn),
    "sigmoid": (lambda x: x.sigmoid(), torch.sigmoid, randn),
    "silu": (lambda x: x.silu(), torch.nn.functional.silu, randn),
    "tanh": (lambda x: x.tanh(), torch.tanh, randn),
    "F.relu": (F.relu, torch.nn.functional.relu, randn),
    "F.sigmoid": (F.sigmoid, torch.sigmoid, randn),
    "F.silu": (F.silu, torch.nn.functional.silu, randn),
    "F.tanh": (F.tanh, torch.tanh, randn),
    "mm.ops.exp": (mm.ops.exp, torch.exp, randn),
    "mm.ops.log": (mm.ops.log, torch.log, positive),
    "mm.ops.sqrt": (mm.ops.sqrt, torch.sqrt, positive),
}


@DTYPES
@pytest.mark.parametrize("shape", UNARY_SHAPES, ids=str)
@pytest.mark.parametrize("op", list(UNARY_OPS))
def test_unary(op, shape, dtype):
    mm_fn, torch_fn, data = UNARY_OPS[op]
    check_parity(mm_fn, torch_fn, [data(*shape, seed=5)], dtype)


@DTYPES
@pytest.mark.parametrize("op", ["sigmoid", "silu", "tanh", "relu"])
def test_activations_at_extreme_inputs(op, dtype):
    """No overflow warnings (a naive 1/(1+exp(-x)) overflows at x = -1000) and torch's values."""
    x = np.array([[-1000.0, -30.0, -1e-3, 0.5, 30.0, 1000.0]])
    mm_fn, torch_fn, _ = UNARY_OPS[op]
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        check_parity(mm_fn, torch_fn, [x], dtype)


@DTYPES
def test_composite_expression(dtype):
    """A small graph that reuses intermediate values (a DAG, not a chain)."""

    def fn(lib):
        def f(x, w):
            h = (x * w).tanh()
            return (h.sigmoid() * h + (h * h).exp() / (1 + h * h)).sqrt()

        return f

    check_parity(fn(mm), fn(torch), [randn(4, 3), randn(1, 3, seed=1)], dtype)
