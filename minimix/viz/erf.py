"""Effective receptive field (Luo, Li, Urtasun and Zemel, NeurIPS 2016).

The theoretical field says which pixels *can* influence an output unit; the
effective field measures how much each one *does*. Put a gradient of 1 on the
centre unit ``y[:, c, i0, j0]`` of a layer (for the chosen channels ``c``), 0
elsewhere, and back-propagate to the image: ``x.grad[n, :, u, v]`` is then
``d (sum_c y[n, c, i0, j0]) / d x[n, :, u, v]``. The map averages its
magnitude over the batch and sums it over input channels::

    erf[u, v] = mean_n  sum_ch | d y_n / d x[n, ch, u, v] |

For a stack of n linear stride-1 convolutions the map is exactly the n-fold
convolution of the kernels; Luo et al. show it tends to a Gaussian whose width
grows like sqrt(n), so the effective field fills only a small centre part of
the theoretical one. ``erf_summary`` measures that: the side of the smallest
centred square that holds 20%, 50% and 99% of the gradient mass.

Everything runs on minimix's own autograd; the model is left unchanged (its
mode, buffers, gradients and the random generator are restored).
"""
from dataclasses import dataclass

import numpy as np

from ..tensor import Tensor
from .receptive_field import receptive_field, trace
from .tracing import find_module, model_untouched


@dataclass
class ERF:
    """An effective receptive field map and where it sits.

    ``map``: (H, W) gradient magnitudes in input pixels. ``centre``: (row, col)
    of the output unit's theoretical field centre. ``rf``: the theoretical
    field's (rows, columns) size. ``unit``: the (row, col) of the output unit in
    the layer's map. ``label``: a short description (for plot titles).
    """

    map: np.ndarray
    centre: tuple
    rf: tuple
    layer: str
    unit: tuple
    label: str = ""

    def summary(self, fractions=(0.2, 0.5, 0.99)) -> dict:
        """``{fraction: side}`` of this map: :func:`erf_summary` of ``map`` around ``centre``."""
        return erf_summary(self.map, self.centre, fractions)


def effective_receptive_field(model, inputs, layer=None, **options) -> np.ndarray:
    """The 2-D effective receptive field map of ``layer``'s centre unit (see ``compute_erf``)."""
    return compute_erf(model, inputs, layer, **options).map


