"""Exchange MixNet weights with PyTorch Image Models (timm) state dicts.

minimix names its MixNet modules as timm does (``conv_stem``, ``bn1``, ``blocks.<stage>.<block>``,
``conv_pw``/``conv_dw``/``conv_pwl``, ``se.conv_reduce``, ``conv_head``, ``bn2``, ``classifier``),
so one rule maps the names. minimix keeps the groups of a grouped or mixed conv in a list
``convs``; timm uses a plain conv when there is one group and numbered convs otherwise::

    minimix                               timm
    blocks.1.0.conv_pw.convs.0.weight  -> blocks.1.0.conv_pw.0.weight   (2 groups)
    blocks.2.0.conv_pw.convs.0.weight  -> blocks.2.0.conv_pw.weight     (1 group)
    blocks.2.0.conv_dw.convs.2.weight  -> blocks.2.0.conv_dw.2.weight   (3 kernel sizes)

Shapes are identical (both use PyTorch's (out, in/groups, kh, kw) layout). BatchNorm's
``num_batches_tracked`` (int64) is exchanged like any buffer; a state dict without it loads and
leaves the model's counters as they are (as ``torch.nn.BatchNorm2d`` does).
"""
from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np

from .. import nn

_COUNTER = "num_batches_tracked"


class StateDictMismatchError(ValueError):
    """A checkpoint does not fit the model; lists every missing, unexpected and mis-shaped key."""

    def __init__(self, message, missing=(), unexpected=(), mismatched=()):
        super().__init__(message)
        self.missing, self.unexpected, self.mismatched = list(missing), list(unexpected), list(mismatched)


def timm_key_map(model) -> "OrderedDict[str, str]":
    """{minimix state_dict key: timm key} for every parameter and buffer of ``model``."""
    renames = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.GroupedConv2d, nn.MixConv2d)):
            n = len(m.convs)
            for i in range(n):
                for leaf in ("weight", "bias"):
                    theirs = f"{name}.{leaf}" if n == 1 else f"{name}.{i}.{leaf}"
                    renames[f"{name}.convs.{i}.{leaf}"] = theirs
    return OrderedDict((k, renames.get(k, k)) for k in model.state_dict())


def _to_numpy(value):
    """NumPy arrays pass through; torch tensors are converted without importing torch."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def to_timm_state_dict(model) -> "OrderedDict[str, np.ndarray]":
    """The model's weights and buffers under timm's names, in timm's order.

    Load it into PyTorch with ``{k: torch.from_numpy(v) for k, v in sd.items()}``.
    """
    state = model.state_dict()
    names = timm_key_map(model)
    by_owner = {}
    for k in state:
        by_owner.setdefault(k.rpartition(".")[0], []).append(k)
    out = OrderedDict()
    for name, m in model.named_modules():  # torch's order: per module, parameters then buffers
        for k in by_owner.pop(name, []):
            out[names[k]] = state[k]
    for keys in by_owner.values():  # e.g. lists of parameters, owned by no module of their own
        for k in keys:
            out[names[k]] = state[k]
    return out


def load_timm_state_dict(model, state_dict, strict=True):
    """Copy a timm MixNet state dict (NumPy arrays or torch tensors) into ``model``.

    Every problem is reported in one :class:`StateDictMismatchError` (a ValueError): missing
    keys, unexpected keys, and shape mismatches with both shapes. ``strict=False`` loads what
    fits and ignores missing/unexpected keys (mis-shaped ones still raise).
    """
    names = timm_key_map(model)
    ours_by_theirs = {theirs: ours for ours, theirs in names.items()}
    shapes = {k: np.shape(v) for k, v in model.state_dict().items()}
    given = state_dict

    # a counter may be absent (older checkpoints): the model's own stays, as in PyTorch
    missing = [theirs for theirs in ours_by_theirs if theirs not in given and not theirs.endswith(_COUNTER)]
    unexpected = [k for k in given if k not in ours_by_theirs]
    mismatched, mapped = [], {}
    for theirs, value in given.items():
        if theirs not in ours_by_theirs:
            continue
        ours = ours_by_theirs[theirs]
        value = _to_numpy(value)
        if tuple(value.shape) != tuple(shapes[ours]):
            mismatched.append(f"{theirs}: checkpoint {tuple(value.shape)} vs model {tuple(shapes[ours])} ({ours})")
        else:
            mapped[ours] = value
    if mismatched or (strict and (missing or unexpected)):
        parts = []
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches:\n  " + "\n  ".join(mismatched))
        if strict and missing:
            parts.append(f"{len(missing)} missing keys:\n  " + "\n  ".join(missing))
        if strict and unexpected:
            parts.append(f"{len(unexpected)} unexpected keys:\n  " + "\n  ".join(unexpected))
        raise StateDictMismatchError(
            f"timm state dict does not fit {type(model).__name__}:\n" + "\n".join(parts),
            missing=missing if strict else (), unexpected=unexpected if strict else (), mismatched=mismatched,
        )
    model.load_state_dict(mapped, strict=False)
    return model


def read_checkpoint(path) -> dict:
    """Read a state dict from ``.pth``/``.pt``/``.bin`` (needs torch), ``.safetensors`` (needs
    safetensors) or ``.npz`` (NumPy); values come back as NumPy arrays. A ``.pth`` holding a
    training checkpoint with a ``"state_dict"`` entry is unwrapped."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    if suffix in (".pth", ".pt", ".bin"):
        try:
            import torch
        except ImportError:
            raise ImportError(f"reading {path!r} needs PyTorch (pip install torch); "
                              "or convert the checkpoint to .safetensors") from None
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        return {k: _to_numpy(v) for k, v in state.items()}
    if suffix == ".safetensors":
        try:
            from safetensors.numpy import load_file
        except ImportError:
            raise ImportError(f"reading {path!r} needs the safetensors package (pip install safetensors)") from None
        return dict(load_file(path))
    if suffix == ".npz":
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    raise ValueError(f"checkpoint {path!r}: unknown file type {suffix!r}; expected .pth, .pt, .bin, .safetensors or .npz")


def load_timm_checkpoint(model, path, strict=True):
    """``load_timm_state_dict(model, read_checkpoint(path))``."""
    return load_timm_state_dict(model, read_checkpoint(path), strict=strict)
