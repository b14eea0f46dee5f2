"""Watching a model run without changing it.

The receptive-field tools need to see the inputs and outputs of chosen layers
*inside* a model whose ``forward`` they do not know. Forward hooks are made
for this: ``module.register_forward_hook(hook)`` has every call of ``module``
also call ``hook(module, args, output)``, and the returned handle's
``remove()`` takes it off again. ``forward_hooks`` registers several for the
duration of a ``with`` block; a hook can raise ``StopForward`` to end the pass
early once it has seen what it needs.

``model_untouched`` makes such an observation side-effect free: it sets the
train/eval mode asked for, stops parameters from collecting gradients, and
afterwards restores modes, ``requires_grad`` flags, buffers (BatchNorm running
statistics change in train mode) and minimix's random generator (dropout).
"""
import contextlib

import numpy as np

from .. import random as mm_random


class StopForward(Exception):
    """Raised by a hook to end a forward pass early (the rest of the model is not needed)."""


@contextlib.contextmanager
def forward_hooks(hooks):
    """Within the block, calling ``module`` also calls ``hook(module, args, output)``.

    ``hooks``: iterable of ``(module, hook)`` pairs; a module may appear twice
    (its hooks then run in the order given). Each pair is one
    ``module.register_forward_hook(hook)``; the handles are removed when the
    block ends, also on an exception.
    """
    with contextlib.ExitStack() as handles:
        for module, hook in hooks:
            handles.enter_context(module.register_forward_hook(hook))
        yield


@contextlib.contextmanager
def model_untouched(model, training: bool = False):
    """Run the block with ``model`` in train (``training=True``) or eval mode, leaving no trace.

    Parameters get ``requires_grad=False`` inside the block, so a backward pass
    fills only the input's ``.grad`` and never the model's.
    """
    modes = [(m, m.training) for m in model.modules()]
    params = [(p, p.requires_grad) for p in model.parameters()]
    modules = dict(model.named_modules())
    buffers = []
    for name, value in model.named_buffers():
        owner, _, attr = name.rpartition(".")
        buffers.append((modules[owner], attr, np.array(value, copy=True)))
    rng_state = mm_random.get_state()
    try:
        model.train(training)
        for p, _ in params:
            p.requires_grad = False
        yield model
    finally:
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
        for p, flag in params:
            p.requires_grad = flag
        for module, attr, value in buffers:
            module.register_buffer(attr, value)
        mm_random.set_state(rng_state)


def find_module(model, name: str):
    """The sub-module called ``name`` (dotted, as in ``named_modules``); a ValueError lists the names."""
    modules = dict(model.named_modules())
    if name and name in modules:
        return modules[name]
    available = ", ".join(n for n in modules if n)
    raise ValueError(
        f"layer {name!r} not found in {type(model).__name__}; available layers are: {available}"
    )
