"""Theoretical receptive field of every convolution-like layer of a model.

One output unit of a layer "sees" a square window of the input image: its
receptive field (RF). Three numbers describe it along each axis, for every
unit of a feature map at once:

* ``r``     - the field's size in input pixels,
* ``jump``  - the distance in input pixels between neighbouring units of the map
              (the product of the strides so far),
* ``start`` - the input-pixel coordinate of the centre of the first unit's
              field (unit ``i`` is centred at ``start + i * jump``).

The input image itself has ``r = 1, jump = 1, start = 0``. A layer with kernel
``k``, stride ``s``, padding ``p`` and dilation ``d`` (effective kernel
``k_eff = d (k - 1) + 1``) maps them as::

    r_out     = r_in + (k_eff - 1) * jump_in
    jump_out  = jump_in * s
    start_out = start_in + ((k_eff - 1) / 2 - p) * jump_in

Example: a stride-2 3x3 conv then a 3x3 conv: r = 1 + 2*1 = 3, jump 2, then
r = 3 + 2*2 = 7.

A MixConv layer runs several kernels side by side on channel groups: each
group has its own ``r`` (a 9x9 group sees much more than a 3x3 group), and the
layer's output as a whole is reported with the largest. Where paths meet
(residual additions, squeeze-and-excitation gates, concatenations), the
merged map takes the largest field of its inputs.

How the paths are found: ``trace`` runs one forward pass with a forward hook
(``Module.register_forward_hook``) on every convolution-like module (a leaf
module with ``kernel_size`` and ``stride``, and a module whose ``convs`` are
such modules: MixConv, grouped 1x1 convs).
A layer's input tensor is followed back through the autograd graph
(``tensor._ctx.parents``) to the nearest tensors whose field is already known
(the image, or an earlier layer's output), so any architecture works, whatever
its ``forward`` does between the layers.

Conventions: element-wise ops, normalisation and activations do not change
the field. Global pooling is *not* counted as seeing the whole image: the
squeeze-and-excitation gate technically lets every unit depend on every pixel,
but the table reports the local, convolutional field as is customary.
"""
from dataclasses import dataclass

import numpy as np

from ..kernels.geometry import as_pair
from ..tensor import Tensor, is_grad_enabled
from .tracing import StopForward, find_module, forward_hooks, model_untouched


@dataclass(frozen=True)
class AxisField:
    """The receptive field of a feature map along one axis (see the module docstring)."""

    r: int
    jump: int
    start: float

    def through(self, kernel: int, stride: int, padding: int, dilation: int) -> "AxisField":
        """The field after a layer with this kernel/stride/padding/dilation along this axis."""
        k_eff = dilation * (kernel - 1) + 1
        return AxisField(
            r=self.r + (k_eff - 1) * self.jump,
            jump=self.jump * stride,
            start=self.start + ((k_eff - 1) / 2 - padding) * self.jump,
        )


IMAGE_FIELD = (AxisField(1, 1, 0.0), AxisField(1, 1, 0.0))  # (rows, columns) of the input image


@dataclass(frozen=True)
class LayerRF:
    """One convolution-like layer's receptive field (values per kernel group where they differ).

    ``rf`` is the largest field of the layer's output (over groups and the two
    axes), ``rf_groups`` the largest per kernel group. ``field`` keeps the
    merged output's exact (rows, columns) ``AxisField`` pair, ``group_fields``
    one such pair per kernel group. Pairs that are equal on both axes are
    shown as one int.
    """

    name: str
    kind: str
    kernel_sizes: tuple       # one per group: k, or (kh, kw) when not square
    stride: int | tuple
    padding: int | tuple
    dilation: int | tuple
    rf_groups: tuple          # one int per group
    rf: int
    jump: int | tuple
    start: float | tuple      # centre of output unit 0's field, in input pixels
    output_shape: tuple       # (C, H, W)
    field: tuple              # (rows, columns) AxisField of the merged output
    group_fields: tuple       # one (rows, columns) AxisField pair per group


@dataclass
class Trace:
    """What ``trace`` saw: the records, and the watched layer's output and its field."""

    records: list
    output: Tensor | None = None
    output_field: tuple | None = None


def receptive_field(model, input_shape) -> list:
    """The theoretical receptive field of every convolution-like layer, in forward order.

    ``input_shape``: ``(C, H, W)`` or ``(N, C, H, W)`` of one input. The model
    runs once on zeros in eval mode and is left exactly as it was.
    Returns a list of ``LayerRF`` (``name``, ``rf``, ``jump``, ``rf_groups``...).
    """
    with model_untouched(model, training=False):
        return trace(model, _zeros_input(model, input_shape)).records


def layer_field(model, input_shape, layer: str) -> tuple:
    """The (rows, columns) ``AxisField`` pair of any module's output, by its dotted name."""
    with model_untouched(model, training=False):
        return trace(model, _zeros_input(model, input_shape), stop_after=layer).output_field


def _zeros_input(model, input_shape) -> Tensor:
    shape = tuple(int(n) for n in input_shape)
    if len(shape) == 3:
        shape = (1,) + shape
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"receptive_field: input_shape must be (C, H, W) or (N, C, H, W), got {input_shape}")
    dtype = next((p.dtype for p in model.parameters()), np.float32)
    return Tensor(np.zeros((1,) + shape[1:], dtype=dtype), requires_grad=True)


