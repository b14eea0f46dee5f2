"""``Module``: a container of parameters, buffers and sub-modules, as in PyTorch.

Parameters and sub-modules are found by looking at the module's attributes (in
the order they were set), including lists/tuples of modules, so names come out
as in PyTorch: ``blocks.0.conv.weight``. Buffers (non-learned state such as
BatchNorm's running mean) are registered with ``register_buffer``.

Forward hooks let code outside a model watch it run without editing its
``forward``: ``register_forward_hook`` / ``register_forward_pre_hook`` return a
``RemovableHandle``; ``models.summary`` records output shapes with them and
``viz`` follows receptive fields through them.
"""
import itertools
from collections import OrderedDict

import numpy as np

from ..tensor import Tensor


class StateDictError(KeyError, ValueError):
    """``load_state_dict`` found missing, unexpected or mis-shaped entries; the message lists them all."""

    def __str__(self):  # KeyError would quote the message and show its newlines as \n
        return str(self.args[0])


class Parameter(Tensor):
    """A Tensor that a Module owns and an optimizer updates (requires_grad=True)."""

    __slots__ = ()

    def __init__(self, data, requires_grad: bool = True):
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter(" + super().__repr__()[len("Tensor("):]


class RemovableHandle:
    """What ``register_forward_hook`` and ``register_forward_pre_hook`` return.

    ``handle.remove()`` unregisters the hook (calling it again does nothing). A
    handle is also a context manager, ``with model.register_forward_hook(h): model(x)``,
    that removes the hook when the block ends, even on an exception
    (as ``torch.utils.hooks.RemovableHandle``).
    """

    _ids = itertools.count()  # one id per hook ever registered: the key in the module's hook dict

    def __init__(self, hooks: OrderedDict):
        self.hooks = hooks
        self.id = next(RemovableHandle._ids)

    def remove(self):
        self.hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.remove()


class Module:
    """Base class of layers and models: subclass it, set attributes in ``__init__``,
    and write ``forward``. Calling the module calls ``forward`` (and its hooks, if any)."""

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_buffer_names", [])
        # id -> hook, in registration order; neither parameters, buffers nor children
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())

    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def __call__(self, *args, **kwargs):
        if self._forward_pre_hooks or self._forward_hooks:
            return self._call_with_hooks(args, kwargs)
        return self.forward(*args, **kwargs)

    def _call_with_hooks(self, args, kwargs):
        for hook in list(self._forward_pre_hooks.values()):  # a copy: a hook may remove itself
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, output)
            if result is not None:
                output = result
        return output

    # -- hooks -----------------------------------------------------------------------
    def register_forward_pre_hook(self, hook) -> RemovableHandle:
        """Call ``hook(module, args)`` before every ``forward``; returns a ``RemovableHandle``.

        ``args`` is the tuple of positional arguments (keyword arguments go to
        ``forward`` unchanged). A hook that returns something other than None
        replaces the arguments (a non-tuple becomes a 1-tuple). Hooks run in the
        order they were registered. Use: inspect or adapt a layer's input.
        """
        self._check_init()
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    def register_forward_hook(self, hook) -> RemovableHandle:
        """Call ``hook(module, args, output)`` after every ``forward``; returns a ``RemovableHandle``.

        The way to observe activations inside a model whose ``forward`` you do not
        write: ``summary`` records each layer's output shape, the receptive-field
        tools follow each convolution's input and output. A hook that returns
        something other than None replaces the output. Hooks run in the order
        they were registered.
        """
        self._check_init()
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    # -- discovery ---------------------------------------------------------------
    def _check_init(self):
        if "_buffer_names" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() first")

    def named_children(self):
        self._check_init()
        for name, value in self.__dict__.items():
            if isinstance(value, Module):
                yield name, value
            elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Module) for v in value):
                for i, child in enumerate(value):
                    yield f"{name}.{i}", child

    def children(self):
        return (m for _, m in self.named_children())

    def named_modules(self, prefix=""):
        """This module and every descendant, depth first, with dotted names."""
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            yield name, module
            kids = [(f"{name}.{n}" if name else n, m) for n, m in module.named_children()]
            stack.extend(reversed(kids))

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_parameters(self, prefix=""):
        seen = set()
        for mname, module in self.named_modules(prefix):
            for pname, value in module.__dict__.items():
                if isinstance(value, Parameter) and id(value) not in seen:
                    seen.add(id(value))
                    yield (f"{mname}.{pname}" if mname else pname), value
                elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Parameter) for v in value):
                    for i, p in enumerate(value):
                        if id(p) not in seen:
                            seen.add(id(p))
                            yield (f"{mname}.{pname}.{i}" if mname else f"{pname}.{i}"), p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def register_buffer(self, name: str, array: np.ndarray):
        """Keep ``array`` as state that is saved and loaded but not trained."""
        self._check_init()
        if name not in self._buffer_names:
            self._buffer_names.append(name)
        object.__setattr__(self, name, array)

    def named_buffers(self):
        for mname, module in self.named_modules():
            for bname in module._buffer_names:
                yield (f"{mname}.{bname}" if mname else bname), getattr(module, bname)

    # -- modes and gradients -------------------------------------------------------
    def train(self, mode: bool = True):
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- state ---------------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Parameters then buffers, by dotted name, as NumPy arrays (copies)."""
        state = OrderedDict((n, p.data.copy()) for n, p in self.named_parameters())
        state.update((n, np.array(b, copy=True)) for n, b in self.named_buffers())
        return state

    def load_state_dict(self, state: dict, strict: bool = True):
        """Copy arrays into parameters and buffers by name (in place, cast to each target's dtype).

        Every problem is reported at once in one ``StateDictError``: missing keys,
        unexpected keys (both only when ``strict``), and shape mismatches (with both
        shapes). Nothing is loaded unless everything fits. A module's ``_optional_buffers``
        (BatchNorm's ``num_batches_tracked``) may be absent: they keep their value, as in PyTorch.
        """
        targets = dict(self.named_parameters())
        targets.update(self.named_buffers())
        optional = {f"{m}.{b}" if m else b
                    for m, mod in self.named_modules() for b in getattr(mod, "_optional_buffers", ())}
        missing = [k for k in targets if k not in state and k not in optional]
        unexpected = [k for k in state if k not in targets]
        wrong = [
            f"{k}: checkpoint {tuple(np.shape(state[k]))} vs model {tuple(np.shape(t))}"
            for k, t in targets.items()
            if k in state and tuple(np.shape(state[k])) != tuple(np.shape(t))
        ]
        problems = []
        if wrong:
            problems.append("shape mismatch:\n  " + "\n  ".join(wrong))
        if strict and missing:
            problems.append("missing keys:\n  " + "\n  ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys:\n  " + "\n  ".join(unexpected))
        if problems:
            raise StateDictError(f"load_state_dict into {type(self).__name__} failed:\n" + "\n".join(problems))
        for k, target in targets.items():
            if k in state:
                # In place, so anything holding the array (an optimizer, a view) sees the new values.
                np.copyto(target.data if isinstance(target, Tensor) else target, np.asarray(state[k]),
                          casting="unsafe")
        return self

    # -- display ---------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        kids = list(self.named_children())
        if not kids:
            return lines[0] + ")"
        for name, child in kids:
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)"
