"""Learning-rate schedules, stepped once per optimizer step (or per epoch, your choice).

Each schedule is a closed-form function of the step counter t and each group's
peak rate ``initial_lr``:

    WarmupCosineLR  lr(t) = peak * (t + 1) / warmup                          for t < warmup
                    lr(t) = min_lr + (peak - min_lr) * (1 + cos(pi * u)) / 2  after, u = (t - warmup) / (total - warmup)
    StepLR          lr(t) = peak * gamma ** (t // step_size)
    LambdaLR        lr(t) = peak * fn(t)

As in PyTorch, constructing a scheduler applies lr(0) at once and records
``group["initial_lr"]``; ``step()`` advances t and writes lr(t) into every
group. Being closed-form, a schedule resumed from ``state_dict()`` continues
exactly where it stopped.
"""
import math

from .optimizer import check_number


class LRScheduler:
    def __init__(self, optimizer):
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = 0
        self._apply()

    def lr_at(self, t: int, base_lr: float) -> float:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement lr_at()")

    def _apply(self):
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = self.lr_at(self.last_epoch, base)

    def step(self):
        """Advance one step and set each group's learning rate."""
        self.last_epoch += 1
        self._apply()

    def get_last_lr(self) -> list:
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
