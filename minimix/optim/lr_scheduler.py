"""Learning-rate schedules, stepped once per optimizer step (or per epoch, your choice).

Each schedule is a closed-form function of the step counter t and each group's
peak rate ``initial_lr``::

    WarmupCosineLR     lr(t) = peak * (t + 1) / warmup                          for t < warmup
                       lr(t) = min_lr + (peak - min_lr) * (1 + cos(pi * u)) / 2  after, u = (t - warmup) / (total - warmup)
    StepLR             lr(t) = peak * gamma ** (t // step_size)
    LambdaLR           lr(t) = peak * fn(t)
    CosineAnnealingLR  lr(t) = eta_min + (peak - eta_min) * (1 + cos(pi * t / T_max)) / 2
    OneCycleLR         from max_lr / div_factor up to max_lr, then down to a tiny rate, cycling
                       the momentum (or Adam's beta1) the other way (see its docstring)

As in PyTorch, constructing a scheduler applies lr(0) at once and records
``group["initial_lr"]``; ``step()`` advances t and writes lr(t) into every
group. Being closed-form, a schedule resumed from ``state_dict()`` continues
exactly where it stopped.
"""
import math

from .optimizer import check_number


class LRScheduler:
    """Base class: ``lr_at(t, base_lr)`` gives a group's rate at step ``t``; ``step()`` advances ``t``.

    Use it as in PyTorch: ``optimizer.step()`` then ``scheduler.step()``, once per batch (or epoch).
    """

    def __init__(self, optimizer):
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = 0
        self._apply()

    def lr_at(self, t: int, base_lr: float) -> float:  # pragma: no cover - abstract
        """The learning rate at step ``t`` of a group whose peak (initial) rate is ``base_lr``."""
        raise NotImplementedError(f"{type(self).__name__} must implement lr_at()")

    def _apply(self):
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = self.lr_at(self.last_epoch, base)

    def step(self):
        """Advance one step and set each group's learning rate."""
        self.last_epoch += 1
        self._apply()

    def get_last_lr(self) -> list:
        """The learning rate of each parameter group, as last set by the scheduler."""
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        """The step counter, the peak rates and the schedule's settings (everything but the optimizer)."""
        return {k: (list(v) if isinstance(v, list) else v) for k, v in vars(self).items()
                if k != "optimizer" and not callable(v)}

    def load_state_dict(self, state: dict):
        """Restore ``state_dict()`` and re-apply the learning rate of the restored step.

        The state must have exactly the entries of this schedule's ``state_dict()`` (a saved state
        sets no other attribute), with one peak rate per parameter group."""
        name = type(self).__name__
        own = self.state_dict()
        missing, unknown = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unknown:
            raise ValueError(f"{name}.load_state_dict: expected the entries {sorted(own)}, "
                             f"missing {missing}, unknown {unknown}")
        base_lrs = state["base_lrs"]
        if not isinstance(base_lrs, (list, tuple)) or len(base_lrs) != len(self.optimizer.param_groups):
            raise ValueError(f"{name}.load_state_dict: base_lrs must hold one rate per parameter group "
                             f"({len(self.optimizer.param_groups)}), got {base_lrs!r}")
        for i, rate in enumerate(base_lrs):
            check_number(f"{name}.load_state_dict", f"base_lrs[{i}]", rate)
        for k, v in state.items():
            setattr(self, k, list(v) if isinstance(v, list) else v)
        self._apply()


