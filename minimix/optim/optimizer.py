"""The ``Optimizer`` base class: parameter groups, per-parameter state, checkpoints.

An optimizer owns a list of *parameter groups*. Each group is a dict with its
``"params"`` and its hyperparameters (``"lr"``, ``"weight_decay"``...); a group
that does not set one takes the optimizer's default. This is how one model gets
weight decay on its weights but not on its biases (``weight_decay_groups``), and
how a scheduler changes the learning rate (it writes ``group["lr"]``).

``step()`` visits every parameter that has a gradient and calls the subclass's
``update(p, grad, state, group)``, which changes ``p.data`` IN PLACE. ``state`` is
that parameter's own dict (momentum buffers, moment estimates...).

Hyperparameters are checked when a group is added (the constructor's defaults merged with the
group's overrides): ``check_hyperparameters`` of each optimizer refuses NaN, inf and values out of
range with a ``ValueError`` naming the argument.

``state_dict()`` numbers the parameters 0, 1, 2... in group order (as PyTorch)
so a checkpoint holds no object identities:

    {"state": {0: {"momentum_buffer": array}, ...},
     "param_groups": [{"lr": 0.1, ..., "params": [0, 1, ...]}, ...]}
"""
import math
import numbers

import numpy as np

from ..tensor import Tensor


def check_number(owner: str, name: str, value, low: float = 0.0, high: float | None = None,
                 high_inclusive: bool = False):
    """Raise ``ValueError("owner: name must be a finite number in [low, high), got value")`` unless
    ``value`` is a real number (not a bool), finite, ``>= low`` and below (or up to) ``high``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and value >= low and (high is None or (value <= high if high_inclusive else value < high))
    if not ok:
        if high is None:
            expected = f">= {low:g}"
        else:
            expected = f"in [{low:g}, {high:g}{']' if high_inclusive else ')'}"
        raise ValueError(f"{owner}: {name} must be a finite number {expected}, got {value!r}")


class Optimizer:
    """Base class: parameter groups, ``step()``, ``zero_grad()``, ``state_dict()``/``load_state_dict()``.

    Subclasses set their defaults in ``__init__``, check them in ``check_hyperparameters`` and
    write the update in ``update(p, grad, state, group)``.
    """

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.check_hyperparameters(self.defaults, type(self).__name__)
        self.param_groups = []
        self.state = {}  # id(parameter) -> dict; keyed by id, as Tensors may one day define __eq__
        self._scratch = {}  # (shape, dtype) -> reusable work array, so updates allocate nothing per step
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: dict):
        """Add a group: ``{"params": [...], **hyperparameter overrides}``."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{type(self).__name__}: a parameter group must be a dict with 'params', got {group!r}")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for i, p in enumerate(params):
            if not isinstance(p, Tensor) or not p.requires_grad:
                raise TypeError(
                    f"{type(self).__name__}: parameter {i} of group {len(self.param_groups)} must be a "
                    f"Tensor with requires_grad=True, got {type(p).__name__}"
                )
            if id(p) in seen:
                raise ValueError(
                    f"{type(self).__name__}: parameter {i} of group {len(self.param_groups)} (shape {p.shape}) "
                    "is already in another group"
                )
            seen.add(id(p))
        merged = {**self.defaults, **group, "params": params}
        self.check_hyperparameters(merged, f"{type(self).__name__} (parameter group {len(self.param_groups)})")
        self.param_groups.append(merged)

    def check_hyperparameters(self, group: dict, owner: str):
        """Refuse invalid hyperparameters of ``group`` with a ValueError naming ``owner`` and the
        argument (subclasses check theirs; called for every group as it is added)."""

    # -- the update ----------------------------------------------------------------
    def step(self):
        """Update every parameter that has a gradient (those without one are left alone)."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self.update(p, p.grad, self.state.setdefault(id(p), {}), group)

    def update(self, p, grad, state: dict, group: dict):  # pragma: no cover - abstract
        """Change ``p.data`` in place from ``grad``, this parameter's ``state`` and its ``group``'s settings."""
        raise NotImplementedError(f"{type(self).__name__} must implement update()")

    def zero_grad(self):
        """Forget all gradients (``p.grad = None``, so the next backward starts fresh)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def scratch(self, p, slot: int = 0) -> np.ndarray:
        """A work array shaped like ``p``, reused across steps (its contents are garbage)."""
        key = (p.shape, p.dtype.str, slot)
        buffer = self._scratch.get(key)
        if buffer is None:
            buffer = self._scratch[key] = np.empty_like(p.data)
        return buffer

    # -- checkpoints -----------------------------------------------------------------
    def state_dict(self) -> dict:
        """Copies of the state and hyperparameters, parameters named by their index."""
        index, groups = {}, []
        for group in self.param_groups:
            for p in group["params"]:
                index[id(p)] = len(index)
            hyper = {k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items() if k != "params"}
            groups.append({**hyper, "params": [index[id(p)] for p in group["params"]]})
        state = {
            index[key]: {name: np.array(value, copy=True) for name, value in s.items()}
            for key, s in self.state.items()
            if key in index
        }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict):
        """Restore state and hyperparameters saved by ``state_dict`` (the groups must match in size)."""
        name = type(self).__name__
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"{name}.load_state_dict: the checkpoint has {len(saved_groups)} parameter groups, "
                f"this optimizer has {len(self.param_groups)}"
            )
        params = []
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"{name}.load_state_dict: group {i} has {len(saved['params'])} parameters in the "
                    f"checkpoint but {len(group['params'])} here"
                )
            params.extend(group["params"])
        new_state = {}
        for key, saved in state_dict["state"].items():
            k = int(key)
            if not 0 <= k < len(params):
                raise ValueError(f"{name}.load_state_dict: state for parameter {k}, but there are {len(params)}")
            p = params[k]
            entry = {}
            for field, value in saved.items():
                value = np.array(value, copy=True)
                if value.ndim == 0:  # counters such as "step" are plain numbers
                    entry[field] = value.item()
                elif value.shape != p.shape:
                    raise ValueError(
                        f"{name}.load_state_dict: state {field!r} of parameter {k} has shape {value.shape}, "
                        f"expected {p.shape}"
                    )
                elif value.dtype != p.dtype:
                    raise ValueError(
                        f"{name}.load_state_dict: state {field!r} of parameter {k} has dtype {value.dtype}, "
                        f"expected {p.dtype} (the parameter's)"
                    )
                elif not np.isfinite(value).all():
                    raise ValueError(f"{name}.load_state_dict: state {field!r} of parameter {k} holds NaN or inf")
                else:
                    entry[field] = value
            new_state[id(p)] = entry
        hypers = []
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            hyper = {k: v for k, v in saved.items() if k != "params"}
            if isinstance(hyper.get("betas"), list):
                hyper["betas"] = tuple(hyper["betas"])
            self.check_hyperparameters({**group, **hyper}, f"{name}.load_state_dict (parameter group {i})")
            hypers.append(hyper)
        self.state = new_state
        for hyper, group in zip(hypers, self.param_groups):
            group.update(hyper)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k, v in sorted(group.items()):
                if k != "params":
                    lines.append(f"    {k}: {v}")
        return "\n".join(lines) + "\n)"
