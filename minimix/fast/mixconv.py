"""MixConv and grouped 1x1 convolutions as ONE op that works on whole-layer arrays.

The reference (``nn.MixConv2d.forward``, ``F.mixed_conv2d``) splits the channels, convolves each
group and concatenates: every group's input and output is copied once more than needed, and the
backward splits the gradient and concatenates the input gradients again. Here group i reads
input channels [a_i, a_i + in_i) and writes output channels [b_i, b_i + out_i) of ONE
preallocated output, and the backward writes every group's dL/dx into one preallocated array:

* a depthwise group on the Numba kernels works on its channels of the whole arrays (``channels=``);
* a 1x1 group is one product per image written into its channels (``out=``);
* any other group is computed on a channel slice and copied in.

Same numbers as the reference (tests/test_backends.py), fewer passes over memory.
"""
import numpy as np

from ..ops.conv import _kernels, conv_geometry, mixed_conv_groups
from ..kernels.geometry import output_size
from ..tensor import Function
from .conv import POINTWISE


def _bounds(sizes):
    starts = np.cumsum([0] + list(sizes))
    return [slice(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]


def _in_place(kernels, in_part, out_part):
    """How a group works on the whole arrays: "channels" (depthwise Numba kernels, in == out
    channels), "pointwise" (1x1 products written into the output's channels) or None (slices)."""
    if getattr(kernels, "channel_groups", False) and in_part == out_part:
        return "channels"
    if kernels is POINTWISE:
        return "pointwise"
    return None


class MixedConv2d(Function):
    """cat([conv2d(x_i, w_i, b_i) for each channel group i]) in one node, written in place."""

    def forward(self, x, *weights_and_biases, in_splits, plans, stride, dilation, has_bias):
        count = len(in_splits)
        weights = weights_and_biases[:count]
        biases = weights_and_biases[count:] if has_bias else (None,) * count
        x = np.ascontiguousarray(x)  # the kernels read channel ranges of whole C-ordered arrays
        self.x, self.weights, self.in_splits, self.plans = x, weights, in_splits, plans
        self.stride, self.dilation, self.has_bias = stride, dilation, has_bias
        outs = [w.shape[0] for w in weights]
        w0, padding0 = weights[0], plans[0][0]  # every group gives the same output size
        out_hw = [output_size(*args) for args in zip(x.shape[2:], w0.shape[2:], stride, padding0, dilation)]
        y = np.empty((x.shape[0], sum(outs), *out_hw), dtype=x.dtype)
        for in_part, out_part, w, b, (padding, groups, kernels) in zip(
                _bounds(in_splits), _bounds(outs), weights, biases, plans):
            geometry = (stride, padding, dilation, groups)
            how = _in_place(kernels, in_part, out_part)
            if how == "channels":
                kernels.conv2d_forward(x, w, *geometry, channels=in_part, out=y)
            elif how == "pointwise":
                kernels.conv2d_forward(x[:, in_part], w, *geometry, out=y[:, out_part])
            else:
                y[:, out_part] = kernels.conv2d_forward(x[:, in_part], w, *geometry)
            if b is not None:
                y[:, out_part] += b.reshape(1, -1, 1, 1)
        return y

    def profile_label(self):
        kind = "depthwise" if self.weights[0].shape[1] == 1 and self.plans[0][1] > 1 else "1x1"
        return "MixedConv2d " + kind

    def backward(self, g):
        x, weights, plans = self.x, self.weights, self.plans
        want_x = self.parents[0].requires_grad
        gx = np.empty(x.shape, dtype=x.dtype) if want_x else None
        gws, gbs = [], []
        g = np.ascontiguousarray(g)  # the Numba kernels need it contiguous: copy (if at all) once, not per group
        for i, (in_part, out_part, w, (padding, groups, kernels)) in enumerate(
                zip(_bounds(self.in_splits), _bounds([w.shape[0] for w in weights]), weights, plans)):
            geometry = (self.stride, padding, self.dilation, groups)
            how = _in_place(kernels, in_part, out_part)
            if want_x and how == "channels":
                kernels.conv2d_backward_input(g, w, x.shape[2:], *geometry, channels=in_part, out=gx)
            elif want_x and how == "pointwise":
                kernels.conv2d_backward_input(g[:, out_part], w, x.shape[2:], *geometry, out=gx[:, in_part])
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


def mixed_conv2d(x, weights, in_splits, stride=1, dilation=1, biases=None, groups=None):
    """The fast ``F.mixed_conv2d``; NotImplemented for an empty batch. ``groups``: each group's
    (padding, groups) from ``mixed_conv_groups`` when the caller has checked the arguments already."""
    if x.shape[0] == 0:
        return NotImplemented
    if groups is None:
        groups = mixed_conv_groups(x, weights, in_splits, stride, dilation, biases)
    stride_pair, _, dilation_pair = conv_geometry((1, 1), stride, 0, dilation)
    plans = tuple((padding, g, _kernels(None, x.dtype, (x.shape[0], c) + tuple(x.shape[2:]), w.shape, stride_pair,
                                        padding, dilation_pair, g))
                  for (padding, g), w, c in zip(groups, weights, in_splits))
    inputs = [x] + list(weights) + list(biases or [])
    return MixedConv2d.apply(*inputs, in_splits=tuple(int(c) for c in in_splits), plans=plans, stride=stride_pair,
                             dilation=dilation_pair, has_bias=biases is not None)


def _observed(module):
    """True while a forward hook watches one of the module's group convolutions: the in-place op
    never calls them, so the reference forward (which does) runs instead."""
    return any(conv._forward_hooks or conv._forward_pre_hooks for conv in module.convs)


def _fits(module, x, channels):
    """x is (N, channels, H, W) of the weights' dtype: anything else goes to the reference forward, whose
    error names the shapes or dtypes."""
    return len(x.shape) == 4 and x.shape[1] == channels and x.dtype == module.convs[0].weight.dtype


def mixconv2d(module, x):
    """``nn.MixConv2d`` on the in-place op; with one kernel size it IS its depthwise conv (no split/cat copies)."""
    if not _fits(module, x, module.channels):
        return NotImplemented
    if len(module.convs) == 1:
        return module.convs[0](x)
    if _observed(module):
        return NotImplemented
    return mixed_conv2d(x, [conv.weight for conv in module.convs], module.splits, module.stride, module.dilation)


def grouped_conv2d(module, x):
    """``nn.GroupedConv2d`` on the in-place op."""
    if _observed(module) or len(module.convs) == 1 or not _fits(module, x, module.in_channels):
        return NotImplemented
    biases = None if module.convs[0].bias is None else [conv.bias for conv in module.convs]
    return mixed_conv2d(x, [conv.weight for conv in module.convs], module.in_splits, module.stride, biases=biases)


__all__ = ["MixedConv2d", "mixed_conv2d", "mixconv2d", "grouped_conv2d"]
