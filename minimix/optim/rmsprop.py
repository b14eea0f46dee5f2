"""RMSprop (Tieleman & Hinton), PyTorch's exact update. MixNet was trained with RMSProp.

With gradient g, smoothing alpha, eps, momentum mu, learning rate lr, weight decay wd:

    g = g + wd * p                              (L2 weight decay)
    s = alpha * s + (1 - alpha) * g^2           (running mean of squared gradients)
    centered:  a = alpha * a + (1 - alpha) * g;  r = sqrt(s - a^2) + eps
    otherwise: r = sqrt(s) + eps
    mu > 0:    b = mu * b + g / r;  p = p - lr * b
    otherwise: p = p - lr * g / r

(TensorFlow's RMSProp, used in the paper, puts eps inside the sqrt and starts s
at 1; this is PyTorch's variant, starting s at 0.)
"""
import numpy as np

from .optimizer import Optimizer, check_number


class RMSprop(Optimizer):
    """RMSprop; ``RMSprop(params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False)``."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum, centered=centered)
        super().__init__(params, defaults)

    def check_hyperparameters(self, group, owner):
        """Refuse NaN, inf and out-of-range values (``alpha`` in [0, 1])."""
        for name in ("lr", "eps", "weight_decay", "momentum"):
            check_number(owner, name, group[name])
        check_number(owner, "alpha", group["alpha"], high=1.0, high_inclusive=True)
        if not isinstance(group["centered"], bool):
            raise ValueError(f"{owner}: centered must be True or False, got {group['centered']!r}")

    def update(self, p, grad, state, group):
        """One RMSprop step for ``p`` (in place; see the module docstring for the formulas)."""
        lr, alpha, eps, wd, mu = group["lr"], group["alpha"], group["eps"], group["weight_decay"], group["momentum"]
        if not state:
            state.update(step=0, square_avg=np.zeros_like(p.data))
            if mu > 0:
                state["momentum_buffer"] = np.zeros_like(p.data)
            if group["centered"]:
                state["grad_avg"] = np.zeros_like(p.data)
        state["step"] += 1
        s = state["square_avg"]
        work = self.scratch(p)

        if wd:
            g = self.scratch(p, slot=1)
            np.multiply(p.data, wd, out=g)
            g += grad
            grad = g
        s *= alpha
        np.multiply(grad, grad, out=work)
        work *= 1 - alpha
        s += work

        if group["centered"]:  # r = sqrt(s - a^2) + eps
            a = state["grad_avg"]
            a *= alpha
            np.multiply(grad, 1 - alpha, out=work)
            a += work
            np.multiply(a, a, out=work)
            np.subtract(s, work, out=work)
            np.sqrt(work, out=work)
        else:  # r = sqrt(s) + eps
            np.sqrt(s, out=work)
        work += eps

        np.divide(grad, work, out=work)  # work = g / r
        if mu > 0:
            b = state["momentum_buffer"]
            b *= mu
            b += work
            np.multiply(b, lr, out=work)
        else:
            work *= lr
        p.data -= work
