"""``summary(model, input_shape)``: a per-layer table of output shapes, parameters and multiply-accumulates.

How it works: one forward pass in eval mode under ``no_grad`` on a zero input, with a forward hook
on each layer (``Module.register_forward_hook``) that records its output shape; the hooks are
removed afterwards and the model's modes and state are left as they were. A "layer" is a module
without children, or one of the composite layers that are read as one unit: ``MixConv2d``,
``GroupedConv2d``, ``SqueezeExcite``, and any module with parameters of its own (a BatchNorm that
holds its activation as a child, as timm's ``BatchNormAct2d``).

What is counted as multiply-accumulates (MACs), per image:

* convolution: ``C_out * OH * OW * (C_in / groups) * kh * kw`` -- every output element is a dot
  product over ``C_in/groups * kh * kw`` inputs. A MixConv or grouped conv is the sum over its
  groups; a squeeze-excite is its two 1x1 convs on the pooled (1x1) map.
* linear: ``in_features * out_features``.
* everything else (BatchNorm, activations, pooling, dropout, residual adds, the squeeze-excite's
  gating product) counts 0: they are O(elements), not O(elements x fan-in), and the papers'
  MAC/FLOP figures usually leave them out too.
"""
from __future__ import annotations

import dataclasses
import sys

import numpy as np

from .. import nn
from ..tensor import Tensor, no_grad


@dataclasses.dataclass
class LayerRow:
    """One row of :func:`summary`'s table: a layer, its output shape (None when it did not run), its
    parameter count, its multiply-accumulates per image and its kernel sizes (as text)."""

    name: str
    type: str
    output_shape: tuple | None  # None when the layer did not run
    params: int
    macs: int  # per image
    kernel: str


@dataclasses.dataclass
class Summary:
    """What :func:`summary` returns: the input and output shapes, one :class:`LayerRow` per layer, the
    total parameter count and the multiply-accumulates per image; ``str()`` of it is the printed table."""

    input_shape: tuple
    output_shape: tuple
    rows: list
    total_params: int
    total_macs: int  # per image

    def __str__(self):
        header = ("layer", "type", "output shape", "params", "MACs", "kernel")
        body = [
            (r.name, r.type, "-" if r.output_shape is None else str(r.output_shape),
             f"{r.params:,}", f"{r.macs:,}", r.kernel)
            for r in self.rows
        ]
        widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
        right = {3, 4}

        def fmt(line):
            return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths)))

        rule = "-" * len(fmt(header))
        lines = [fmt(header).rstrip(), rule] + [fmt(line).rstrip() for line in body] + [rule]
        lines.append(f"input {self.input_shape} -> output {self.output_shape}")
        lines.append(f"total parameters: {self.total_params:,}")
        lines.append(f"total multiply-accumulates per image: {self.total_macs:,} ({self.total_macs / 1e6:.1f} M)")
        return "\n".join(lines)


ATOMIC = (nn.MixConv2d, nn.GroupedConv2d, nn.SqueezeExcite)  # read as one layer each


def _read_as_one(module) -> bool:
    """A composite layer: one of ``ATOMIC``, or a module owning parameters besides its children's."""
    return isinstance(module, ATOMIC) or any(isinstance(v, nn.Parameter) for v in vars(module).values())


def _conv_macs(conv, oh, ow):
    c_out, c_in_per_group, kh, kw = conv.weight.shape
    return c_out * oh * ow * c_in_per_group * kh * kw


def _macs(module, output_shape) -> int:
    """Per-image multiply-accumulates of one layer (see the module docstring)."""
    if output_shape is None:
        return 0
    if isinstance(module, nn.Linear):
        return module.weight.shape[0] * module.weight.shape[1] * int(np.prod(output_shape[1:-1], dtype=np.int64))
    convs = [m for _, m in module.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        return 0
    if isinstance(module, nn.SqueezeExcite):
        return sum(_conv_macs(c, 1, 1) for c in convs)
    oh, ow = output_shape[2], output_shape[3]
    return sum(_conv_macs(c, oh, ow) for c in convs)


def _kernel(module) -> str:
    """Kernel sizes as text: "3x3", "3x3,5x5,7x7" (MixConv), "1x1 x2 groups", "1x1 96->8->96" (SE)."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.weight.shape[2:]
        return f"{kh}x{kw}" + (" depthwise" if module.groups > 1 and module.groups == module.weight.shape[0] else "")
    if isinstance(module, nn.MixConv2d):
        return ",".join(f"{k}x{k}" for k in module.kernel_sizes)
    if isinstance(module, nn.GroupedConv2d):
        k = module.kernel_size
        return f"{k}x{k}" + (f" x{module.groups} groups" if module.groups > 1 else "")
    if isinstance(module, nn.SqueezeExcite):
        c, r = module.conv_reduce.weight.shape[1], module.conv_reduce.weight.shape[0]
        return f"1x1 {c}->{r}->{c}"
    return ""


def _layers(model):
    """(name, module) of every layer, in definition order, without descending into composite layers.

    A model that is itself one layer (a bare ``MixConv2d`` or ``Conv2d``) is its own single row.
    """
    if not list(model.named_children()) or isinstance(model, ATOMIC):
        return [(type(model).__name__, model)]
    out, stack = [], [("", model)]
    while stack:
        name, m = stack.pop()
        kids = list(m.named_children())
        if m is not model and (not kids or _read_as_one(m)):
            out.append((name, m))
            continue
        stack.extend(reversed([(f"{name}.{n}" if name else n, k) for n, k in kids]))
    return out


def summary(model, input_shape, dtype=np.float32, file=None, verbose=True) -> Summary:
    """Print (unless ``verbose=False``) and return the per-layer table of ``model``.

    ``input_shape`` is (C, H, W) or (N, C, H, W); a missing batch axis becomes 1. MACs are per
    image. Returns a :class:`Summary` with ``rows`` (LayerRow) and ``total_params``/``total_macs``.
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1,) + shape
    if len(shape) != 4:
        raise ValueError(f"summary: input_shape must be (C, H, W) or (N, C, H, W), got {input_shape}")

    layers = _layers(model)
    shapes = {}

    def record(key):
        def hook(module, args, output):
            shapes[key] = tuple(output.shape)
        return hook

    modes = {id(m): m.training for m in model.modules()}
    handles = []
    try:
        for key, (_, m) in enumerate(layers):
            handles.append(m.register_forward_hook(record(key)))
        model.eval()
        with no_grad():
            out = model(Tensor(np.zeros(shape, dtype=dtype)))
    finally:
        for handle in handles:
            handle.remove()
        for m in model.modules():
            object.__setattr__(m, "training", modes[id(m)])

    rows = []
    for key, (name, m) in enumerate(layers):
        out_shape = shapes.get(key)
        rows.append(LayerRow(name=name, type=type(m).__name__, output_shape=out_shape,
                             params=sum(p.numel() for p in m.parameters()),
                             macs=_macs(m, out_shape), kernel=_kernel(m)))
    result = Summary(input_shape=shape, output_shape=tuple(out.shape), rows=rows,
                     total_params=model.num_parameters(), total_macs=sum(r.macs for r in rows))
    if verbose:
        print(result, file=file or sys.stdout)
    return result
