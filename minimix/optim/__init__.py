"""Optimizers and learning-rate schedules (``torch.optim`` spelling and update math).

A training loop with SGD and a schedule, stepped once per batch::

    opt = minimix.optim.SGD(weight_decay_groups(model, 5e-4), lr=0.1, momentum=0.9, nesterov=True)
    sched = minimix.optim.lr_scheduler.WarmupCosineLR(opt, warmup_steps=500, total_steps=50_000)
    for x, y in loader:
        loss = F.cross_entropy(model(Tensor(x)), y)
        opt.zero_grad(); loss.backward(); opt.step(); sched.step()
"""
from . import lr_scheduler
from .adam import Adam
from .adamw import AdamW
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD


def weight_decay_groups(model, weight_decay: float) -> list:
    """Two parameter groups: weights with ndim > 1 (conv, linear) decay by ``weight_decay``;
    the rest (biases, BatchNorm scales and shifts) get none, as is usual for CNNs."""
    params = model.parameters()
    return [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]


__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "lr_scheduler", "weight_decay_groups"]
