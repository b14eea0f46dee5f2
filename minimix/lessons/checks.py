"""Exercise checks: each tests a learner's function against minimix's own implementation.

Every check takes the learner's function, calls it on a set of random (but seeded, so
reproducible) cases, compares each answer with what minimix computes, prints ``PASS`` or
``FAIL`` with the first mismatch, and returns a :class:`~minimix.lessons.checking.CheckResult` (true on
PASS, not echoed by a notebook). See :mod:`minimix.lessons.checking`.

=============================== ===================================================== ==========
check                           the learner writes                                    lesson
=============================== ===================================================== ==========
check_sigmoid_backward          ``fn(x, g) -> dL/dx`` for y = sigmoid(x)               1
check_op                        any op (e.g. a ``Function`` subclass): values + grads  1
check_conv_output_size          ``fn(size, kernel, stride, padding, dilation)``        2
check_im2col                    ``fn(x (C,H,W), k, stride, padding) -> (C*k*k, L)``    2
check_depthwise_forward         ``fn(x, w (C,k,k), stride, padding) -> y``             3
check_depthwise_backward_weight ``fn(x, gy, k, stride, padding) -> dL/dw (C,k,k)``     3
check_depthwise_backward_input  ``fn(gy, w, input_hw, stride, padding) -> dL/dx``      3
check_split_channels            ``fn(channels, num_groups, split) -> sizes``           4
check_mixconv_params            ``fn(channels, kernel_sizes, split) -> parameters``    4
check_mixconv_macs              ``fn(channels, kernel_sizes, h, w, split) -> MACs``    4
check_round_filters             ``fn(channels, width_multiplier) -> channels``         5
check_block_params              ``fn(block_args) -> parameters of the block``          5
check_normalize                 ``fn(images uint8 NHWC) -> float32 NCHW``              6
check_confusion_matrix          ``fn(predictions, labels, num_classes) -> (C, C)``     6
check_cross_entropy             ``fn(logits, labels, label_smoothing) -> loss``        6
check_rf_recurrence             ``fn(r, jump, kernel, stride, dilation) -> (r, jump)`` 7
check_seed_separation           ``fn(accs_a, accs_b) -> +1, -1 or 0``                  8
=============================== ===================================================== ==========
"""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from .checking import Case, CheckResult, run_check, shape_text


def _rng(seed):
    return np.random.default_rng(seed)


# -- lesson 1: autograd ----------------------------------------------------------------------------
def check_sigmoid_backward(fn, seed: int = 0) -> CheckResult:
    """``fn(x, g)``: given the input x and g = dL/dy of y = sigmoid(x), return dL/dx (same shape).

    Cases in float32 and float64, each with saturated ends beyond where ``np.exp`` overflows in that
    dtype (float32 at x = +-100, past ~88.7; float64 at x = +-1000, past ~709.8): the gradient must
    vanish there, without an overflow -- the check runs ``fn`` under ``np.errstate(over="raise")``, so
    the naive ``1 / (1 + np.exp(-x))`` fails it even where its result happens to be right.

    Reference: minimix's autograd through ``minimix.ops.sigmoid``.
    """
    from ..ops import sigmoid

    rng = _rng(seed)
    cases = []
    for dtype, far in ((np.float32, 100.0), (np.float64, 1000.0)):
        for shape in [(1,), (5,), (3, 4), (2, 3, 4)]:
            x = (rng.standard_normal(shape) * 4).astype(dtype)
            if len(shape) >= 2:
                x[0, 0], x[-1, -1] = far, -far  # saturated ends: the gradient must vanish, not overflow or be NaN
            g = rng.standard_normal(shape).astype(dtype)
            t = Tensor(x.copy(), requires_grad=True)
            sigmoid(t).backward(g)
            tolerances = dict(rtol=1e-4, atol=1e-6) if dtype == np.float32 else {}
            cases.append(Case(f"x {shape_text(x)} {np.dtype(dtype).name} with x = +-{far:g}" if len(shape) >= 2
                              else f"x {shape_text(x)} {np.dtype(dtype).name}", (x, g), t.grad, **tolerances))
    return run_check("check_sigmoid_backward", fn, cases, "minimix.ops.sigmoid's backward",
                     errstate={"over": "raise"})