def compute_erf(model, inputs, layer=None, *, channels=None, group=None, mode="eval",
                allow_clipped=False) -> ERF:
    """Back-propagate from the centre unit of ``layer`` to ``inputs``; return an ``ERF``.

    ``inputs``: (N, C, H, W) array or Tensor (real images or random numbers),
    cast to the model's parameter dtype.
    ``layer``: a dotted module name; None = the last convolution-like layer.
    ``channels``: which output channels carry the gradient (None = all; a slice
    or a list of indices); ``group=i`` picks MixConv kernel group ``i``'s channels.
    ``mode``: "eval" (BatchNorm uses running statistics: every image is
    independent) or "train" (batch statistics couple the images).
    Raises ValueError when the centre unit's theoretical field does not fit in
    the input (the map would be silently clipped by padding) unless
    ``allow_clipped`` is true.
    """
    if mode not in ("eval", "train"):
        raise ValueError(f"compute_erf: mode must be 'eval' or 'train', got {mode!r}")
    x = _input_tensor(inputs, model)
    height, width = x.shape[2:]
    if layer is None:
        layer = _last_conv_layer(model, x.shape)
    module = find_module(model, layer)
    with model_untouched(model, training=(mode == "train")):
        seen = trace(model, x, stop_after=layer)
        out = seen.output
        if not isinstance(out, Tensor) or out.ndim != 4:
            shape = getattr(out, "shape", type(out).__name__)
            raise ValueError(f"compute_erf: layer {layer!r} must output an (N, C, H, W) map, got {shape}")
        selected = _channel_slice(module, layer, channels, group, out.shape[1])
        field = seen.output_field
        if group is not None:  # a MixConv group: its own kernel's field, not the layer's largest
            field = seen.records[-1].group_fields[group]
        unit = (out.shape[2] // 2, out.shape[3] // 2)
        centre = tuple(axis.start + i * axis.jump for axis, i in zip(field, unit))
        rf = tuple(axis.r for axis in field)
        if not allow_clipped:
            _check_fits(layer, centre, rf, (height, width), unit)
        seed = np.zeros(out.shape, dtype=out.dtype)
        seed[:, selected, unit[0], unit[1]] = 1.0
        out.backward(seed)
    erf_map = np.abs(x.grad).sum(axis=1).mean(axis=0)
    label = layer if group is None else f"{layer} group {group}"
    return ERF(map=erf_map, centre=centre, rf=rf, layer=layer, unit=unit, label=label)


def mixconv_group_erfs(model, inputs, layer, **options) -> list:
    """One ``ERF`` per kernel group of the MixConv ``layer`` (3x3 group, 5x5 group, ...)."""
    module = find_module(model, layer)
    if not hasattr(module, "kernel_sizes") or not hasattr(module, "splits"):
        raise ValueError(f"mixconv_group_erfs: layer {layer!r} is a {type(module).__name__}, not a MixConv")
    erfs = []
    for i, k in enumerate(module.kernel_sizes):
        erf = compute_erf(model, inputs, layer, group=i, **options)
        erf.label = f"{layer} {k}x{k} group"
        erfs.append(erf)
    return erfs


def erf_summary(erf_map, centre=None, fractions=(0.2, 0.5, 0.99)) -> dict:
    """``{fraction: side}``: the smallest centred square holding that share of the map's mass.

    A pixel (u, v) lies in the square of side s centred at (cu, cv) when
    ``max(|u - cu|, |v - cv|) <= (s - 1) / 2``, so each pixel needs the side
    ``ceil(2 * max(|u - cu|, |v - cv|) + 1)``; the mass is accumulated by that
    side. ``centre`` defaults to the map's centre of mass, rounded to half pixels.
    """
    erf_map = np.asarray(erf_map, dtype=np.float64)
    if erf_map.ndim != 2:
        raise ValueError(f"erf_summary: erf_map must be 2-D (H, W), got shape {erf_map.shape}")
    total = erf_map.sum()
    if not total > 0:
        raise ValueError("erf_summary: the map holds no gradient mass (all zeros)")
    rows, cols = np.indices(erf_map.shape)
    if centre is None:
        centre = (np.round(2 * (rows * erf_map).sum() / total) / 2, np.round(2 * (cols * erf_map).sum() / total) / 2)
    distance = np.maximum(np.abs(rows - centre[0]), np.abs(cols - centre[1]))
    side_needed = np.ceil(2 * distance + 1 - 1e-9).astype(int)
    mass_within = np.cumsum(np.bincount(side_needed.ravel(), weights=erf_map.ravel()))  # index = side
    summary = {}
    for f in fractions:
        if not 0 < f <= 1:
            raise ValueError(f"erf_summary: fractions must lie in (0, 1], got {f}")
        summary[f] = int(np.searchsorted(mass_within, f * total * (1 - 1e-12)))
    return summary


def _input_tensor(inputs, model) -> Tensor:
    """A fresh leaf tensor in the model's dtype (convolutions need one dtype for input and weights)."""
    data = inputs.data if isinstance(inputs, Tensor) else np.asarray(inputs)
    if data.ndim != 4:
        raise ValueError(f"compute_erf: inputs must be an (N, C, H, W) batch, got shape {data.shape}")
    dtype = next((p.dtype for p in model.parameters()), np.float32)
    return Tensor(data.astype(dtype, copy=True), requires_grad=True)


def _last_conv_layer(model, input_shape) -> str:
    records = receptive_field(model, input_shape[1:])
    if not records:
        raise ValueError(f"compute_erf: {type(model).__name__} has no convolution-like layer; name a layer")
    return records[-1].name


def _check_fits(layer, centre, rf, image_hw, unit):
    for axis, c, r, n in zip(("rows", "columns"), centre, rf, image_hw):
        low, high = c - (r - 1) / 2, c + (r - 1) / 2
        if low < 0 or high > n - 1:
            raise ValueError(
                f"compute_erf: the input is too small for layer {layer!r}: its centre unit {unit} has a "
                f"theoretical receptive field of {r} px along the {axis}, covering input pixels "
                f"{low:g}..{high:g}, but the input has only {n} (0..{n - 1}); the map would be clipped "
                f"by padding. Use inputs larger than {r} px per side, an earlier layer, or allow_clipped=True."
            )


def _channel_slice(module, layer, channels, group, num_channels):
    if group is not None and channels is not None:
        raise ValueError("compute_erf: give channels or group, not both")
    if group is None:
        return slice(None) if channels is None else channels
    splits = getattr(module, "splits", None)
    if splits is None:
        raise ValueError(f"compute_erf: group= needs a MixConv layer, but {layer!r} is a {type(module).__name__}")
    if not 0 <= group < len(splits):
        raise ValueError(f"compute_erf: group must be in 0..{len(splits) - 1} for {layer!r}, got {group}")
    offsets = np.concatenate([[0], np.cumsum(splits)])
    if offsets[-1] != num_channels:
        raise ValueError(f"compute_erf: {layer!r} splits {splits} do not add up to its {num_channels} channels")
    return slice(int(offsets[group]), int(offsets[group + 1]))
