"""2-D convolution as differentiable ops: ``conv2d`` and the MixConv building block ``mixed_conv2d``.

``conv2d`` follows ``torch.nn.functional.conv2d`` (NCHW; stride, padding and
dilation as an int or an (h, w) pair; padding may also be "same" or "valid").
One ``Function`` holds the calculus; the arithmetic comes from interchangeable
*kernels*, plain functions on arrays with the same three entry points (forward,
input gradient, weight gradient), registered for the op "conv2d" in
``minimix.backends``:

* ``"im2col"`` (reference) - ``minimix.kernels.im2col``: windows copied into a matrix, then BLAS.
* ``"naive"`` (reference) - ``minimix.kernels.naive``: explicit loops; the readable definition.
* ``"numba"`` (fast) - ``minimix.fast.conv``: compiled loops for *depthwise* convolutions
  (groups == in_channels == out_channels).
* ``"pointwise"`` (fast) - ``minimix.fast.conv``: a 1x1 convolution as one product per image.

By default a fast kernel runs where one takes the convolution and im2col runs the rest;
on the reference path (``minimix.use_backend("reference")``) im2col runs everything.
Pick one per call (``backend=``) or for a block of code::

    with conv_backend("naive"):          # = minimix.use_backend(conv2d="naive")
        y = conv2d(x, w, padding=1)

The Function saves the input and weight and asks the same kernels for the
gradients: dL/dx (a "transposed convolution" of dL/dy with w), dL/dw (a
correlation of x with dL/dy) and dL/db = dL/dy summed over (N, OH, OW).
"""
import numpy as np

from .. import backends
from ..kernels.geometry import as_pair, output_size
from ..tensor import Function, check_float_dtypes
from .shape import cat, split

BACKENDS = ("auto", "naive", "im2col", "numba", "pointwise")


def conv_backend(name):
    """Use kernels ``name`` for every convolution without an explicit ``backend=`` inside the block
    (a context manager: ``minimix.use_backend(conv2d=name)``; None or "auto" restores the default)."""
    _check_backend(name)
    return backends.use_backend(conv2d=None if name in (None, "auto") else name)


def _check_backend(name):
    if name is not None and name not in BACKENDS:
        raise ValueError(f"conv2d: unknown backend {name!r}; expected one of {BACKENDS} or None")


def _kernels(backend, dtype, x_shape, w_shape, stride, padding, dilation, groups):
    """The kernels that run one convolution: the implementation named by ``backend`` if it takes
    the convolution, else (None/"auto") the first registered fast one that does, else the reference."""
    if backend in (None, "auto"):
        candidates = backends.implementations("conv2d", dtype)
    else:
        chosen = backends.get("conv2d", backend)
        if not hasattr(chosen, "accepts"):  # a reference implementation takes every convolution
            return chosen
        candidates = [chosen]
    for kernels in candidates:
        if kernels.accepts(x_shape, w_shape, stride, padding, dilation, groups):
            return kernels
    return backends.reference("conv2d")


