"""Adam (Kingma & Ba) with L2 weight decay, PyTorch's exact update (``torch.optim.Adam``).

At step t with gradient g, betas (b1, b2), eps, learning rate lr, weight decay wd:

    g = g + wd * p                            (L2 weight decay: folded into the gradient, as SGD does)
    m = b1 * m + (1 - b1) * g                 (first-moment estimate)
    v = b2 * v + (1 - b2) * g^2               (second-moment estimate)
    amsgrad: v_max = max(v_max, v), used in place of v below
    p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

The factors 1 - b^t undo the bias of m and v towards their zero start. Because the decay goes
through m and v, Adam rescales it like any gradient; :class:`~minimix.optim.AdamW` applies it to
the weights directly instead (``decoupled_weight_decay``) and is otherwise this same class.

State per parameter (as PyTorch's): ``step``, ``exp_avg`` (m), ``exp_avg_sq`` (v) and, with
amsgrad, ``max_exp_avg_sq``.
"""
import math

import numpy as np

from .optimizer import Optimizer, check_number


class Adam(Optimizer):
    """Adam; ``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False)``.

    ``weight_decay`` adds ``wd * p`` to the gradient (L2 regularisation), exactly as
    ``torch.optim.Adam``; for decoupled decay use :class:`~minimix.optim.AdamW`. PyTorch's
    ``foreach``, ``maximize``, ``capturable``, ``differentiable`` and ``fused`` switches do not exist.
    """

    decoupled_weight_decay = False  # AdamW sets True: decay the weights, not the gradient

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad))

    def check_hyperparameters(self, group, owner):
        """Refuse NaN, inf and out-of-range values; ``betas`` must be a pair in [0, 1)."""
        for name in ("lr", "eps", "weight_decay"):
            check_number(owner, name, group[name])
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{owner}: betas must be a pair (beta1, beta2), got {betas!r}")
        check_number(owner, "betas[0]", betas[0], high=1.0)
        check_number(owner, "betas[1]", betas[1], high=1.0)
        group["betas"] = tuple(betas)
        group.setdefault("amsgrad", False)  # a group saved before amsgrad existed
        if not isinstance(group["amsgrad"], bool):
            raise ValueError(f"{owner}: amsgrad must be True or False, got {group['amsgrad']!r}")

    def update(self, p, grad, state, group):
        """One Adam step for ``p`` (in place; see the module docstring for the formulas)."""
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if not state:
            state.update(step=0, exp_avg=np.zeros_like(p.data), exp_avg_sq=np.zeros_like(p.data))
        if group["amsgrad"] and "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = np.zeros_like(p.data)
        state["step"] += 1
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        work = self.scratch(p)

        if wd and self.decoupled_weight_decay:
            p.data *= 1 - lr * wd
        elif wd:  # g = g + wd * p (never in place: grad is p.grad)
            g = self.scratch(p, slot=1)
            np.multiply(p.data, wd, out=g)
            g += grad
            grad = g
        np.multiply(grad, 1 - b1, out=work)
        m *= b1
        m += work
        np.multiply(grad, grad, out=work)
        work *= 1 - b2
        v *= b2
        v += work
        if group["amsgrad"]:
            v = np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])

        np.sqrt(v, out=work)  # work = denominator sqrt(v_hat) + eps
        work /= math.sqrt(1 - b2**t)
        work += eps
        np.divide(m, work, out=work)
        work *= lr / (1 - b1**t)
        p.data -= work
