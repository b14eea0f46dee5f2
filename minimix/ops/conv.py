"""2-D convolution as differentiable ops: ``conv2d`` and the MixConv building block ``mixed_conv2d``.

``conv2d`` follows ``torch.nn.functional.conv2d`` (NCHW; stride, padding and
dilation as an int or an (h, w) pair; padding may also be "same" or "valid").
The arithmetic lives in interchangeable *backends*, plain functions on arrays
with the same three entry points (forward, input gradient, weight gradient):

* ``"naive"``  - ``minimix.kernels.naive``: explicit loops; the readable definition.
* ``"im2col"`` - ``minimix.kernels.im2col``: windows copied into a matrix, then BLAS.
* ``"numba"``  - ``minimix.kernels.depthwise_numba``: compiled loops for *depthwise*
  convolutions (groups == in_channels == out_channels); any other convolution
  asked for "numba" runs on im2col, so a whole model can run under it.
* ``None`` / ``"auto"`` (default) - depthwise -> numba (im2col if Numba is not
  installed), everything else -> im2col (for a 1x1 convolution the "cols" are just the
  input, channels first: a plain matrix product).

Pick one per call (``backend=``) or for a block of code::

    with conv_backend("naive"):
        y = conv2d(x, w, padding=1)

The Function saves the input and weight and asks the same backend for the
gradients: dL/dx (a "transposed convolution" of dL/dy with w), dL/dw (a
correlation of x with dL/dy) and dL/db = dL/dy summed over (N, OH, OW).
"""
import contextlib
import functools

import numpy as np

from ..kernels import im2col as _im2col
from ..kernels import optional
from ..kernels import naive as _naive
from ..kernels import pointwise as _pointwise
from ..tensor import Function

BACKENDS = ("auto", "naive", "im2col", "numba")
_default_backend = "auto"


@contextlib.contextmanager
def conv_backend(name):
    """Use backend ``name`` for every convolution without an explicit ``backend=`` inside the block."""
    global _default_backend
    _check_backend(name)
    previous, _default_backend = _default_backend, name or "auto"
    try:
        yield
    finally:
        _default_backend = previous


def _check_backend(name):
    if name is not None and name not in BACKENDS:
        raise ValueError(f"conv2d: unknown backend {name!r}; expected one of {BACKENDS} or None")


class _DepthwiseNumba:
    """Adapts the Numba depthwise kernels (weight (C, KH, KW)) to the backend interface (weight (C, 1, KH, KW)).

    Its kernels also take ``channels=slice(a, b)`` (and ``out=``): convolve channels [a, b) of
    whole-layer arrays and write channels [a, b) of a preallocated result, which is how
    ``MixedConv2d`` runs its depthwise groups without copying channel slices.
    """

    channel_groups = True

    def __init__(self, kernels):
        self.kernels = kernels

    def conv2d_forward(self, x, w, stride, padding, dilation, groups, channels=None, out=None):
        return self.kernels.depthwise_forward(x, w[:, 0], stride, padding, dilation, channels=channels, out=out)

    def conv2d_backward_input(self, gy, w, input_hw, stride, padding, dilation, groups, channels=None, out=None):
        return self.kernels.depthwise_backward_input(gy, w[:, 0], input_hw, stride, padding, dilation,
                                                     channels=channels, out=out)

    def conv2d_backward_weight(self, x, gy, kernel_hw, stride, padding, dilation, groups, channels=None):
        return self.kernels.depthwise_backward_weight(x, gy, kernel_hw, stride, padding, dilation,
                                                      channels=channels)[:, None]


@functools.lru_cache(maxsize=None)
def _load_numba():
    """The Numba backend, imported on first use (None when Numba or the kernels are missing)."""
    kernels = optional("depthwise_numba")
    return None if kernels is None else _DepthwiseNumba(kernels)


def _select(backend, in_channels, weight_shape, groups):
    """The backend module that runs one convolution (see the module docstring for the rules)."""
    name = backend or _default_backend
    if name == "naive":
        return _naive
    depthwise = groups == in_channels and weight_shape[0] == in_channels and weight_shape[1] == 1
    if depthwise and name in ("auto", "numba"):
        kernels = _load_numba()
        if kernels is not None:
            return kernels
        if name == "numba":
            raise ImportError("conv2d: backend='numba' needs numba and minimix.kernels.depthwise_numba")
    return _im2col


