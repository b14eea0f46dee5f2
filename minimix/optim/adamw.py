"""AdamW: Adam with decoupled weight decay (Loshchilov & Hutter), PyTorch's exact update.

At step t with gradient g, betas (b1, b2), eps, learning rate lr, weight decay wd:

    p = p * (1 - lr * wd)                     (decay applied to the weights, not the gradient)
    m = b1 * m + (1 - b1) * g                 (first-moment estimate)
    v = b2 * v + (1 - b2) * g^2               (second-moment estimate)
    p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

The factors 1 - b^t undo the bias of m and v towards their zero start.
"""
import math

import numpy as np

from .optimizer import Optimizer, check_number


class AdamW(Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def check_hyperparameters(self, group, owner):
        for name in ("lr", "eps", "weight_decay"):
            check_number(owner, name, group[name])
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{owner}: betas must be a pair (beta1, beta2), got {betas!r}")
        check_number(owner, "betas[0]", betas[0], high=1.0)
        check_number(owner, "betas[1]", betas[1], high=1.0)
        group["betas"] = tuple(betas)

    def update(self, p, grad, state, group):
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if not state:
            state.update(step=0, exp_avg=np.zeros_like(p.data), exp_avg_sq=np.zeros_like(p.data))
        state["step"] += 1
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        work = self.scratch(p)

        if wd:
            p.data *= 1 - lr * wd
        np.multiply(grad, 1 - b1, out=work)
        m *= b1
        m += work
        np.multiply(grad, grad, out=work)
        work *= 1 - b2
        v *= b2
        v += work

        np.sqrt(v, out=work)  # work = denominator sqrt(v_hat) + eps
        work /= math.sqrt(1 - b2**t)
        work += eps
        np.divide(m, work, out=work)
        work *= lr / (1 - b1**t)
        p.data -= work