def check_op(fn, reference, shapes=((3,), (2, 5), (4, 3, 2)), num_inputs: int = 1, seed: int = 0) -> CheckResult:
    """Compare the op ``fn`` (Tensors -> Tensor) with ``reference``: forward values and every
    input's gradient, on random float64 inputs of each shape (all inputs share a shape).

    Use it for a ``Function`` you wrote: ``check_op(MySiLU.apply, minimix.ops.silu)``.
    """
    rng = _rng(seed)
    name = getattr(reference, "__qualname__", repr(reference))
    labels = ["forward value"] + [f"gradient of input {i}" for i in range(num_inputs)]
    cases = []
    for shape in shapes:
        arrays = [rng.standard_normal(shape) * 2 for _ in range(num_inputs)]
        upstream = rng.standard_normal(shape)
        expected = _values_and_grads(reference, arrays, upstream)
        if expected is None:
            raise ValueError(f"check_op: the reference {name} did not return a Tensor of shape {shape}")
        cases.append(Case(f"inputs {shape_text(arrays[0])} float64", (arrays, upstream), dict(zip(labels, expected))))

    def run_learner(arrays, upstream):
        answer = _values_and_grads(fn, arrays, upstream)
        if answer is None:
            raise TypeError("your op must return a minimix Tensor of its input's shape (made by "
                            "YourFunction.apply(...), so that it records a graph)")
        return dict(zip(labels, answer))

    return run_check("check_op", run_learner, cases, f"{name} (values and gradients)")


def _values_and_grads(op, arrays, upstream):
    """[output values, grad of each input] of ``op`` on fresh leaves, after ``backward(upstream)``."""
    leaves = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = op(*leaves)
    if not isinstance(out, Tensor) or out.shape != upstream.shape:
        return None
    out.backward(upstream)
    return [out.data] + [leaf.grad if leaf.grad is not None else np.zeros_like(leaf.data) for leaf in leaves]


# -- lesson 2: convolution as matrix multiplication ----------------------------------------------
def check_conv_output_size(fn, seed: int = 0) -> CheckResult:
    """``fn(size, kernel, stride, padding, dilation)``: output length along one axis."""
    from ..kernels.naive import output_size

    rng = _rng(seed)
    cases = []
    while len(cases) < 30:
        size, kernel = int(rng.integers(1, 40)), int(rng.integers(1, 8))
        stride, padding, dilation = int(rng.integers(1, 4)), int(rng.integers(0, 4)), int(rng.integers(1, 4))
        expected = output_size(size, kernel, stride, padding, dilation)
        if expected >= 1:
            args = (size, kernel, stride, padding, dilation)
            cases.append(Case(f"output_size{args}", args, expected))
    return run_check("check_conv_output_size", fn, cases, "minimix.kernels.naive.output_size")


def check_im2col(fn, seed: int = 0) -> CheckResult:
    """``fn(x, kernel_size, stride, padding)``: x (C, H, W) -> the (C*k*k, OH*OW) matrix of windows.

    Row ``c*k*k + p*k + q`` holds input channel c at kernel offset (p, q) for every output
    position; column ``i*OW + j`` is output position (i, j). Reference: ``minimix.kernels.im2col``
    (one image, so its (C, k, k, 1, OH, OW) array is exactly this matrix).
    """
    from ..kernels.im2col import im2col

    rng = _rng(seed)
    cases = []
    for c, h, w, k, s, p in [(1, 4, 4, 3, 1, 0), (2, 5, 5, 3, 1, 1), (3, 6, 7, 3, 2, 1), (2, 7, 5, 5, 1, 2),
                             (4, 8, 8, 1, 1, 0), (1, 9, 6, 2, 3, 0), (3, 5, 6, 3, 2, 0)]:
        x = rng.standard_normal((c, h, w))
        cols = im2col(x[None], (k, k), (s, s), (p, p), (1, 1))
        expected = cols.reshape(c * k * k, -1)
        cases.append(Case(f"im2col(x {shape_text(x)}, kernel_size={k}, stride={s}, padding={p})",
                          (x, k, s, p), expected))
    return run_check("check_im2col", fn, cases, "minimix.kernels.im2col.im2col")


# -- lesson 3: depthwise convolution ---------------------------------------------------------------
# The reference is the loop definition, ``minimix.kernels.naive`` (NumPy only, no Numba), with
# groups = C. The learner's function may be NumPy or a Numba kernel: every case is float64 with
# int arguments (and a tuple input_hw), so a Numba kernel compiles once for all of them.
def _depthwise_cases(rng):
    """(x, w (C, k, k), stride, padding) for a few depthwise convolutions, float64: odd and non-square
    planes, kernels of 1 to 7 taps, stride 1 and 2, no, some and size-keeping padding."""
    for n, c, h, w, k, s, p in [(1, 1, 5, 5, 3, 1, 1), (2, 3, 6, 7, 3, 1, 0), (2, 4, 7, 7, 5, 2, 2),
                                (1, 2, 8, 6, 7, 1, 3), (3, 5, 6, 6, 3, 2, 1), (2, 2, 9, 5, 5, 2, 1),
                                (1, 3, 4, 4, 1, 1, 0)]:
        yield rng.standard_normal((n, c, h, w)), rng.standard_normal((c, k, k)), s, p


