"""The autograd engine itself: accumulation, no_grad, detach, deep graphs, dtype rules, freed graphs."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require

import minimix as mm
from minimix.tensor import Function, profile_ops


def test_attributes():
    x = mm.Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    assert x.shape == (2, 3) and x.dtype == np.float64 and x.ndim == 2 and len(x) == 2
    assert x.numel() == 6 and x.size() == (2, 3) and x.size(1) == 3 and x.size(-2) == 2  # torch's size()
    assert x.requires_grad and x.grad is None and x.is_leaf
    assert x.numpy() is x.data
    assert mm.Tensor([[2.5]]).item() == 2.5
    assert np.asarray(x).dtype == np.float64


def test_size_and_numel_as_torch():
    """size() is the shape (torch.Size compares equal to a tuple), size(dim) one length, numel() the count."""
    torch = require("torch", "size() and numel() are torch's")
    for shape in [(2, 3), (0, 4), (), (1, 5, 1)]:
        x, t = mm.Tensor(np.zeros(shape)), torch.zeros(shape)
        assert x.size() == tuple(t.size()) and x.numel() == t.numel()
        for dim in range(-len(shape), len(shape)):
            assert x.size(dim) == t.size(dim)
    with pytest.raises(ValueError, match=r"size: dim 2 is out of range for a tensor of shape \(2, 3\)"):
        mm.Tensor(np.zeros((2, 3))).size(2)
    with pytest.raises(ValueError, match="size: dim 0"):
        mm.Tensor(1.0).size(0)
    with pytest.raises(TypeError, match="size: dim must be an int"):
        mm.Tensor(np.zeros(2)).size("0")


def test_gradients_accumulate_across_backward_calls_until_zeroed():
    x = mm.Tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, 2 * x.data)
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, 4 * x.data)
    x.zero_grad()
    assert x.grad is None
    (3 * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 3.0, 3.0])


def test_input_used_on_several_paths_sums_its_gradients():
    """y = x*x + 2x + x: every path from y back to x contributes (a DAG, not a tree)."""
    x = mm.Tensor(np.array([0.5, -1.0]), requires_grad=True)
    y = x * x + 2 * x + x
    y.sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 3)


def test_leaf_gradient_is_not_aliased():
    """Add's backward passes the same array to both inputs: each leaf must own a copy."""
    a = mm.Tensor(np.ones(3), requires_grad=True)
    b = mm.Tensor(np.ones(3), requires_grad=True)
    (a + b).sum().backward()
    a.grad[0] = 100.0
    assert b.grad[0] == 1.0


def test_explicit_upstream_gradient():
    x = mm.Tensor(np.array([[1.0, 2.0], [3.0, 4.0]]), requires_grad=True)
    (x * 3).backward(np.array([[1.0, 0.0], [2.0, -1.0]]))
    np.testing.assert_array_equal(x.grad, [[3.0, 0.0], [6.0, -3.0]])


def test_intermediate_tensors_get_no_grad_attribute():
    x = mm.Tensor(np.ones(2), requires_grad=True)
    h = x * 2
    (h * h).sum().backward()
    assert h.grad is None and not h.is_leaf
    np.testing.assert_array_equal(x.grad, [8.0, 8.0])


def test_no_grad_records_nothing_and_restores_state():
    x = mm.Tensor(np.ones(3), requires_grad=True)
    with mm.no_grad():
        assert not mm.is_grad_enabled()
        y = x * 2 + 1
    assert mm.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf
    with pytest.raises(ZeroDivisionError):
        with mm.no_grad():
            1 / 0
    assert mm.is_grad_enabled(), "no_grad must restore the state after an exception"


def test_no_grad_as_decorator_and_nested():
    @mm.no_grad()
    def evaluate(t):
        return t * t

    x = mm.Tensor(np.ones(2), requires_grad=True)
    assert not evaluate(x).requires_grad
    with mm.no_grad():
        with mm.no_grad():
            pass
        assert not mm.is_grad_enabled()
    assert mm.is_grad_enabled()


def test_detach_shares_data_and_stops_gradients():
    x = mm.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    d = (x * 2).detach()
    assert not d.requires_grad and d.is_leaf
    y = x * d  # d is a constant here
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, d.data)
    d2 = x.detach()
    d2.data[0] = 10.0
    assert x.data[0] == 10.0, "detach shares the array, as in PyTorch"


def test_100k_deep_chain_backward_and_release():
    """The iterative topological sort needs no recursion; freeing the graph must not overflow either."""
    x = mm.Tensor(np.ones(4, np.float32), requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0 + 0.0
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones(4, np.float32))
    del y  # drops a 200k-node linked graph