def trace(model, x: Tensor, stop_after: str | None = None) -> Trace:
    """Run ``model(x)`` while recording every convolution-like layer's field.

    ``x`` must require grad (the graph is how paths are followed). With
    ``stop_after`` the pass ends right after that module (any module, by its
    dotted name) and the result also holds its output tensor and field.
    The caller sets the mode (see ``tracing.model_untouched``).
    """
    if not (x.requires_grad and is_grad_enabled()):
        raise RuntimeError("trace needs an input with requires_grad=True, outside minimix.no_grad()")
    known = {id(x): (x, IMAGE_FIELD)}  # id -> (tensor kept alive so ids stay unique, field)
    result = Trace(records=[])

    def record(module, args, output, name):
        field_in = _field_of(args[0], known)
        groups = [_axis_pairs(conv) for conv in _kernel_groups(module)]
        fields = [tuple(axis.through(*g) for axis, g in zip(field_in, zip(*group))) for group in groups]
        merged = _merge(fields)
        known[id(output)] = (output, merged)
        kernel, stride, padding, dilation = zip(*groups)  # per-group pairs
        result.records.append(LayerRF(
            name=name,
            kind=type(module).__name__,
            kernel_sizes=tuple(_squash(k) for k in kernel),
            stride=_squash(stride[0]),
            padding=_squash(padding[0]),
            dilation=_squash(dilation[0]),
            rf_groups=tuple(max(f.r for f in field) for field in fields),
            rf=max(f.r for f in merged),
            jump=_squash(tuple(f.jump for f in merged)),
            start=_squash(tuple(f.start for f in merged)),
            output_shape=tuple(output.shape[1:]),
            field=merged,
            group_fields=tuple(fields),
        ))

    def watch(module, args, output):
        result.output = output
        result.output_field = _field_of(output, known)
        raise StopForward

    hooks = [(m, lambda mod, a, out, n=name: record(mod, a, out, n)) for name, m in conv_layers(model)]
    if stop_after is not None:
        hooks.append((find_module(model, stop_after), watch))
    with forward_hooks(hooks):
        try:
            model(x)
        except StopForward:
            pass
    if stop_after is not None and result.output is None:
        raise ValueError(f"layer {stop_after!r} exists but was never called by {type(model).__name__}.forward")
    return result


def conv_layers(model) -> list:
    """``(name, module)`` of every convolution-like module, outermost first.

    A module whose ``convs`` are all convolutions (MixConv, a grouped 1x1
    conv) counts as one layer with one kernel group per conv; its convs are
    not listed again (its forward may not even call them: a fused op can use
    their weights directly).
    """
    found = []
    for name, module in model.named_modules():
        if any(name.startswith(outer + ".") for outer, _ in found):
            continue
        if _kernel_groups(module) is not None:
            found.append((name, module))
    return found


def _kernel_groups(module):
    """The convolutions that make up a conv-like ``module`` (one per kernel group), or None."""
    convs = module.__dict__.get("convs")
    if convs is not None:
        convs = list(convs)
        return convs if convs and all(_kernel_groups(c) == [c] for c in convs) else None
    is_leaf = next(module.named_children(), None) is None  # a block storing its own `stride` is not a conv
    if is_leaf and hasattr(module, "kernel_size") and hasattr(module, "stride"):
        return [module]
    return None


def _axis_pairs(conv) -> tuple:
    """(kernel, stride, padding, dilation) of a conv/pool module, each a (rows, columns) pair."""
    kernel = as_pair(conv.kernel_size, "kernel_size", "receptive field")
    stride = as_pair(conv.stride if conv.stride is not None else kernel, "stride", "receptive field")  # pools: None = kernel
    dilation = as_pair(getattr(conv, "dilation", 1), "dilation", "receptive field")
    padding = getattr(conv, "padding", 0)
    if padding == "same":
        padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    elif padding == "valid":
        padding = 0
    return kernel, stride, as_pair(padding, "padding", "receptive field"), dilation


def _field_of(tensor: Tensor, known: dict) -> tuple:
    """The field of ``tensor``: the largest among its nearest ancestors with a known field."""
    found, stack, seen = [], [tensor], set()
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if id(t) in known:
            found.append(known[id(t)][1])
        elif t._ctx is not None:
            stack.extend(t._ctx.parents)
    if not found:
        raise ValueError("receptive field: a layer's input does not depend on the model input")
    return _merge(found)


def _merge(fields: list) -> tuple:
    """Where paths meet, each axis takes the path with the largest field."""
    return tuple(max(axis, key=lambda f: f.r) for axis in zip(*fields))


def _squash(pair):
    """(a, a) -> a, so square kernels and strides read as plain numbers."""
    return pair[0] if pair[0] == pair[1] else tuple(pair)


def format_table(records) -> str:
    """A plain-text table: one line per layer (kernels, stride, jump, r per group, r)."""
    header = ("#", "layer", "type", "kernel", "stride", "dil", "jump", "r per group", "r", "output")
    rows = [header]
    for i, rec in enumerate(records, 1):
        rows.append((
            str(i), rec.name, rec.kind,
            "/".join(_text(k) for k in rec.kernel_sizes),
            _text(rec.stride), _text(rec.dilation), _text(rec.jump),
            "/".join(str(r) for r in rec.rf_groups), str(rec.rf),
            "x".join(str(n) for n in rec.output_shape),
        ))
    widths = [max(len(row[c]) for row in rows) for c in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_receptive_fields(records) -> None:
    """Print ``format_table(records)``."""
    print(format_table(records))


def _text(value) -> str:
    return "x".join(str(v) for v in value) if isinstance(value, tuple) else str(value)
