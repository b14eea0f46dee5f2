"""gradcheck accepts correct backward passes and catches wrong ones; manual_seed makes runs repeatable."""
import numpy as np
import pytest

import minimix as mm
import minimix.nn.functional as F
from minimix import GradcheckError, gradcheck
from minimix.tensor import Function


def t(*shape, seed=0, positive=False):
    rng = np.random.default_rng(seed)
    data = rng.uniform(0.5, 2.0, shape) if positive else rng.standard_normal(shape)
    return mm.Tensor(data, requires_grad=True)


CORRECT = {
    "broadcast arithmetic": (lambda a, b: (a * b - a / b) ** 2, [t(3, 1, positive=True), t(1, 4, seed=1, positive=True)]),
    "exp log sqrt": (lambda x: (x.exp() + x.log()).sqrt(), [t(2, 3, positive=True)]),
    "reductions": (lambda x: x.amax(axis=1) + x.mean(axis=0).sum() - x.sum(axis=(0, 1)), [t(3, 4)]),
    "matmul softmax": (lambda a, b: F.softmax(a @ b, -1), [t(2, 3), t(3, 4, seed=1)]),
    "linear cross_entropy": (lambda x, w: F.cross_entropy(F.linear(x, w), np.array([0, 2]), label_smoothing=0.1),
                             [t(2, 3), t(3, 3, seed=1)]),
    "shapes": (lambda x: mm.cat([x[:, ::2], F.pad(x.T, (1, 1))[::2].reshape(2, -1)], axis=1), [t(2, 4)]),
    "activations": (lambda x: x.silu() * x.sigmoid() + x.tanh() + x.relu(), [t(3, 3)]),
}


@pytest.mark.parametrize("name", list(CORRECT))
def test_correct_ops_pass(name):
    fn, inputs = CORRECT[name]
    assert gradcheck(fn, inputs)


class WrongSquare(Function):
    """x^2 with a deliberately wrong backward: forgets the factor 2."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, g):
        return (g * self.x,)


class WrongTransposeMul(Function):
    """a * b^T for square matrices, with b's gradient left untransposed (a classic slip)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b.T

    def backward(self, g):
        return g * self.b.T, g * self.a  # should be (g * a).T


def test_wrong_backward_is_flagged():
    with pytest.raises(GradcheckError, match="input 0.*analytic.*numeric"):
        gradcheck(WrongSquare.apply, [t(2, 3)])
    assert gradcheck(WrongSquare.apply, [t(2, 3)], raise_exception=False) is False


def test_wrong_gradient_of_second_input_is_flagged():
    a, b = t(3, 3), t(3, 3, seed=1)
    with pytest.raises(GradcheckError, match="input 1"):
        gradcheck(WrongTransposeMul.apply, [a, b])
    b.requires_grad = False  # the wrong half is no longer checked
    assert gradcheck(WrongTransposeMul.apply, [a, b])


def test_non_contiguous_input():
    """A transposed view: perturbing it must reach the data the function reads."""
    x = mm.Tensor(np.random.default_rng(0).standard_normal((4, 3)).T, requires_grad=True)
    assert not x.data.flags.c_contiguous
    assert gradcheck(lambda v: (v * v).sum(axis=0), [x])
    with pytest.raises(GradcheckError):
        gradcheck(WrongSquare.apply, [x])


def test_argument_errors():
    with pytest.raises(ValueError, match="float64"):
        gradcheck(lambda x: x * 2, [mm.Tensor(np.ones(2, np.float32), requires_grad=True)])
    with pytest.raises(ValueError, match="requires_grad"):
        gradcheck(lambda x: x * 2, [mm.Tensor(np.ones(2))])


def test_manual_seed_makes_init_and_randomness_repeatable():
    def draw():
        layer = mm.nn.Linear(5, 3)
        mask = F.dropout(mm.Tensor(np.ones((4, 4), np.float32)), 0.5).data
        return layer.weight.data.copy(), layer.bias.data.copy(), mask, mm.randn(3, 2).data

    mm.manual_seed(7)
    first = draw()
    mm.manual_seed(7)
    again = draw()
    mm.manual_seed(8)
    other = draw()
    for a, b, c in zip(first, again, other):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


def test_generator_state_round_trip():
    """get_state/set_state let a checkpoint restore the random stream mid-run."""
    mm.manual_seed(3)
    mm.randn(10)
    state = mm.random.get_state()
    expected = mm.randn(5).data
    mm.randn(7)
    mm.random.set_state(state)
    np.testing.assert_array_equal(mm.randn(5).data, expected)