class TestDtypes:
    def test_python_values_follow_pytorch(self):
        """Python floats -> float32 (torch's default dtype), ints -> int64, bools -> bool: torch.tensor's rules."""
        torch = require("torch", "the dtype rules are torch.tensor's")
        for value in (3.0, [1, 2], [[1.5, 2.0]], 2, [1, 2.5], [], [True, False], True, [[1], [2]], -7):
            expected = torch.tensor(value).numpy().dtype
            assert mm.Tensor(value).dtype == expected, value
            assert mm.tensor(value).dtype == expected, value
        assert mm.Tensor([1, 2]).dtype == np.int64 and mm.Tensor([1.0, 2]).dtype == np.float32
        assert mm.Tensor([1, 2], dtype=np.float64).dtype == np.float64

    def test_an_int_tensor_cannot_require_grad(self):
        with pytest.raises(TypeError, match="int64"):
            mm.Tensor([1, 2], requires_grad=True)

    def test_numpy_arrays_keep_their_dtype(self):
        assert mm.Tensor(np.ones(2)).dtype == np.float64
        assert mm.Tensor(np.ones(2, np.float32)).dtype == np.float32
        assert mm.Tensor(np.arange(3)).dtype == np.int64
        assert mm.Tensor(np.arange(3, dtype=np.int32)).dtype == np.int32
        assert mm.Tensor(np.float64(2.0)).dtype == np.float64 and mm.Tensor(np.array([True])).dtype == np.bool_

    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    def test_scalars_never_change_the_dtype(self, dtype):
        x = mm.Tensor(np.array([1.0, 2.0], dtype), requires_grad=True)
        for y in (x * 2, 2 * x, x + 1.5, 1.5 - x, x / 3, 1 / x, x**2, 2**x, -x, x * np.float64(2),
                  np.float64(2) * x, x * np.float16(2)):
            assert y.dtype == dtype
        (x * 2.5 + x**2).sum().backward()
        assert x.grad.dtype == dtype

    def test_float64_stays_float64_end_to_end(self):
        x = mm.Tensor(np.array([[0.1, 0.2]]), requires_grad=True)
        w = mm.Tensor(np.ones((3, 2)), requires_grad=True)
        loss = mm.nn.functional.cross_entropy(mm.nn.functional.linear(x, w).silu(), np.array([1]))
        assert loss.dtype == np.float64
        loss.backward()
        assert x.grad.dtype == np.float64 and w.grad.dtype == np.float64

    def test_ndarray_operand_on_the_left(self):
        """ndarray * Tensor must stay a Tensor (NumPy defers to Tensor.__rmul__), not become an object array."""
        x = mm.Tensor(np.ones(3), requires_grad=True)
        y = np.full(3, 2.0) * x
        assert isinstance(y, mm.Tensor) and y.requires_grad
        y.sum().backward()
        np.testing.assert_array_equal(x.grad, [2.0, 2.0, 2.0])


def test_second_backward_through_a_freed_graph_raises():
    x = mm.Tensor(np.ones(2), requires_grad=True)
    y = (x.exp() * 2).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_backward_frees_intermediate_tensors_while_the_output_lives():
    """A kept ``loss`` must not keep the step's activations alive (they are most of the memory)."""
    import gc
    import weakref

    x = mm.Tensor(np.ones(4), requires_grad=True)
    hidden = x.exp() * 2
    alive = weakref.ref(hidden)
    loss = hidden.sum()
    del hidden
    gc.collect()
    assert alive() is not None  # before backward the graph needs it
    loss.backward()
    gc.collect()
    assert alive() is None, "after backward the loss still links to its inputs"
    assert loss.item() == pytest.approx(8 * np.e)


def test_retain_graph_allows_a_second_backward():
    x = mm.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_array_equal(x.grad, 4 * x.data)


def test_profile_ops_counts_each_op_and_by_shape_names_its_input():
    x = mm.Tensor(np.ones((2, 3)), requires_grad=True)
    with profile_ops() as ops:
        ((x * x).sum() + (x[:1] * 2.0).sum()).backward()
    assert ops["Mul"][0] == 2 and ops["Mul"][2] > 0  # two multiplies, both backpropagated
    with profile_ops(by_shape=True) as ops:
        with profile_ops() as inner:  # nested: its own labels; the outer block's come back after it
            (x * x).sum()
        ((x * x).sum() + (x[:1] * 2.0).sum()).backward()
    assert list(inner) == ["Mul", "Sum"]
    assert ops["Mul (2, 3)"][0] == ops["Mul (1, 3)"][0] == 1 and "Mul" not in ops


def test_custom_function():
    """The documented way to add an op: forward/backward on arrays, then Function.apply."""

    class Cube(Function):
        def forward(self, x):
            self.x = x
            return x**3

        def backward(self, g):
            return (3 * self.x**2 * g,)

    x = mm.Tensor(np.array([1.0, -2.0]), requires_grad=True)
    Cube.apply(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 12.0])


