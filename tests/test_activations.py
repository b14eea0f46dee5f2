"""Activations of issue 16 (leaky_relu, elu, gelu, hardswish, hardsigmoid, softplus, mish) against PyTorch:
functional forms over odd shapes and memory layouts, the exact kink points (where the derivative is a
convention, torch's is the expected one), large |x| without overflow, and the torch.nn modules."""
import warnings

import numpy as np
import pytest
from parity import DTYPES, LAYOUTS, check_parity, randn, torch

import minimix as mm
import minimix.nn as nn
import minimix.nn.functional as F

TF = torch.nn.functional

# name: (minimix function, torch function), each with non-default arguments where there are any
OPS = {
    "leaky_relu": (F.leaky_relu, TF.leaky_relu),
    "leaky_relu(0.2)": (lambda x: F.leaky_relu(x, 0.2), lambda x: TF.leaky_relu(x, 0.2)),
    "elu": (F.elu, TF.elu),
    "elu(alpha=2)": (lambda x: F.elu(x, alpha=2.0), lambda x: TF.elu(x, alpha=2.0)),
    "gelu": (F.gelu, TF.gelu),
    "gelu(tanh)": (lambda x: F.gelu(x, approximate="tanh"), lambda x: TF.gelu(x, approximate="tanh")),
    "hardswish": (F.hardswish, TF.hardswish),
    "hardsigmoid": (F.hardsigmoid, TF.hardsigmoid),
    "softplus": (F.softplus, TF.softplus),
    "softplus(beta=2, threshold=6)": (lambda x: F.softplus(x, beta=2.0, threshold=6.0),
                                      lambda x: TF.softplus(x, beta=2.0, threshold=6.0)),
    "softplus(beta=-0.5)": (lambda x: F.softplus(x, beta=-0.5), lambda x: TF.softplus(x, beta=-0.5)),
    "mish": (F.mish, TF.mish),
}

# every kink and threshold of the ops above (0; +-3; beta x == threshold: x = 3 for beta 2 threshold 6,
# x = 20 for the default), points just beside them, and large |x| (overflow)
KINKS = np.array([-1000.0, -100.0, -20.0, -3.0 - 1e-3, -3.0, -3.0 + 1e-3, -1.0, -1e-3, -0.0, 0.0, 1e-3, 0.5,
                  3.0 - 1e-3, 3.0, 3.0 + 1e-3, 6.0, 20.0, 20.5, 100.0, 1000.0])


@DTYPES
@pytest.mark.parametrize("shape", [(), (1,), (0, 3), (2, 3), (1, 3, 4, 5), (2, 1, 5)], ids=str)
@pytest.mark.parametrize("op", list(OPS))
def test_activation_matches_torch(op, shape, dtype):
    """Odd shapes: 0-d, one element, an empty batch, batch 1, non-square."""
    mm_fn, torch_fn = OPS[op]
    check_parity(mm_fn, torch_fn, [np.asarray(3.0 * randn(*shape, seed=len(shape)))], dtype)


@DTYPES
@pytest.mark.parametrize("op", list(OPS))
def test_activation_at_kinks_and_large_inputs_without_warnings(op, dtype):
    """The derivative at each kink is torch's; |x| up to 1000 neither overflows nor warns (float32 too)."""
    mm_fn, torch_fn = OPS[op]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning (overflow, invalid value) fails the test
        out = check_parity(mm_fn, torch_fn, [KINKS.reshape(4, 5)], dtype)
    assert np.isfinite(out[0].data).all()


@DTYPES
@pytest.mark.parametrize("layout", [lay for lay in LAYOUTS if lay != "C"])
@pytest.mark.parametrize("op", ["leaky_relu", "elu", "gelu", "gelu(tanh)", "hardswish", "hardsigmoid",
                                "softplus", "mish"])
def test_activation_reads_any_memory_layout(op, layout, dtype):
    mm_fn, torch_fn = OPS[op]
    check_parity(mm_fn, torch_fn, [4.0 * randn(2, 3, 4, 5)], dtype, layout=layout)


def _same_module_parity(ours, theirs, dtype, shape=(2, 3, 4, 5)):
    # torch's inplace=True modules overwrite their input, which must then not be a leaf: give them a clone
    check_parity(lambda x: ours(x), lambda x: theirs(x.clone()), [4.0 * randn(*shape, seed=3)], dtype)
    assert repr(ours) == repr(theirs)


# constructor arguments, given alike to the minimix and the torch module
MODULES = [
    ("LeakyReLU", (), {}), ("LeakyReLU", (0.2,), {}), ("LeakyReLU", (), {"negative_slope": 0.3, "inplace": True}),
    ("ELU", (), {}), ("ELU", (1.5,), {}), ("ELU", (), {"alpha": 1, "inplace": True}),
    ("GELU", (), {}), ("GELU", ("tanh",), {}), ("GELU", (), {"approximate": "none"}),
    ("Hardswish", (), {}), ("Hardswish", (True,), {}),
    ("Hardsigmoid", (), {}), ("Hardsigmoid", (), {"inplace": True}),
    ("Softplus", (), {}), ("Softplus", (2, 10), {}), ("Softplus", (), {"beta": 0.5, "threshold": 1.0}),
    ("Mish", (), {}), ("Mish", (True,), {}),
]