# -- argument checking ------------------------------------------------------------------------
def conv_geometry(kernel_hw, stride=1, padding=0, dilation=1):
    """Normalise (stride, padding, dilation) to (h, w) int pairs; resolves padding "same"/"valid".

    "same" keeps the spatial size: it needs stride 1 and odd kernels, and pads
    dilation*(k-1)//2 on every side (so it equals torch's "same" there).
    """
    stride, dilation = as_pair(stride, "stride"), as_pair(dilation, "dilation")
    if min(stride) < 1 or min(dilation) < 1:
        raise ValueError(f"conv2d: stride and dilation must be >= 1, got stride={stride}, dilation={dilation}")
    if isinstance(padding, str):
        if padding == "valid":
            return stride, (0, 0), dilation
        if padding != "same":
            raise ValueError(f"conv2d: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
        if stride != (1, 1):
            raise ValueError(f"conv2d: padding='same' needs stride 1, got stride={stride}")
        if kernel_hw[0] % 2 == 0 or kernel_hw[1] % 2 == 0:
            raise ValueError(f"conv2d: padding='same' needs an odd kernel size, got kernel {tuple(kernel_hw)}")
        return stride, tuple(d * (k - 1) // 2 for d, k in zip(dilation, kernel_hw)), dilation
    padding = as_pair(padding, "padding")
    if min(padding) < 0:
        raise ValueError(f"conv2d: padding must be >= 0, got {padding}")
    return stride, padding, dilation


def _check_conv(x, weight, bias, groups, stride, padding, dilation):
    """Validate shapes; returns the normalised (stride, padding, dilation)."""
    if len(x.shape) != 4:
        raise ValueError(f"conv2d: input x must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if len(weight.shape) != 4:
        raise ValueError(f"conv2d: weight must be 4-D (out_channels, in_channels/groups, kH, kW), "
                         f"got shape {tuple(weight.shape)}")
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    n_in, n_out = x.shape[1], weight.shape[0]
    if n_in % groups or n_out % groups:
        raise ValueError(f"conv2d: groups={groups} must divide both the input channels ({n_in}, x shape "
                         f"{tuple(x.shape)}) and the output channels ({n_out}, weight shape {tuple(weight.shape)})")
    if n_in // groups != weight.shape[1]:
        raise ValueError(f"conv2d: x has {n_in} channels (shape {tuple(x.shape)}), so with groups={groups} the "
                         f"weight needs {n_in // groups} input channels per group, but weight has shape "
                         f"{tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (n_out,):
        raise ValueError(f"conv2d: bias must have shape ({n_out},) for weight {tuple(weight.shape)}, "
                         f"got {tuple(bias.shape)}")
    check_float_dtypes("conv2d", x=x, weight=weight, bias=bias)
    kernel_hw = weight.shape[2:]
    stride, padding, dilation = conv_geometry(kernel_hw, stride, padding, dilation)
    for axis, size, k, s, p, d in zip("HW", x.shape[2:], kernel_hw, stride, padding, dilation):
        if output_size(size, k, s, p, d) < 1:
            raise ValueError(f"conv2d: input {axis}={size} (x shape {tuple(x.shape)}) is too small for kernel "
                             f"{tuple(kernel_hw)} with padding {padding} and dilation {dilation}")
    return stride, padding, dilation


def _kind(weight_shape, groups, x_shape):
    """A label for profiles: "depthwise", "1x1", "1x1 on 1x1 maps" (squeeze-excite) or "KHxKW"."""
    if groups > 1 and weight_shape[1] == 1:
        return "depthwise"
    kernel = f"{weight_shape[2]}x{weight_shape[3]}"
    return kernel + " on 1x1 maps" if tuple(x_shape[2:]) == (1, 1) else kernel


# -- conv2d -----------------------------------------------------------------------------------
class Conv2d(Function):
    """y = conv(x, w) + b (see ``minimix.kernels.naive`` for the formula and its gradients).

    An empty batch (N = 0) gives an empty output and zero weight and bias gradients, as in
    PyTorch, without asking the kernels.
    """

    def forward(self, x, weight, bias=None, *, stride, padding, dilation, groups, kernels):
        self.x, self.weight, self.kernels = x, weight, kernels
        self.geometry = (stride, padding, dilation, groups)
        if x.shape[0] == 0:
            out_hw = [output_size(*a) for a in zip(x.shape[2:], weight.shape[2:], stride, padding, dilation)]
            return np.zeros((0, weight.shape[0], *out_hw), dtype=np.result_type(x, weight))
        y = kernels.conv2d_forward(x, weight, *self.geometry)
        if bias is not None:
            y += bias.reshape(1, -1, 1, 1)
        return y

    def profile_label(self):
        return "Conv2d " + _kind(self.weight.shape, self.geometry[3], self.x.shape)

    def backward(self, g):
        x_in, w_in = self.parents[0], self.parents[1]
        gx = gw = gb = None
        empty = self.x.shape[0] == 0
        if x_in.requires_grad:
            gx = np.zeros_like(self.x) if empty else self.kernels.conv2d_backward_input(
                g, self.weight, self.x.shape[2:], *self.geometry)
        if w_in.requires_grad:
            gw = np.zeros_like(self.weight) if empty else self.kernels.conv2d_backward_weight(
                self.x, g, self.weight.shape[2:], *self.geometry)
        if len(self.parents) > 2 and self.parents[2].requires_grad:
            gb = g.sum(axis=(0, 2, 3))
        return gx, gw, gb


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, backend=None):
    """2-D convolution (cross-correlation, as every framework), ``torch.nn.functional.conv2d`` semantics.

    x (N, C, H, W), weight (O, C/groups, KH, KW), bias (O,) or None -> (N, O, OH, OW)
    with OH = (H + 2*ph - dh*(KH-1) - 1) // sh + 1. ``backend``: None/"auto", "naive",
    "im2col", "numba" or "pointwise" (module docstring).
    """
    _check_backend(backend)
    stride, padding, dilation = _check_conv(x, weight, bias, groups, stride, padding, dilation)
    kernels = _kernels(backend, x.dtype, x.shape, weight.shape, stride, padding, dilation, int(groups))
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return Conv2d.apply(*inputs, stride=stride, padding=padding, dilation=dilation, groups=int(groups),
                        kernels=kernels)


# -- mixed_conv2d: one convolution per channel group ----------------------------------------
def mixed_conv2d(x, weights, in_splits, stride=1, dilation=1, biases=None, backend=None):
    """Convolve consecutive channel groups of ``x`` with their own weights and concatenate the results.

    Group i takes ``in_splits[i]`` input channels and convolves them with
    ``weights[i]`` (out_i, in_i / groups_i, k_i, k_i), where groups_i = in_i //
    weights[i].shape[1]: a weight (c_i, 1, k, k) is a depthwise convolution
    (MixConv), a weight (out_i, in_i, 1, 1) a dense pointwise one (grouped 1x1 of
    MixNet). Every kernel is odd and padded dilation*(k-1)//2 so all groups give
    the same output size::

        x_1, ..., x_g = split(x, in_splits)            (channels)
        y = cat([conv2d(x_i, w_i, b_i, ...) for each group i])

    which is exactly the code below. On the fast path ``minimix.fast.mixconv`` computes the
    same in one op that writes every group's channels in place (no split/cat copies).
    """
    _check_backend(backend)
    weights = list(weights)
    biases = None if biases is None else list(biases)
    groups = mixed_conv_groups(x, weights, in_splits, stride, dilation, biases)
    if backend in (None, "auto") and len(weights) > 1:
        for fast in backends.implementations("mixed_conv2d", x.dtype):
            out = fast(x, weights, in_splits, stride, dilation, biases, groups)
            if out is not NotImplemented:
                return out
    parts = split(x, [int(c) for c in in_splits], axis=1)
    return cat([conv2d(part, w, None if biases is None else biases[i], stride, padding, dilation, g, backend)
                for i, (part, w, (padding, g)) in enumerate(zip(parts, weights, groups))], axis=1)


def mixed_conv_groups(x, weights, in_splits, stride, dilation, biases=None):
    """Check a mixed convolution's arguments; returns each group's (padding, groups) pair."""
    in_splits = [int(c) for c in in_splits]
    if len(weights) != len(in_splits) or not weights:
        raise ValueError(f"mixed_conv2d: got {len(weights)} weights for {len(in_splits)} channel groups "
                         f"{in_splits}; need one weight per group")
    if len(x.shape) != 4 or sum(in_splits) != x.shape[1]:
        raise ValueError(f"mixed_conv2d: x must be (N, C, H, W) with C = sum(in_splits) = {sum(in_splits)}, "
                         f"got shape {tuple(x.shape)}")
    if biases is not None and len(biases) != len(weights):
        raise ValueError(f"mixed_conv2d: got {len(biases)} biases for {len(weights)} weights")
    groups = []
    for i, (w, c) in enumerate(zip(weights, in_splits)):
        if len(w.shape) != 4 or w.shape[1] < 1 or c % w.shape[1]:
            raise ValueError(f"mixed_conv2d: weight {i} has shape {tuple(w.shape)}, which does not fit a group "
                             f"of {c} input channels (need (out, {c} / groups, k, k))")
        k = w.shape[2:]
        if k[0] % 2 == 0 or k[1] % 2 == 0:
            raise ValueError(f"mixed_conv2d: kernel sizes must be odd, weight {i} has kernel {tuple(k)}")
        stride_pair, _, dilation_pair = conv_geometry(k, stride, 0, dilation)
        padding = tuple(d * (kk - 1) // 2 for d, kk in zip(dilation_pair, k))
        b = None if biases is None else biases[i]
        x_part_shape = (x.shape[0], c) + tuple(x.shape[2:])
        _check_conv(_Shape(x_part_shape, x.dtype), w, b, c // w.shape[1], stride_pair, padding, dilation_pair)
        groups.append((padding, c // w.shape[1]))
    return groups


class _Shape:
    """Stands in for one channel group of x when checking its convolution's shapes."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype = shape, dtype


__all__ = ["conv2d", "mixed_conv2d", "conv_backend", "conv_geometry", "as_pair", "BACKENDS", "Conv2d"]