class TestCustomFunctionErrors:
    """A user's Function whose backward returns the wrong number or shape of gradients is named in the error."""

    @staticmethod
    def _op(grads):
        class Scale(Function):
            def forward(self, a, b):
                return a * b

            def backward(self, g):
                return grads(g)

        return Scale

    @pytest.mark.parametrize("returned, count", [(lambda g: (g,), 1), (lambda g: (g, g, g), 3), (lambda g: g, 1),
                                                 (lambda g: [g, None, g], 3), (lambda g: (), 0)])
    def test_wrong_number_of_gradients(self, returned, count):
        a = mm.Tensor(np.ones((2, 3)), requires_grad=True)
        b = mm.Tensor(np.ones((2, 3)), requires_grad=True)
        out = self._op(returned).apply(a, b).sum()
        with pytest.raises(RuntimeError, match=rf"Scale\.backward returned {count} gradients?, but Scale has 2 inputs"):
            out.backward()
        assert a.grad is None and b.grad is None

    def test_extra_none_gradients_are_accepted(self):
        """As in PyTorch: gradients beyond the inputs are allowed when they are None (an optional bias)."""
        a = mm.Tensor(np.ones((2, 3)), requires_grad=True)
        b = mm.Tensor(np.full((2, 3), 2.0), requires_grad=True)
        self._op(lambda g: [g * 2.0, g * 1.0, None, None]).apply(a, b).sum().backward()
        np.testing.assert_array_equal(a.grad, np.full((2, 3), 2.0))
        np.testing.assert_array_equal(b.grad, np.ones((2, 3)))

    @pytest.mark.parametrize("grad_shape", [(6,), (3, 2), (2, 4), (3,), ()])
    def test_gradient_of_an_irreducible_shape(self, grad_shape):
        """(6,) and (3, 2) have the input's size, so a bare reshape would have accepted them silently."""
        a = mm.Tensor(np.ones((2, 3)), requires_grad=True)
        b = mm.Tensor(np.ones((2, 3)))
        out = self._op(lambda g: (np.ones(grad_shape), None)).apply(a, b).sum()
        message = rf"Scale\.backward returned a gradient of shape {re.escape(str(grad_shape))} for input 0, which " \
                  rf"has shape \(2, 3\)"
        with pytest.raises(RuntimeError, match=message):
            out.backward()

    def test_a_gradient_that_is_not_an_array(self):
        a = mm.Tensor(np.ones((2, 3)), requires_grad=True)
        out = self._op(lambda g: (mm.Tensor(g), None)).apply(a, np.ones((2, 3))).sum()
        with pytest.raises(TypeError, match="Scale.backward returned a Tensor for input 0; gradients are NumPy arrays"):
            out.backward()
        x = mm.Tensor(np.ones(()), requires_grad=True)  # a NumPy scalar is accepted as a 0-d gradient
        self._op(lambda g: (np.float64(2.0), None)).apply(x, np.ones(())).backward()
        assert x.grad == 2.0

    @pytest.mark.parametrize("grad_shape, each", [((2, 3), 3.0), ((4, 2, 3), 12.0), ((2, 1), 1.0), ((5, 2, 1), 5.0)])
    def test_broadcast_gradients_are_still_summed(self, grad_shape, each):
        """A gradient in a shape its (2, 1) input broadcasts to is summed back to (2, 1), not refused."""
        a = mm.Tensor(np.ones((2, 1)), requires_grad=True)
        b = mm.Tensor(np.ones((2, 3)))
        self._op(lambda g: (np.ones(grad_shape), None)).apply(a, b).sum().backward()
        np.testing.assert_array_equal(a.grad, np.full((2, 1), each))


def test_readme_write_your_own_op():
    """The README's "Write your own op" example runs as printed (the code block is executed)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Write your own op", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    namespace = {}
    exec(compile(code, "README.md: Write your own op", "exec"), namespace)
    assert namespace["ok"] is True


def test_import_stays_light():
    """`import minimix` must not pull in numba, matplotlib, torch or PIL (it must stay well under 1 s)."""
    heavy = ["numba", "matplotlib", "torch", "PIL"]
    code = f"import sys, minimix; print([m for m in {heavy!r} if m in sys.modules])"
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"import minimix loaded {result.stdout.strip()}"


def test_readme_first_look(tmp_path, monkeypatch, capsys):
    """The README's "A first look" block runs as printed (in a scratch directory: it saves model.npz)
    and prints what its comments say."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = readme.split("## A first look", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md: A first look", "exec"), namespace)
    assert "[3, 3, 3, 3] [(3, 1, 3, 3), (3, 1, 5, 5)" in capsys.readouterr().out
    assert (tmp_path / "model.npz").is_file()
    assert (mm.tensor([1, 2]).dtype, mm.tensor([1.0, 2.0]).dtype) == (np.int64, np.float32)
