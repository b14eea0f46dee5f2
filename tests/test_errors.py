"""Bad input gives an error that names the op, the shapes involved and what was expected."""
import re

import numpy as np
import pytest

import minimix as mm
import minimix.nn.functional as F


def t(*shape, dtype=np.float64, requires_grad=True):
    return mm.Tensor(np.ones(shape, dtype), requires_grad=requires_grad)


def raises(exc, *fragments):
    """pytest.raises that also checks each fragment appears literally in the message."""
    return pytest.raises(exc, match="(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments))


@pytest.mark.parametrize(
    "op, name",
    [(lambda a, b: a + b, "Add"), (lambda a, b: a - b, "Sub"), (lambda a, b: a * b, "Mul"),
     (lambda a, b: a / b, "Div"), (lambda a, b: a**b, "Pow")],
)
def test_incompatible_broadcast_names_op_and_both_shapes(op, name):
    with raises(ValueError, name, "(3, 4)", "(5,)", "broadcast"):
        op(t(3, 4), t(5))


def test_matmul_shape_mismatch():
    with raises(ValueError, "MatMul", "(3, 4)", "(5, 2)", "must equal"):
        t(3, 4) @ t(5, 2)
    with raises(ValueError, "MatMul", "(2, 3, 4)", "(5, 4, 2)"):  # batch axes 2 vs 5
        t(2, 3, 4) @ t(5, 4, 2)
    with raises(ValueError, "MatMul", "at least one dimension"):
        mm.ops.matmul(t(), t(3))


def test_linear_shape_mismatch():
    with raises(ValueError, "Linear", "(2, 5)", "(3, 4)", "in_features"):
        F.linear(t(2, 5), t(3, 4))
    with raises(ValueError, "Linear", "bias", "(3,)", "(4,)"):
        F.linear(t(2, 4), t(3, 4), t(4))


def test_requires_grad_needs_a_floating_dtype():
    with raises(TypeError, "floating", "int64"):
        mm.Tensor(np.arange(3), requires_grad=True)


def test_backward_on_non_scalar_needs_grad():
    y = t(2, 3) * 2
    with raises(RuntimeError, "(2, 3)", "grad"):
        y.backward()
    with raises(ValueError, "(3, 2)", "(2, 3)"):
        y.backward(np.ones((3, 2)))


def test_backward_without_graph():
    x = t(3)
    with mm.no_grad():
        y = (x * 2).sum()
    with raises(RuntimeError, "does not require grad", "no_grad"):
        y.backward()
    with raises(RuntimeError, "does not require grad"):
        t(3, requires_grad=False).sum().backward()


@pytest.mark.parametrize(
    "fn, fragments",
    [
        (lambda: t(3, 4).sum(axis=2), ["Sum", "axis 2", "2 dimensions", "(3, 4)"]),
        (lambda: t(3, 4).mean(axis=-3), ["Mean", "axis -3", "(3, 4)"]),
        (lambda: t(3, 4).amax(axis=(1, -1)), ["Amax", "twice"]),
        (lambda: t(2, 3).reshape(4, 2), ["Reshape", "(2, 3)", "(4,2)"]),
        (lambda: t(2, 3, 4).permute(0, 1), ["Permute", "(0, 1)", "permutation", "(2, 3, 4)"]),
        (lambda: t(2, 3).transpose(0, 2), ["transpose", "axis 2"]),
        (lambda: t(2, 3).flatten(1, 0), ["flatten", "start_dim"]),
        (lambda: mm.cat([t(2, 3), t(2, 4)], axis=0), ["cat", "tensor 1", "(2, 4)", "(2, 3)"]),
        (lambda: mm.cat([t(2, 3), t(2, 3)], axis=2), ["cat", "axis 2"]),
        (lambda: mm.cat([], axis=0), ["cat", "at least one"]),
        (lambda: t(2, 6).split([2, 3], axis=1), ["split", "[2, 3]", "6", "(2, 6)"]),
        (lambda: t(2, 6).split(0, axis=1), ["split", "positive"]),
        (lambda: F.pad(t(2, 3), (1, 1, 1)), ["pad", "even"]),
        (lambda: F.pad(t(2, 3), (1, -1)), ["pad", "negative"]),
        (lambda: F.softmax(t(2, 3), 2), ["Softmax", "axis 2", "(2, 3)"]),
        (lambda: F.dropout(t(2, 3), 1.0), ["dropout", "[0, 1)", "1.0"]),
        (lambda: t(2, 3).item(), ["item", "(2, 3)"]),
    ],
    ids=lambda v: v[0] if isinstance(v, list) else "",
)
def test_shape_and_argument_errors(fn, fragments):
    with raises(ValueError, *fragments):
        fn()


@pytest.mark.parametrize(
    "logits, target, fragments",
    [
        ((4, 3), np.array([0, 1, 2]), ["cross_entropy", "(4,)", "(3,)"]),
        ((4, 3), np.array([0.0, 1.0, 2.0, 1.0]), ["cross_entropy", "integer", "float64"]),
        ((4, 3), np.array([0, 1, 3, 1]), ["cross_entropy", "[0, 3)", "max 3"]),
        ((2, 4, 3), np.array([0, 1]), ["cross_entropy", "(N, C)", "(2, 4, 3)"]),
    ],
)
def test_cross_entropy_target_errors(logits, target, fragments):
    with raises(ValueError, *fragments):
        F.cross_entropy(t(*logits), target)


def test_numpy_ufuncs_refuse_tensors():
    """np.exp(tensor) would silently drop the graph: it is an error; use tensor.exp()."""
    with pytest.raises(TypeError, match="Tensor"):
        np.exp(t(2))
