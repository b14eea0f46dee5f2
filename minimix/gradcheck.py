"""Finite-difference gradient checking, for learners writing their own ops.

For a function f of tensors, pick a random projection v of its output and
compare, for EVERY input element x_i,

    analytic:  (v . df/dx)_i        from minimix's backward(v)
    numeric:   (v.f(x + eps e_i) - v.f(x - eps e_i)) / (2 eps)

Use float64 inputs (float32 rounding swamps the differences) and small shapes:
the cost is two forward passes per input element.
"""
import numpy as np

from .tensor import Tensor, no_grad


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with finite differences."""


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, seed=0) -> bool:
    """Check ``fn(*inputs)``'s backward against central differences.

    ``inputs`` is a sequence of Tensors; those with ``requires_grad=True`` are
    checked. Returns True when every element matches within
    ``|analytic - numeric| <= atol + rtol * |numeric|``; otherwise raises
    ``GradcheckError`` naming the input, the element and both values (or returns
    False with ``raise_exception=False``).
    """
    inputs = list(inputs)
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True, nothing to check")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise ValueError(
                f"gradcheck: input {i} is {inputs[i].dtype}; use float64 inputs "
                "(float32 rounding is larger than the finite differences)"
            )
    for i in checked:
        inputs[i].grad = None
    out = fn(*inputs)
    v = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(v)

    def projected():
        with no_grad():  # the perturbed evaluations need no graph
            return float(np.sum(v * fn(*inputs).data))

    for i in checked:
        x = inputs[i]
        analytic = x.grad if x.grad is not None else np.zeros_like(x.data)
        for index in np.ndindex(x.shape):  # perturb x.data in place, one element at a time
            original = x.data[index]
            x.data[index] = original + eps
            plus = projected()
            x.data[index] = original - eps
            minus = projected()
            x.data[index] = original
            numeric = (plus - minus) / (2 * eps)
            a = float(analytic[index])
            if abs(a - numeric) > atol + rtol * abs(numeric):
                message = (
                    f"gradcheck: gradient of input {i} (shape {x.shape}) at index {tuple(int(k) for k in index)}: "
                    f"analytic {a:.8g} vs numeric {numeric:.8g} (atol {atol}, rtol {rtol})"
                )
                if raise_exception:
                    raise GradcheckError(message)
                return False
    return True
