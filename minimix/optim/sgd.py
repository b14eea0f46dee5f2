"""Stochastic gradient descent with momentum (PyTorch's exact update).

With gradient g, weight decay wd, momentum mu, dampening tau and learning rate lr:

    d = g + wd * p                          (L2 weight decay, folded into the gradient)
    b = d                     on the first step
    b = mu * b + (1 - tau) * d              afterwards (the momentum buffer)
    d = d + mu * b   if nesterov,  else  d = b
    p = p - lr * d
"""
import math

import numpy as np

from .optimizer import Optimizer, check_number


class SGD(Optimizer):
    """SGD; ``SGD(params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False)``, as ``torch.optim.SGD``.

    ``dampening`` scales the gradient's share of the momentum buffer after the first step
    (the buffer starts as the first gradient, undamped, as in PyTorch). Nesterov momentum needs
    ``momentum > 0`` and ``dampening == 0`` (PyTorch raises the same ``ValueError``).
    """

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov)
        super().__init__(params, defaults)

    def check_hyperparameters(self, group, owner):
        """Refuse NaN, inf, negative rates and nesterov without momentum or with dampening."""
        for name in ("lr", "momentum", "weight_decay"):
            check_number(owner, name, group[name])
        check_number(owner, "dampening", group["dampening"], low=-math.inf)
        if not isinstance(group["nesterov"], bool):
            raise ValueError(f"{owner}: nesterov must be True or False, got {group['nesterov']!r}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"{owner}: Nesterov momentum requires a momentum and zero dampening "
                             f"(nesterov needs momentum > 0 and dampening 0), got momentum "
                             f"{group['momentum']}, dampening {group['dampening']}")

    def update(self, p, grad, state, group):
        """One SGD step for ``p`` (in place; see the module docstring for the formulas)."""
        lr, mu, wd, tau = group["lr"], group["momentum"], group["weight_decay"], group["dampening"]
        work = self.scratch(p)
        d = grad  # never modified in place: it is p.grad
        if wd:  # d = g + wd * p
            d = self.scratch(p, slot=1)
            np.multiply(p.data, wd, out=d)
            d += grad
        if mu:
            b = state.get("momentum_buffer")
            if b is None:
                b = state["momentum_buffer"] = d.copy()
            else:  # b = mu * b + (1 - tau) * d
                b *= mu
                np.multiply(d, 1 - tau, out=work)
                b += work
            if group["nesterov"]:  # d = d + mu * b
                np.multiply(b, mu, out=work)
                work += d
                d = work
            else:
                d = b
        np.multiply(d, lr, out=work)
        p.data -= work
