"""The shared PyTorch parity harness: every differentiable op is checked through here.

``check_parity(mm_fn, torch_fn, inputs, dtype)`` runs the same computation in
minimix and in torch on the same numbers, then compares

* the forward outputs, and
* the gradient of every floating input, after back-propagating the SAME random
  upstream gradient through both (a random projection catches errors that a
  plain ``.sum()`` would hide, e.g. a transposed gradient).

Float inputs are cast to ``dtype``; integer arrays (class labels) and other
Python values are passed through unchanged. Tolerances are tight in float64 and
loose in float32; ``atol`` is scaled by the largest reference magnitude so that
large sums (convolutions) are judged relative to their size.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is the reference for parity tests")

TOLERANCES = {np.float64: dict(rtol=1e-7, atol=1e-9), np.float32: dict(rtol=1e-4, atol=1e-5)}
DTYPES = pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])


def _as_list(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _close(name, actual, expected, rtol, atol):
    expected = np.asarray(expected)
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale, err_msg=name)


def check_parity(mm_fn, torch_fn, inputs, dtype=np.float64, rtol=None, atol=None, seed=0,
                 requires_grad=None, check_grad=True):
    """Compare ``mm_fn(*minimix_inputs)`` with ``torch_fn(*torch_inputs)``, forward and backward.

    ``requires_grad``: optional list of booleans, one per input (default: every
    floating array). Returns the minimix outputs for further checks.
    """
    import minimix as mm

    tol = dict(TOLERANCES[dtype])
    if rtol is not None:
        tol["rtol"] = rtol
    if atol is not None:
        tol["atol"] = atol
    mm_inputs, torch_inputs, differentiable = [], [], []
    for i, x in enumerate(inputs):
        is_float = isinstance(x, np.ndarray) and x.dtype.kind == "f"
        grad = is_float if requires_grad is None else bool(requires_grad[i])
        if is_float:
            x = x.astype(dtype)
            mm_inputs.append(mm.Tensor(x.copy(), requires_grad=grad))
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
    total_mm, total_t = None, None
    for a, b in zip(mm_out, t_out):
        v = rng.standard_normal(a.shape).astype(dtype)
        term_mm = (a * mm.Tensor(v)).sum()
        term_t = (b * torch.from_numpy(v)).sum()
        total_mm = term_mm if total_mm is None else total_mm + term_mm
        total_t = term_t if total_t is None else total_t + term_t
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
