"""Which dtypes minimix takes (issue 14, item 8; the rule is in minimix/tensor.py's docstring).

A Tensor holds numbers only: strings and objects are refused at creation. Ops compute in
float32 and float64: a float16 input is a TypeError naming the op (batch norm used to return
float32 for it silently), and layers refuse x and parameters of different dtypes, as PyTorch
does. Every op is checked on both paths: a fast implementation must not take what the
reference refuses.
"""
import datetime

import numpy as np
import pytest

import minimix as mm
import minimix.nn as nn
import minimix.nn.functional as F

pytestmark = pytest.mark.usefixtures("each_path")  # every test on the fast and the reference path


@pytest.mark.parametrize("data, what", [
    ("abc", "text"),
    (["a", "b"], "text"),
    (np.array(["x"]), "text"),
    (b"raw", "bytes"),
    (np.array([1, None], dtype=object), "Python objects"),
    (np.array([1.0, 2.0], dtype=object), "Python objects"),
    ([1 + 2j], "complex numbers"),
    (np.zeros(2, np.complex64), "complex numbers"),
    (np.array([datetime.date(2024, 1, 1)], dtype="datetime64[D]"), "dates"),
    (np.zeros(2, dtype=[("a", np.float32)]), "records"),
    (np.zeros(2, np.longdouble), "extended precision"),
], ids=lambda v: type(v).__name__ if not isinstance(v, str) else v)
def test_tensor_refuses_what_is_not_numbers(data, what):
    if isinstance(data, np.ndarray) and data.dtype == np.longdouble and np.dtype(np.longdouble).itemsize == 8:
        pytest.skip("longdouble is float64 on this platform")
    with pytest.raises(TypeError, match=f"Tensor: cannot hold .*{what}.*float32 or float64"):
        mm.Tensor(data)
    with pytest.raises(TypeError, match="Tensor: cannot hold"):
        mm.tensor(np.zeros(3), dtype=np.asarray(data).dtype)


@pytest.mark.parametrize("data, dtype", [
    (np.zeros(3, np.float16), np.float16), (np.zeros(3, np.float32), np.float32), (np.zeros(3), np.float64),
    (np.arange(3, dtype=np.int8), np.int8), (np.arange(3), np.int64), (np.zeros(3, np.uint8), np.uint8),
    (np.zeros(3, bool), np.bool_), (2.5, np.float32), ([1, 2], np.int64), ([True], np.bool_), (np.float16(1), np.float16),
])
def test_tensor_holds_floats_integers_and_bools(data, dtype):
    assert mm.Tensor(data).dtype == dtype


def test_non_native_byte_order_becomes_native():
    big_endian = np.arange(4, dtype=">f4")
    t = mm.Tensor(big_endian)
    assert t.dtype == np.float32 and t.data.dtype.isnative
    np.testing.assert_array_equal(t.data, [0, 1, 2, 3])
    assert mm.Tensor(np.arange(3, dtype=">i8")).data.dtype.isnative


@pytest.mark.parametrize("dtype", [np.float16, np.int64, np.bool_])
def test_only_float32_and_float64_require_gradients(dtype):
    with pytest.raises(TypeError, match=f"float32 or float64 can require gradients .*, got dtype {np.dtype(dtype)}"):
        mm.Tensor(np.zeros(3, dtype), requires_grad=True)
    with pytest.raises(TypeError, match="float32 or float64"):
        nn.Parameter(np.zeros(3, dtype))


def _x16(*shape):
    return mm.Tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float16))


def _fused():
    conv, bn = nn.MixConv2d(4, (3, 5)).eval(), nn.BatchNormAct2d(4).eval()
    return nn.MixConvBNAct(conv, bn)


# (name, call on a float16 input, the op the error names)
FLOAT16_CALLS = [
    ("add", lambda: _x16(2, 3) + 1, "Add"),
    ("mul-float32", lambda: _x16(2, 3) * mm.Tensor(np.ones(3, np.float32)), "Mul"),
    ("exp", lambda: _x16(3).exp(), "Exp"),
    ("relu", lambda: F.relu(_x16(3)), "ReLU"),
    ("sum", lambda: _x16(2, 3).sum(), "Sum"),
    ("reshape", lambda: _x16(2, 3).reshape(3, 2), "Reshape"),
    ("getitem", lambda: _x16(2, 3)[0], "GetItem"),
    ("cat", lambda: mm.cat([_x16(2), _x16(2)]), "Cat"),
    ("matmul", lambda: _x16(2, 3) @ _x16(3, 2), "MatMul"),
    ("softmax", lambda: F.softmax(_x16(2, 3)), "Softmax"),
    ("cross_entropy", lambda: F.cross_entropy(_x16(2, 3), np.array([0, 1])), "CrossEntropy"),
    ("dropout", lambda: F.dropout(_x16(4, 4), 0.5), "Dropout"),
    ("linear", lambda: nn.Linear(3, 2)(_x16(2, 3)), "linear"),
    ("conv2d", lambda: nn.Conv2d(3, 2, 3)(_x16(1, 3, 5, 5)), "conv2d"),
    ("conv2d-1x1", lambda: F.conv2d(_x16(1, 3, 5, 5), _x16(2, 3, 1, 1)), "conv2d"),
    ("depthwise", lambda: F.conv2d(_x16(1, 3, 5, 5), _x16(3, 1, 3, 3), groups=3), "conv2d"),
    ("MixConv2d", lambda: nn.MixConv2d(4, (3, 5))(_x16(1, 4, 5, 5)), "MixConv2d"),
    ("MixConv2d-one-kernel", lambda: nn.MixConv2d(4, (3,))(_x16(1, 4, 5, 5)), "MixConv2d"),
    ("GroupedConv2d", lambda: nn.GroupedConv2d(4, 6, 2)(_x16(1, 4, 5, 5)), "GroupedConv2d"),
    ("BatchNorm2d", lambda: nn.BatchNorm2d(3)(_x16(2, 3, 4, 4)), "batch_norm"),
    ("BatchNorm2d-eval", lambda: nn.BatchNorm2d(3).eval()(_x16(2, 3, 4, 4)), "batch_norm"),
    ("BatchNormAct2d", lambda: nn.BatchNormAct2d(3)(_x16(2, 3, 4, 4)), "batch_norm"),
    ("SqueezeExcite", lambda: nn.SqueezeExcite(4, 2)(_x16(2, 4, 3, 3)), "Mean|GlobalAvgPool"),
    ("adaptive_avg_pool2d", lambda: F.adaptive_avg_pool2d(_x16(2, 4, 3, 3)), "Mean|GlobalAvgPool"),
    ("MixConvBNAct", lambda: _fused()(_x16(1, 4, 5, 5)), "conv2d"),
]


