"""The shared PyTorch parity harness: every differentiable op is checked through here.

``check_parity(mm_fn, torch_fn, inputs, dtype)`` runs the same computation in
minimix and in torch on the same numbers, then compares

* the forward outputs, and
* the gradient of every floating input, after back-propagating the SAME random
  upstream gradient through both (a random projection catches errors that a
  plain ``.sum()`` would hide, e.g. a transposed gradient).

Float inputs are cast to ``dtype``; integer arrays (class labels) and other
Python values are passed through unchanged. Tolerances are tight in float64 and
loose in float32; ``atol`` is scaled by the largest finite reference magnitude so
that large sums (convolutions) are judged relative to their size. inf and NaN must
appear exactly where torch has them (same sign for inf).

``layout=`` hands minimix the float inputs in another memory layout (``relayout``:
Fortran order, channels-last, reversed strides, a strided slice of a larger array)
with the same values; torch gets them contiguous. ``grad_outputs=`` replaces the random
upstream gradients (e.g. to back-propagate an inf).
"""
import numpy as np
import pytest
from conftest import require

torch = require("torch", "PyTorch is the reference for parity tests")

TOLERANCES = {np.float64: dict(rtol=1e-7, atol=1e-9), np.float32: dict(rtol=1e-4, atol=1e-5)}
DTYPES = pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])


LAYOUTS = ("C", "F", "channels_last", "reversed", "sliced")


def relayout(x, layout):
    """The values of array x in memory layout ``layout``, as a view minimix must read through its strides:

    * "C": x itself (C-contiguous as made by ``astype``);
    * "F": Fortran order (the first axis varies fastest);
    * "channels_last": axis 1 stored last (NHWC storage of an NCHW array; for 2-D arrays, Fortran order);
    * "reversed": every stride negative (a copy of x flipped on every axis, viewed flipped back);
    * "sliced": every other element of a larger array along every axis (strides of 2 elements, offset 1).
    """
    if layout == "C":
        return x
    if layout == "F":
        return np.asfortranarray(x)
    if layout == "channels_last":
        if x.ndim < 3:
            return np.asfortranarray(x)
        order = (0,) + tuple(range(2, x.ndim)) + (1,)
        return np.ascontiguousarray(x.transpose(order)).transpose(np.argsort(order))
    if layout == "reversed":
        return np.flip(np.flip(x).copy())
    if layout == "sliced":
        index = tuple(slice(1, 2 * n + 1, 2) for n in x.shape)
        big = np.full(tuple(2 * n + 2 for n in x.shape), np.nan, dtype=x.dtype)  # NaN between: a leak shows
        big[index] = x
        return big[index]
    raise ValueError(f"relayout: layout must be one of {LAYOUTS}, got {layout!r}")


def _as_list(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _close(name, actual, expected, rtol, atol):
    expected, actual = np.asarray(expected), np.asarray(actual)
    finite = np.isfinite(expected)
    if not finite.all():  # inf and NaN exactly where torch has them (NaN equals NaN here)
        np.testing.assert_array_equal(actual[~finite], expected[~finite], err_msg=f"{name}: non-finite values")
    scale = max(1.0, float(np.max(np.abs(expected[finite])))) if finite.any() else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale, err_msg=name)


def check_parity(mm_fn, torch_fn, inputs, dtype=np.float64, rtol=None, atol=None, seed=0,
                 requires_grad=None, check_grad=True, layout="C", grad_outputs=None):
    """Compare ``mm_fn(*minimix_inputs)`` with ``torch_fn(*torch_inputs)``, forward and backward.

    ``requires_grad``: optional list of booleans, one per input (default: every
    floating array). ``layout``: a ``LAYOUTS`` name for every float input, or a list
    with one per input (None: "C"); minimix's tensors hold those very views.
    ``grad_outputs``: the upstream gradient of each output (default: random normal).
    Returns the minimix outputs for further checks.
    """
    import minimix as mm

    tol = dict(TOLERANCES[dtype])
    if rtol is not None:
        tol["rtol"] = rtol
    if atol is not None:
        tol["atol"] = atol
    mm_inputs, torch_inputs, differentiable = [], [], []
    layouts = [layout] * len(inputs) if layout is None or isinstance(layout, str) else list(layout)
    for i, x in enumerate(inputs):
        is_float = isinstance(x, np.ndarray) and x.dtype.kind == "f"
        grad = is_float if requires_grad is None else bool(requires_grad[i])
        if is_float:
            x = x.astype(dtype)
            view = relayout(x.copy(), layouts[i] or "C")
            mm_inputs.append(mm.Tensor(view, requires_grad=grad))
            assert mm_inputs[-1].data is view, "minimix must receive the view itself"
            if layouts[i] not in (None, "C") and x.ndim >= 2 and min(x.shape) > 1:
                assert not view.flags.c_contiguous, f"input {i} in layout {layouts[i]} is still C-contiguous"
            torch_inputs.append(torch.tensor(x.copy(), requires_grad=grad))
        elif isinstance(x, np.ndarray):
            mm_inputs.append(x.copy())
            torch_inputs.append(torch.from_numpy(x.copy()))
        else:
            mm_inputs.append(x)
            torch_inputs.append(x)
        differentiable.append(grad and is_float)

    mm_out = _as_list(mm_fn(*mm_inputs))
    t_out = _as_list(torch_fn(*torch_inputs))
    assert len(mm_out) == len(t_out), f"{len(mm_out)} minimix outputs vs {len(t_out)} torch outputs"
    for k, (a, b) in enumerate(zip(mm_out, t_out)):
        assert a.dtype == dtype, f"output {k} has dtype {a.dtype}, expected {np.dtype(dtype)}"
        assert a.shape == tuple(b.shape), f"output {k}: shape {a.shape} vs torch {tuple(b.shape)}"
        _close(f"forward output {k}", a.data, b.detach().numpy(), **tol)
    if not check_grad:
        return mm_out

    rng = np.random.default_rng(seed)
    upstream = [rng.standard_normal(a.shape).astype(dtype) if grad_outputs is None
                else np.asarray(v).astype(dtype, copy=False) for a, v in zip(mm_out, grad_outputs or mm_out)]
    if len(mm_out) == 1:  # the upstream gradient as given (a strided one stays strided)
        mm_out[0].backward(upstream[0])
        t_out[0].backward(torch.tensor(upstream[0].copy()))
    else:  # the sum of <output, upstream gradient> over the outputs
        total_mm = total_t = 0
        for a, b, v in zip(mm_out, t_out, upstream):
            total_mm = (a * mm.Tensor(v)).sum() + total_mm
            total_t = (b * torch.tensor(v.copy())).sum() + total_t
        total_mm.backward()
        total_t.backward()
    for i, grad in enumerate(differentiable):
        if not grad:
            continue
        expected = torch_inputs[i].grad
        actual = mm_inputs[i].grad
        if expected is None:
            assert actual is None or not np.any(actual), f"input {i}: torch has no gradient, minimix does"
            continue
        assert actual is not None, f"input {i}: minimix produced no gradient"
        assert actual.dtype == dtype, f"input {i}: gradient dtype {actual.dtype}, expected {np.dtype(dtype)}"
        _close(f"gradient of input {i}", actual, expected.numpy(), **tol)
    return mm_out


def randn(*shape, seed=0):
    """Float64 standard-normal test data (cast per test by check_parity)."""
    return np.random.default_rng(seed).standard_normal(shape)