def _depthwise_geometry(weight, stride, padding):
    """The naive kernels' (kernel_hw, stride, padding, dilation) pairs for a square kernel."""
    k = weight.shape[-1]
    return (k, k), (stride, stride), (padding, padding), (1, 1)


def _depthwise_output(x, weight, stride, padding):
    from ..kernels import naive

    _, s, p, d = _depthwise_geometry(weight, stride, padding)
    return naive.conv2d_forward(x, weight[:, None], s, p, d, x.shape[1])


def _depthwise_weight_grad(x, weight, stride, padding, gy):
    """dL/dw (C, k, k) from the naive loops."""
    from ..kernels import naive

    k_hw, s, p, d = _depthwise_geometry(weight, stride, padding)
    return naive.conv2d_backward_weight(x, gy, k_hw, s, p, d, x.shape[1])[:, 0]


def _depthwise_input_grad(x, weight, stride, padding, gy):
    """dL/dx (N, C, H, W) from the naive loops."""
    from ..kernels import naive

    _, s, p, d = _depthwise_geometry(weight, stride, padding)
    return naive.conv2d_backward_input(gy, weight[:, None], x.shape[2:], s, p, d, x.shape[1])


def check_depthwise_forward(fn, seed: int = 0) -> CheckResult:
    """``fn(x, w, stride, padding)``: y (N, C, OH, OW) of a depthwise convolution, x (N, C, H, W),
    w (C, k, k), int stride and padding (both axes). Reference: ``minimix.kernels.naive.conv2d_forward``
    with groups = C."""
    rng = _rng(seed)
    cases = [Case(f"x {shape_text(x)}, w {shape_text(w)}, stride={s}, padding={p}", (x, w, s, p),
                  _depthwise_output(x, w, s, p)) for x, w, s, p in _depthwise_cases(rng)]
    return run_check("check_depthwise_forward", fn, cases, "minimix.kernels.naive.conv2d_forward (groups=C)")


def check_depthwise_backward_weight(fn, seed: int = 0) -> CheckResult:
    """``fn(x, gy, kernel_size, stride, padding)``: dL/dw (C, k, k) of a depthwise convolution.

    x (N, C, H, W), gy = dL/dy (N, C, OH, OW). Reference: ``minimix.kernels.naive.conv2d_backward_weight``
    with groups = C. (The cases are too small to catch a race between threads reliably.)
    """
    rng = _rng(seed)
    cases = []
    for x, w, s, p in _depthwise_cases(rng):
        gy = rng.standard_normal(_depthwise_output(x, w, s, p).shape)
        gw = _depthwise_weight_grad(x, w, s, p, gy)
        k = w.shape[-1]
        cases.append(Case(f"x {shape_text(x)}, gy {shape_text(gy)}, kernel_size={k}, stride={s}, padding={p}",
                          (x, gy, k, s, p), gw))
    return run_check("check_depthwise_backward_weight", fn, cases,
                     "minimix.kernels.naive.conv2d_backward_weight (groups=C)")


def check_depthwise_backward_input(fn, seed: int = 0) -> CheckResult:
    """``fn(gy, w, input_hw, stride, padding)``: dL/dx (N, C, H, W) of a depthwise convolution.

    gy = dL/dy (N, C, OH, OW), w (C, k, k), input_hw = (H, W), a tuple. Reference:
    ``minimix.kernels.naive.conv2d_backward_input`` with groups = C.
    """
    rng = _rng(seed)
    cases = []
    for x, w, s, p in _depthwise_cases(rng):
        gy = rng.standard_normal(_depthwise_output(x, w, s, p).shape)
        gx = _depthwise_input_grad(x, w, s, p, gy)
        hw = tuple(x.shape[2:])
        cases.append(Case(f"gy {shape_text(gy)}, w {shape_text(w)}, input_hw={hw}, stride={s}, padding={p}",
                          (gy, w, hw, s, p), gx))
    return run_check("check_depthwise_backward_input", fn, cases,
                     "minimix.kernels.naive.conv2d_backward_input (groups=C)")