@DTYPES
@pytest.mark.parametrize("name, args, kwargs", MODULES, ids=lambda v: str(v))
def test_activation_module_matches_torch_module(name, args, kwargs, dtype):
    """Same constructor arguments as torch.nn, same outputs and gradients, same repr."""
    _same_module_parity(getattr(nn, name)(*args, **kwargs), getattr(torch.nn, name)(*args, **kwargs), dtype)


@pytest.mark.parametrize("op", ["leaky_relu", "elu", "hardswish", "hardsigmoid", "mish"])
def test_inplace_is_accepted_but_never_overwrites(op):
    """minimix differs on purpose: inplace=True gives torch's values in a new tensor; the input is kept."""
    x = mm.Tensor(KINKS.copy())
    y = getattr(F, op)(x, inplace=True)
    np.testing.assert_array_equal(x.data, KINKS)
    np.testing.assert_allclose(y.data, getattr(TF, op)(torch.tensor(KINKS)).numpy(), rtol=1e-12, atol=0)


@DTYPES
def test_erf_matches_torch(dtype):
    """gelu's erf: exact in float64 (math.erf); float32's Abramowitz-Stegun formula within 2e-7."""
    from minimix.ops.activation import erf

    x = np.concatenate([np.linspace(-7, 7, 20001), [0.0, -0.0, 30.0, -30.0, np.inf, -np.inf, 1e-30]]).astype(dtype)
    ours, theirs = erf(x), torch.erf(torch.tensor(x, dtype=torch.float64)).numpy()
    assert ours.dtype == dtype
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-15 if dtype == np.float64 else 2e-7)


@DTYPES
def test_relu_at_inf_and_nan_matches_torch(dtype):
    """relu(-inf) = 0, relu(inf) = inf, relu(NaN) = NaN; the gradient passes at NaN and inf (torch's
    rule: blocked only where x <= 0)."""
    x = np.array([-np.inf, -1.0, -0.0, 0.0, 0.5, np.inf, np.nan])
    out = check_parity(lambda t: F.relu(t), TF.relu, [x], dtype, grad_outputs=[np.arange(1.0, 8.0)])
    assert np.isnan(out[0].data[-1]) and out[0].data[0] == 0  # the case reaches the non-finite values


def test_activation_keeps_graph_and_composes():
    """A small chain: gradients flow through several activations into one input, as in torch."""
    x = randn(3, 4)
    check_parity(lambda t: F.mish(F.gelu(F.leaky_relu(t, 0.1)) * 2.0) + F.softplus(t).sum(),
                 lambda t: TF.mish(TF.gelu(TF.leaky_relu(t, 0.1)) * 2.0) + TF.softplus(t).sum(), [x], np.float64)


@pytest.mark.parametrize("call, error, words", [
    (lambda x: F.gelu(x, approximate="exact"), ValueError, ["approximate", "'exact'"]),
    (lambda x: F.gelu(x, "Tanh"), ValueError, ["approximate", "'Tanh'"]),
    (lambda x: F.softplus(x, beta=0), ValueError, ["beta", "0"]),
    (lambda x: F.softplus(x, threshold="20"), TypeError, ["threshold", "'20'"]),
    (lambda x: F.leaky_relu(x, negative_slope=None), TypeError, ["negative_slope", "None"]),
    (lambda x: F.elu(x, alpha=float("nan")), ValueError, ["alpha", "nan"]),
    (lambda x: F.hardswish(x, inplace="yes"), TypeError, ["inplace", "'yes'"]),
    (lambda x: nn.GELU("fast"), ValueError, ["GELU", "approximate", "'fast'"]),
    (lambda x: nn.Softplus(beta=0.0), ValueError, ["Softplus", "beta"]),
    (lambda x: nn.LeakyReLU("0.1"), TypeError, ["LeakyReLU", "negative_slope"]),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_arguments_are_named(call, error, words):
    with pytest.raises(error) as info:
        call(mm.Tensor(randn(2, 3)))
    for word in words:
        assert word in str(info.value)


def test_activation_in_a_sequential_trains_like_torch():
    """Modules compose in nn.Sequential with Linear: one SGD step gives torch's weights."""
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Hardswish(), torch.nn.Linear(5, 3),
                                 torch.nn.GELU("tanh")).double()
    ours = nn.Sequential(nn.Linear(4, 5), nn.Hardswish(), nn.Linear(5, 3), nn.GELU("tanh"))
    for (_, p), (_, q) in zip(sorted(ours.named_parameters()), sorted(theirs.named_parameters())):
        p.data = q.detach().numpy().copy()
    x = randn(6, 4)
    ours(mm.Tensor(x)).sum().backward()
    theirs(torch.tensor(x)).sum().backward()
    for (name, p), (_, q) in zip(sorted(ours.named_parameters()), sorted(theirs.named_parameters())):
        np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
