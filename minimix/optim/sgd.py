"""Stochastic gradient descent with momentum (PyTorch's exact update).

With gradient g, weight decay wd, momentum mu, dampening tau and learning rate lr:

    d = g + wd * p                          (L2 weight decay, folded into the gradient)
    b = d                     on the first step
    b = mu * b + (1 - tau) * d              afterwards (the momentum buffer)
    d = d + mu * b   if nesterov,  else  d = b
    p = p - lr * d
"""
import numpy as np

from .optimizer import Optimizer


class SGD(Optimizer):
    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(
                f"SGD: lr, momentum and weight_decay must be >= 0, got {lr}, {momentum}, {weight_decay}"
            )
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                f"SGD: nesterov needs momentum > 0 and dampening 0, got momentum {momentum}, dampening {dampening}"
            )
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov)
        super().__init__(params, defaults)

    def update(self, p, grad, state, group):
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