# -- lesson 4: MixConv -----------------------------------------------------------------------------
def check_split_channels(fn, seed: int = 0) -> CheckResult:
    """``fn(channels, num_groups, split)`` with split "equal" or "exponential": a list of group sizes."""
    from ..nn import split_channels

    rng = _rng(seed)
    cases = []
    fixed = [(32, 4, "equal"), (40, 3, "equal"), (40, 3, "exponential"), (32, 4, "exponential"), (7, 1, "equal")]
    while len(cases) < 30:
        args = fixed[len(cases)] if len(cases) < len(fixed) else (
            int(rng.integers(4, 300)), int(rng.integers(1, 6)), str(rng.choice(["equal", "exponential"])))
        try:
            expected = split_channels(*args)
        except ValueError:  # too few channels for the groups: not asked
            continue
        cases.append(Case(f"split_channels{args}", args, expected))
    return run_check("check_split_channels", fn, cases, "minimix.nn.split_channels")


def _mixconv_configs(rng, count=12):
    fixed = [(32, (3,), "equal"), (40, (3, 5, 7), "equal"), (40, (3, 5, 7), "exponential"),
             (120, (3, 5, 7, 9), "equal")]
    configs = list(fixed)
    while len(configs) < count:
        groups = int(rng.integers(1, 5))
        kernels = tuple(3 + 2 * i for i in range(groups))
        configs.append((int(rng.integers(2 ** groups, 200)), kernels, str(rng.choice(["equal", "exponential"]))))
    return configs


def check_mixconv_params(fn, seed: int = 0) -> CheckResult:
    """``fn(channels, kernel_sizes, split)``: parameters of ``MixConv2d(channels, kernel_sizes, split=split)``."""
    from ..nn import MixConv2d

    cases = [Case(f"MixConv2d{args}", args, MixConv2d(args[0], args[1], split=args[2]).num_parameters())
             for args in _mixconv_configs(_rng(seed))]
    return run_check("check_mixconv_params", fn, cases, "MixConv2d(...).num_parameters()")


def check_mixconv_macs(fn, seed: int = 0) -> CheckResult:
    """``fn(channels, kernel_sizes, height, width, split)``: multiply-accumulates of one MixConv2d
    (stride 1) on one (channels, height, width) image."""
    from ..models import summary
    from ..nn import MixConv2d, Sequential

    rng = _rng(seed)
    cases = []
    for channels, kernels, split in _mixconv_configs(rng, count=8):
        h, w = int(rng.integers(4, 17)), int(rng.integers(4, 17))
        # inside a Sequential, summary reads the MixConv as one layer (alone, it looks at its convs,
        # whose own forward the fused MixConv op never calls)
        layer = Sequential(MixConv2d(channels, kernels, split=split))
        macs = summary(layer, (channels, h, w), verbose=False).total_macs
        args = (channels, kernels, h, w, split)
        cases.append(Case(f"MixConv2d({channels}, {kernels}, split={split!r}) on {channels}x{h}x{w}", args, macs))
    return run_check("check_mixconv_macs", fn, cases, "minimix.models.summary(...).total_macs")


# -- lesson 5: MixNet ------------------------------------------------------------------------------
def check_round_filters(fn, seed: int = 0) -> CheckResult:
    """``fn(channels, width_multiplier)``: the reference's channel rounding (divisor 8)."""
    from ..models import round_filters

    rng = _rng(seed)
    cases = []
    for channels in [16, 24, 40, 80, 120, 200, 1536] + [int(c) for c in rng.integers(1, 400, 13)]:
        for width in (0.25, 0.5, 1.0, 1.3):
            cases.append(Case(f"round_filters({channels}, {width})", (channels, width), round_filters(channels, width)))
    return run_check("check_round_filters", fn, cases, "minimix.models.round_filters")


def check_block_params(fn, seed: int = 0) -> CheckResult:
    """``fn(block_args)``: the number of parameters of ``make_block(block_args)`` (BatchNorm's
    weight and bias count, its running statistics do not). Cases: MixNet-S's blocks at a few widths."""
    from ..models import MIXNET_S, decode_stages, make_block

    rng = _rng(seed)
    table = [a for stage in decode_stages(MIXNET_S) for a in stage]
    cases = []
    for width in (1.0, 0.5):
        for a in table:
            args = a.scaled(width).replace(repeats=1)
            cases.append(Case(f"make_block({args})", (args,), make_block(args).num_parameters()))
    order = rng.permutation(len(cases))  # a different block first for each seed
    return run_check("check_block_params", fn, [cases[i] for i in order], "make_block(args).num_parameters()")