@pytest.mark.parametrize("call, op", [c[1:] for c in FLOAT16_CALLS], ids=[c[0] for c in FLOAT16_CALLS])
def test_float16_is_refused_by_every_op(call, op):
    """float16 is storage only: every op says which op, which dtype and what to do."""
    with pytest.raises(TypeError, match=rf"^({op}): .*float16.*float32 or float64"):
        call()
    with mm.no_grad():
        with pytest.raises(TypeError, match="float16"):
            call()


def test_batch_norm_of_float16_no_longer_returns_float32():
    bn = nn.BatchNorm2d(3)
    with pytest.raises(TypeError, match="batch_norm: x has dtype float16, but minimix computes in float32 or float64"):
        bn(_x16(2, 3, 4, 4))
    y = bn(mm.Tensor(np.ones((2, 3, 4, 4), np.float32)))
    assert y.dtype == np.float32


def _f(*shape, dtype=np.float64):
    return mm.Tensor(np.random.default_rng(1).standard_normal(shape).astype(dtype), requires_grad=True)


MIXED_CALLS = [
    ("linear", lambda: F.linear(_f(2, 3), _f(4, 3, dtype=np.float32)), "linear: x has dtype float64 but weight"),
    ("linear-bias", lambda: F.linear(_f(2, 3), _f(4, 3), _f(4, dtype=np.float32)), "linear: x .* bias has float32"),
    ("Linear-module", lambda: nn.Linear(3, 4)(_f(2, 3)), "linear: x has dtype float64 but weight has float32"),
    ("conv2d", lambda: F.conv2d(_f(1, 2, 4, 4), _f(3, 2, 3, 3, dtype=np.float32)), "conv2d: x .* weight"),
    ("Conv2d-module", lambda: nn.Conv2d(2, 3, 1)(_f(1, 2, 4, 4)), "conv2d: x has dtype float64 but weight"),
    ("mixed_conv2d", lambda: F.mixed_conv2d(_f(1, 4, 5, 5), [_f(2, 1, 3, 3), _f(2, 1, 5, 5, dtype=np.float32)],
                                            [2, 2]), "conv2d: x .* weight"),
    ("MixConv2d", lambda: nn.MixConv2d(4, (3, 5))(_f(1, 4, 5, 5)), "MixConv2d: x has dtype float64 but weight"),
    ("GroupedConv2d", lambda: nn.GroupedConv2d(4, 6, 2)(_f(1, 4, 5, 5)), "GroupedConv2d: x has dtype float64"),
    ("batch_norm", lambda: F.batch_norm(_f(2, 3, 2, 2), None, None, _f(3, dtype=np.float32), _f(3), training=True),
     "batch_norm: x .* weight"),
    ("BatchNorm2d", lambda: nn.BatchNorm2d(3)(_f(2, 3, 2, 2)), "batch_norm: x has dtype float64 but weight"),
    ("BatchNormAct2d", lambda: nn.BatchNormAct2d(3).eval()(_f(2, 3, 2, 2)), "batch_norm: x has dtype float64"),
    ("excite", lambda: nn.squeeze_excite.excite(_f(2, 3, 2, 2), _f(2, 3, 1, 1, dtype=np.float32)),
     "excite: x has dtype float64 but gate"),
    ("integer-x", lambda: F.linear(mm.Tensor(np.ones((2, 3), np.int64)), _f(4, 3)), "linear: x has dtype int64"),
]


@pytest.mark.parametrize("call, message", [c[1:] for c in MIXED_CALLS], ids=[c[0] for c in MIXED_CALLS])
def test_layers_refuse_mixed_dtypes(call, message):
    """x and a layer's parameters share one dtype (PyTorch refuses too); the error names both."""
    with pytest.raises(TypeError, match=message):
        call()


def test_elementwise_ops_promote_as_numpy():
    """Element-wise ops and matmul are not layers: float32 with float64 gives float64 (as in torch)."""
    a, b = _f(2, 3, dtype=np.float32), _f(2, 3)
    assert (a * b).dtype == np.float64 and (a @ b.T).dtype == np.float64
    (a * b).sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
    assert (a * 2.5).dtype == np.float32