# -- argument checking ------------------------------------------------------------------------
def as_pair(value, name):
    """An int or a pair of ints -> an (h, w) pair of ints; anything else is a ValueError naming ``name``."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value), int(value)
    if (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)):
        return int(value[0]), int(value[1])
    raise ValueError(f"conv2d: {name} must be an int or a pair of ints, got {value!r}")


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
    if x.dtype != weight.dtype or (bias is not None and bias.dtype != x.dtype):
        raise TypeError(f"conv2d: x ({x.dtype}), weight ({weight.dtype}) and bias must share one dtype")
    kernel_hw = weight.shape[2:]
    stride, padding, dilation = conv_geometry(kernel_hw, stride, padding, dilation)
    for axis, size, k, s, p, d in zip("HW", x.shape[2:], kernel_hw, stride, padding, dilation):
        if _naive.output_size(size, k, s, p, d) < 1:
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
    """y = conv(x, w) + b (see ``minimix.kernels.naive`` for the formula and its gradients)."""

    def forward(self, x, weight, bias=None, *, stride, padding, dilation, groups, kernels):
        self.x, self.weight, self.kernels = x, weight, kernels
        self.geometry = (stride, padding, dilation, groups)
        y = kernels.conv2d_forward(x, weight, *self.geometry)
        if bias is not None:
            y += bias.reshape(1, -1, 1, 1)
        return y

    def profile_label(self):
        return "Conv2d " + _kind(self.weight.shape, self.geometry[3], self.x.shape)

    def backward(self, g):
        x_in, w_in = self.parents[0], self.parents[1]
        gx = gw = gb = None
        if x_in.requires_grad:
            gx = self.kernels.conv2d_backward_input(g, self.weight, self.x.shape[2:], *self.geometry)
        if w_in.requires_grad:
            gw = self.kernels.conv2d_backward_weight(self.x, g, self.weight.shape[2:], *self.geometry)
        if len(self.parents) > 2 and self.parents[2].requires_grad:
            gb = g.sum(axis=(0, 2, 3))
        return gx, gw, gb


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, backend=None):
    """2-D convolution (cross-correlation, as every framework), ``torch.nn.functional.conv2d`` semantics.

    x (N, C, H, W), weight (O, C/groups, KH, KW), bias (O,) or None -> (N, O, OH, OW)
    with OH = (H + 2*ph - dh*(KH-1) - 1) // sh + 1. ``backend``: None/"auto",
    "naive", "im2col" or "numba" (module docstring).
    """
    _check_backend(backend)
    stride, padding, dilation = _check_conv(x, weight, bias, groups, stride, padding, dilation)
    kernels = _select(backend, x.shape[1], weight.shape, groups)
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return Conv2d.apply(*inputs, stride=stride, padding=padding, dilation=dilation, groups=int(groups),
                        kernels=kernels)


# -- mixed_conv2d: one convolution per channel group ----------------------------------------
class MixedConv2d(Function):
    """Split the channels into consecutive groups and convolve each with its own weight, in ONE node.

    Group i reads input channels [a_i, a_i + in_i) and writes output channels
    [b_i, b_i + out_i) of one preallocated output, and the backward writes every
    group's dL/dx into one preallocated array. Each group is an ordinary convolution
    (its own backend, padding, groups). The two kinds MixNet uses write in place,
    no split/concatenate copies: a depthwise group on the Numba kernels works on its
    channels of the whole arrays (``channels=``); a 1x1 group is a product per image
    written into its channels (``out=``). Other groups are computed on channel slices
    and copied in.
    """

    def forward(self, x, *weights_and_biases, in_splits, plans, stride, dilation, has_bias):
        count = len(in_splits)
        weights = weights_and_biases[:count]
        biases = weights_and_biases[count:] if has_bias else (None,) * count
        self.x, self.weights, self.in_splits, self.plans = x, weights, in_splits, plans
        self.stride, self.dilation, self.has_bias = stride, dilation, has_bias
        outs = [w.shape[0] for w in weights]
        w0, padding0 = weights[0], plans[0][0]  # every group gives the same output size
        out_hw = [_naive.output_size(*args) for args in zip(x.shape[2:], w0.shape[2:], stride, padding0, dilation)]
        y = np.empty((x.shape[0], sum(outs), *out_hw), dtype=x.dtype)
        for in_part, out_part, w, b, (padding, groups, kernels) in zip(
                self._bounds(in_splits), self._bounds(outs), weights, biases, plans):
            geometry = (stride, padding, dilation, groups)
            how = self._in_place(kernels, in_part, out_part, w, geometry)
            if how == "channels":
                kernels.conv2d_forward(x, w, *geometry, channels=in_part, out=y)
            elif how == "pointwise":
                _pointwise.pointwise_forward(x[:, in_part], w[:, :, 0, 0], out=y[:, out_part])
            else:
                y[:, out_part] = kernels.conv2d_forward(x[:, in_part], w, *geometry)
            if b is not None:
                y[:, out_part] += b.reshape(1, -1, 1, 1)
        return y

    @staticmethod
    def _in_place(kernels, in_part, out_part, w, geometry):
        """How a group can work on the whole arrays: "channels" (depthwise Numba kernels, in == out
        channels), "pointwise" (a 1x1 convolution on im2col's per-image products) or None (slices)."""
        if getattr(kernels, "channel_groups", False) and in_part == out_part:
            return "channels"
        stride, padding, _, groups = geometry
        if kernels is _im2col and _im2col._is_pointwise(w.shape, stride, padding, groups):
            return "pointwise"
        return None

    def profile_label(self):
        return "MixedConv2d " + _kind(self.weights[0].shape, self.plans[0][1], self.x.shape)

    @staticmethod
    def _bounds(sizes):
        starts = np.cumsum([0] + list(sizes))
        return [slice(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]

    def backward(self, g):
        x, weights, plans = self.x, self.weights, self.plans
        want_x = self.parents[0].requires_grad
        gx = np.empty_like(x) if want_x else None
        gws, gbs = [], []
        g = np.ascontiguousarray(g)  # the Numba kernels need it contiguous: copy (if at all) once, not per group
        for i, (in_part, out_part, w, (padding, groups, kernels)) in enumerate(
                zip(self._bounds(self.in_splits), self._bounds([w.shape[0] for w in weights]), weights, plans)):
            geometry = (self.stride, padding, self.dilation, groups)
            how = self._in_place(kernels, in_part, out_part, w, geometry)
            if want_x and how == "channels":
                kernels.conv2d_backward_input(g, w, x.shape[2:], *geometry, channels=in_part, out=gx)
            elif want_x and how == "pointwise":
                _pointwise.pointwise_backward_input(g[:, out_part], w[:, :, 0, 0], out=gx[:, in_part])
            elif want_x:
                gx[:, in_part] = kernels.conv2d_backward_input(g[:, out_part], w, x.shape[2:], *geometry)
            gw = None
            if self.parents[1 + i].requires_grad and how == "channels":
                gw = kernels.conv2d_backward_weight(x, g, w.shape[2:], *geometry, channels=in_part)
            elif self.parents[1 + i].requires_grad:
                gw = kernels.conv2d_backward_weight(x[:, in_part], g[:, out_part], w.shape[2:], *geometry)
            gws.append(gw)
            if self.has_bias:
                gbs.append(g[:, out_part].sum(axis=(0, 2, 3)))
        return (gx, *gws, *gbs)


def mixed_conv2d(x, weights, in_splits, stride=1, dilation=1, biases=None, backend=None):
    """Convolve consecutive channel groups of ``x`` with their own weights and concatenate the results.

    Group i takes ``in_splits[i]`` input channels and convolves them with
    ``weights[i]`` (out_i, in_i / groups_i, k_i, k_i), where groups_i = in_i //
    weights[i].shape[1]: a weight (c_i, 1, k, k) is a depthwise convolution
    (MixConv), a weight (out_i, in_i, 1, 1) a dense pointwise one (grouped 1x1 of
    MixNet). Every kernel is odd and padded dilation*(k-1)//2 so all groups give
    the same output size. Equals ``cat([conv2d(x_i, w_i, b_i, ...) for each i], axis=1)``.
    """
    _check_backend(backend)
    weights = list(weights)
    in_splits = [int(c) for c in in_splits]
    if len(weights) != len(in_splits) or not weights:
        raise ValueError(f"mixed_conv2d: got {len(weights)} weights for {len(in_splits)} channel groups "
                         f"{in_splits}; need one weight per group")
    if len(x.shape) != 4 or sum(in_splits) != x.shape[1]:
        raise ValueError(f"mixed_conv2d: x must be (N, C, H, W) with C = sum(in_splits) = {sum(in_splits)}, "
                         f"got shape {tuple(x.shape)}")
    biases = None if biases is None else list(biases)
    if biases is not None and len(biases) != len(weights):
        raise ValueError(f"mixed_conv2d: got {len(biases)} biases for {len(weights)} weights")
    plans = []
    for i, (w, c) in enumerate(zip(weights, in_splits)):
        if len(w.shape) != 4 or w.shape[1] < 1 or c % w.shape[1]:
            raise ValueError(f"mixed_conv2d: weight {i} has shape {tuple(w.shape)}, which does not fit a group "
                             f"of {c} input channels (need (out, {c} / groups, k, k))")
        k = w.shape[2:]
        if k[0] % 2 == 0 or k[1] % 2 == 0:
            raise ValueError(f"mixed_conv2d: kernel sizes must be odd, weight {i} has kernel {tuple(k)}")
        geometry = conv_geometry(k, stride, 0, dilation)
        stride_pair, dilation_pair = geometry[0], geometry[2]
        padding = tuple(d * (kk - 1) // 2 for d, kk in zip(dilation_pair, k))
        groups = c // w.shape[1]
        b = None if biases is None else biases[i]
        x_part_shape = (x.shape[0], c) + tuple(x.shape[2:])
        _check_conv(_Shape(x_part_shape, x.dtype), w, b, groups, stride_pair, padding, dilation_pair)
        plans.append((padding, groups, _select(backend, c, w.shape, groups)))
    if len(weights) == 1:  # one group is just a convolution
        b = None if biases is None else biases[0]
        return conv2d(x, weights[0], b, stride, plans[0][0], dilation, plans[0][1], backend)
    inputs = [x] + weights + (biases or [])
    return MixedConv2d.apply(*inputs, in_splits=tuple(in_splits), plans=tuple(plans), stride=stride_pair,
                             dilation=dilation_pair, has_bias=biases is not None)


class _Shape:
    """Stands in for one channel group of x when checking its convolution's shapes."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype = shape, dtype


__all__ = ["conv2d", "mixed_conv2d", "conv_backend", "conv_geometry", "as_pair", "BACKENDS",
           "Conv2d", "MixedConv2d"]
