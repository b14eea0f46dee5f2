"""AdamW: Adam with decoupled weight decay (Loshchilov & Hutter), PyTorch's exact update.

At step t with gradient g, betas (b1, b2), eps, learning rate lr, weight decay wd:

    p = p * (1 - lr * wd)                     (decay applied to the weights, not the gradient)
    m = b1 * m + (1 - b1) * g                 (first-moment estimate)
    v = b2 * v + (1 - b2) * g^2               (second-moment estimate)
    p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

The factors 1 - b^t undo the bias of m and v towards their zero start. Everything but the
first line is :class:`~minimix.optim.Adam`'s update, which this class reuses.
"""
from .adam import Adam


class AdamW(Adam):
    """AdamW; ``AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False)``.

    The same as :class:`~minimix.optim.Adam` except that the weight decay shrinks the weights
    directly (``p *= 1 - lr * wd``) instead of being added to the gradient, as ``torch.optim.AdamW``.
    """

    decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