class WarmupCosineLR(LRScheduler):
    """Linear warmup to the peak rate over ``warmup_steps``, then cosine decay to ``min_lr``
    at ``total_steps`` (and ``min_lr`` after it)."""

    def __init__(self, optimizer, warmup_steps, total_steps, min_lr=0.0):
        if warmup_steps < 0 or total_steps <= warmup_steps:
            raise ValueError(
                f"WarmupCosineLR: need 0 <= warmup_steps < total_steps, got {warmup_steps} and {total_steps}"
            )
        check_number("WarmupCosineLR", "min_lr", min_lr)
        self.warmup_steps, self.total_steps, self.min_lr = warmup_steps, total_steps, min_lr
        super().__init__(optimizer)

    def lr_at(self, t, base_lr):
        if t < self.warmup_steps:
            return base_lr * (t + 1) / self.warmup_steps
        progress = min(1.0, (t - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.min_lr + (base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


class StepLR(LRScheduler):
    """Multiply the rate by ``gamma`` every ``step_size`` steps."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        if step_size < 1:
            raise ValueError(f"StepLR: step_size must be a positive int, got {step_size}")
        check_number("StepLR", "gamma", gamma)
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer)

    def lr_at(self, t, base_lr):
        return base_lr * self.gamma ** (t // self.step_size)


class LambdaLR(LRScheduler):
    """The peak rate times ``fn(t)`` (``fn`` is not saved in ``state_dict``: pass it again)."""

    def __init__(self, optimizer, fn):
        if not callable(fn):
            raise TypeError(f"LambdaLR: fn must be callable, got {type(fn).__name__}")
        self.fn = fn
        super().__init__(optimizer)

    def lr_at(self, t, base_lr):
        return base_lr * self.fn(t)


class CosineAnnealingLR(LRScheduler):
    """Cosine from each group's initial rate down to ``eta_min`` over ``T_max`` steps, as
    ``torch.optim.lr_scheduler.CosineAnnealingLR``::

        lr(t) = eta_min + (initial_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2

    Past ``T_max`` the cosine goes on, so the rate climbs back up (PyTorch does the same).
    PyTorch computes the rate recursively from the previous one; this closed form gives the same
    numbers (to rounding) when nothing else changes the rate.
    """

    def __init__(self, optimizer, T_max, eta_min=0.0):
        if isinstance(T_max, bool) or not isinstance(T_max, int) or T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be a positive int, got {T_max!r}")
        check_number("CosineAnnealingLR", "eta_min", eta_min)
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer)

    def lr_at(self, t, base_lr):
        """``eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2``."""
        return self.eta_min + (base_lr - self.eta_min) * 0.5 * (1.0 + math.cos(math.pi * t / self.T_max))


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin), PyTorch's ``torch.optim.lr_scheduler.OneCycleLR``.

    Each group starts at ``initial_lr = max_lr / div_factor``, rises to ``max_lr`` over the first
    ``pct_start * total_steps`` steps, then falls to ``min_lr = initial_lr / final_div_factor`` at
    step ``total_steps - 1``. Within a phase from rate a to rate b, at fraction u of the phase::

        cos:    lr = b + (a - b) * (1 + cos(pi * u)) / 2
        linear: lr = a + (b - a) * u

    Phase ends (as PyTorch): two phases end at steps ``pct_start * total_steps - 1`` and
    ``total_steps - 1``; ``three_phase=True`` goes up, back down to ``initial_lr`` (ending at
    ``2 * pct_start * total_steps - 2``) and then to ``min_lr``.

    With ``cycle_momentum`` (the default, as in PyTorch) the momentum moves the opposite way,
    between ``max_momentum`` (at the low rates) and ``base_momentum`` (at ``max_lr``): SGD's and
    RMSprop's ``momentum``, or Adam's and AdamW's ``betas[0]``. Note that this switches momentum on
    for an SGD made without it, as in PyTorch; pass ``cycle_momentum=False`` to keep it off.

    ``max_lr``, ``base_momentum`` and ``max_momentum`` are one number or one per parameter group.
    Give ``total_steps``, or ``epochs`` and ``steps_per_epoch``. Stepping past ``total_steps``
    raises ``ValueError``. The rates and momenta live in each parameter group (``initial_lr``,
    ``max_lr``, ``min_lr``, ``max_momentum``, ``base_momentum``), so resuming needs the optimizer's
    ``state_dict`` as well as this one's.
    """

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None, pct_start=0.3,
                 anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85, max_momentum=0.95,
                 div_factor=25.0, final_div_factor=1e4, three_phase=False):
        name = "OneCycleLR"
        if total_steps is not None:
            if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps <= 0:
                raise ValueError(f"{name}: total_steps must be a positive int, got {total_steps!r}")
        elif epochs is not None and steps_per_epoch is not None:
            for arg, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
                if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                    raise ValueError(f"{name}: {arg} must be a positive int, got {value!r}")
            total_steps = epochs * steps_per_epoch
        else:
            raise ValueError(f"{name}: give total_steps, or epochs and steps_per_epoch")
        check_number(name, "pct_start", pct_start, high=1.0, high_inclusive=True)
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"{name}: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        check_number(name, "div_factor", div_factor)
        check_number(name, "final_div_factor", final_div_factor)
        if div_factor == 0 or final_div_factor == 0:
            raise ValueError(f"{name}: div_factor and final_div_factor must be > 0, "
                             f"got {div_factor!r} and {final_div_factor!r}")
        groups = optimizer.param_groups
        max_lrs = self._per_group(name, "max_lr", max_lr, len(groups))
        self.total_steps, self.anneal_strategy = total_steps, anneal_strategy
        self.cycle_momentum, self.three_phase = bool(cycle_momentum), bool(three_phase)
        up = float(pct_start * total_steps) - 1
        if three_phase:
            # (end step, start rate, end rate, start momentum, end momentum), names of group entries
            self.phases = [[up, "initial_lr", "max_lr", "max_momentum", "base_momentum"],
                           [float(2 * pct_start * total_steps) - 2, "max_lr", "initial_lr", "base_momentum",
                            "max_momentum"],
                           [total_steps - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"]]
        else:
            self.phases = [[up, "initial_lr", "max_lr", "max_momentum", "base_momentum"],
                           [total_steps - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"]]
        for group, top in zip(groups, max_lrs):
            group["initial_lr"] = top / div_factor
            group["max_lr"] = top
            group["min_lr"] = group["initial_lr"] / final_div_factor
        self.use_beta1 = False
        if self.cycle_momentum:
            defaults = optimizer.defaults
            if "momentum" not in defaults and "betas" not in defaults:
                raise ValueError(f"{name}: cycle_momentum=True needs an optimizer with momentum or betas "
                                 f"({type(optimizer).__name__} has neither); pass cycle_momentum=False")
            self.use_beta1 = "betas" in defaults
            tops = self._per_group(name, "max_momentum", max_momentum, len(groups))
            bases = self._per_group(name, "base_momentum", base_momentum, len(groups))
            for group, top, base in zip(groups, tops, bases):
                group["max_momentum"], group["base_momentum"] = top, base
                self._set_momentum(group, top)
        super().__init__(optimizer)

    @staticmethod
    def _per_group(owner, arg, value, n):
        values = list(value) if isinstance(value, (list, tuple)) else [value] * n
        if len(values) != n:
            raise ValueError(f"{owner}: {arg} must be one number or one per parameter group ({n}), "
                             f"got {len(values)} values")
        for i, v in enumerate(values):
            check_number(owner, f"{arg}[{i}]" if isinstance(value, (list, tuple)) else arg, v)
        return values

    def _set_momentum(self, group, value):
        if self.use_beta1:
            group["betas"] = (value, *group["betas"][1:])
        else:
            group["momentum"] = value

    def _anneal(self, start, end, u):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * u) + 1)
        return (end - start) * u + start

    def _apply(self):
        t = self.last_epoch
        if t > self.total_steps:
            raise ValueError(f"OneCycleLR: tried to step {t} times; the specified number of total steps "
                             f"is {self.total_steps}")
        for group in self.optimizer.param_groups:
            start = 0
            for i, (end, lr_a, lr_b, mom_a, mom_b) in enumerate(self.phases):
                if t <= end or i == len(self.phases) - 1:
                    u = (t - start) / (end - start)
                    group["lr"] = self._anneal(group[lr_a], group[lr_b], u)
                    if self.cycle_momentum:
                        self._set_momentum(group, self._anneal(group[mom_a], group[mom_b], u))
                    break
                start = end