# -- lesson 6: training --------------------------------------------------------------------------
def check_normalize(fn, seed: int = 0) -> CheckResult:
    """``fn(images)``: uint8 (N, H, W, 3) -> float32 (N, 3, H, W), ``(x/255 - mean[c]) / std[c]``
    with ``minimix.data.CIFAR10_MEAN`` and ``CIFAR10_STD``."""
    from ..data import normalize

    rng = _rng(seed)
    cases = []
    for shape in [(1, 2, 2, 3), (4, 32, 32, 3), (3, 5, 7, 3)]:
        images = rng.integers(0, 256, shape, dtype=np.uint8)
        cases.append(Case(f"images {shape_text(images)} uint8", (images,), normalize(images)))
    return run_check("check_normalize", fn, cases, "minimix.data.normalize", rtol=1e-5, atol=1e-5)


def check_confusion_matrix(fn, seed: int = 0) -> CheckResult:
    """``fn(predictions, labels, num_classes)``: M[i, j] = images of true class i predicted as j."""
    from ..training import confusion_matrix

    rng = _rng(seed)
    cases = []
    for n, c in [(1, 2), (10, 3), (200, 10), (50, 10)]:
        labels = rng.integers(0, c, n)
        predictions = np.where(rng.random(n) < 0.5, labels, rng.integers(0, c, n))
        cases.append(Case(f"{n} predictions, {c} classes", (predictions, labels, c),
                          confusion_matrix(predictions, labels, c)))
    return run_check("check_confusion_matrix", fn, cases, "minimix.training.confusion_matrix")


def check_cross_entropy(fn, seed: int = 0) -> CheckResult:
    """``fn(logits (N, C) array, labels (N,), label_smoothing)``: the mean cross-entropy (a float)."""
    from ..ops import cross_entropy

    rng = _rng(seed)
    cases = []
    for n, c, eps in [(1, 2, 0.0), (4, 10, 0.0), (8, 10, 0.1), (5, 3, 0.3)]:
        logits = rng.standard_normal((n, c)) * 3
        labels = rng.integers(0, c, n)
        expected = float(cross_entropy(Tensor(logits), labels, label_smoothing=eps).item())
        cases.append(Case(f"logits {shape_text(logits)}, label_smoothing={eps}", (logits, labels, eps), expected))
    return run_check("check_cross_entropy", fn, cases, "minimix.ops.cross_entropy")


# -- lesson 7: receptive fields --------------------------------------------------------------------
def check_rf_recurrence(fn, seed: int = 0) -> CheckResult:
    """``fn(r, jump, kernel, stride, dilation)``: (r, jump) after one layer, as in
    ``minimix.viz.AxisField.through``."""
    from ..viz import AxisField

    rng = _rng(seed)
    cases = [Case("one 3x3 stride-1 layer on the image", (1, 1, 3, 1, 1), (3, 1))]
    for _ in range(29):
        r, jump = int(rng.integers(1, 60)), int(2 ** rng.integers(0, 5))
        kernel, stride, dilation = int(rng.choice([1, 3, 5, 7, 9])), int(rng.integers(1, 3)), int(rng.integers(1, 3))
        field = AxisField(r, jump, 0.0).through(kernel, stride, 0, dilation)
        args = (r, jump, kernel, stride, dilation)
        cases.append(Case(f"r={r}, jump={jump}, kernel={kernel}, stride={stride}, dilation={dilation}", args,
                          (field.r, field.jump)))
    return run_check("check_rf_recurrence", fn, cases, "minimix.viz.AxisField.through")


# -- lesson 8: the kernel-size study ---------------------------------------------------------------
def check_seed_separation(fn, seed: int = 0) -> CheckResult:
    """``fn(accs_a, accs_b)``: +1 if every seed of a is above every seed of b, -1 if below, 0 if the
    ranges overlap or touch, or either side has fewer than 2 seeds, as ``minimix.study.kernels.separation``."""
    from ..study.kernels import separation

    rng = _rng(seed)
    fixed = [([0.80, 0.82], [0.70, 0.75]), ([0.70, 0.75], [0.80, 0.82]), ([0.70, 0.80], [0.75, 0.76]),
             ([0.75, 0.80], [0.70, 0.75]), ([0.9], [0.1, 0.2]), ([0.5, 0.6, 0.7], [0.65, 0.9])]
    cases = [Case(f"accs_a={a}, accs_b={b}", (a, b), separation(a, b)) for a, b in fixed]
    while len(cases) < 30:
        a = [round(float(v), 3) for v in rng.uniform(0.6, 0.8, int(rng.integers(1, 4)))]
        b = [round(float(v), 3) for v in rng.uniform(0.6, 0.8, int(rng.integers(1, 4)))]
        cases.append(Case(f"accs_a={a}, accs_b={b}", (a, b), separation(a, b)))
    return run_check("check_seed_separation", fn, cases, "minimix.study.kernels.separation")
