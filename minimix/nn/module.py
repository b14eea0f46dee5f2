"""``Module``: a container of parameters, buffers and sub-modules, as in PyTorch.

Parameters and sub-modules are found by looking at the module's attributes (in
the order they were set), so names come out as in PyTorch: ``blocks.0.conv.weight``
for a ``ModuleList`` ``blocks``. A plain Python list or tuple of modules or
parameters registers nothing, as in PyTorch (its parameters would silently be
left out of ``parameters()``, ``state_dict()`` and so of the optimizer), and
assigning one warns once naming ``ModuleList``/``ParameterList``. Buffers
(non-learned state such as BatchNorm's running mean) are registered with
``register_buffer``.

Forward hooks let code outside a model watch it run without editing its
``forward``: ``register_forward_hook`` / ``register_forward_pre_hook`` return a
``RemovableHandle``; ``models.summary`` records output shapes with them and
``viz`` follows receptive fields through them.
"""
import itertools
import warnings
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
        """Unregister the hook (a second call does nothing)."""
        self.hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.remove()


_WARNED_PLAIN_LISTS = set()  # (class, attribute) pairs already warned about


def _warn_plain_list(module, name, value):
    """Warn (once per class and attribute) that a list/tuple of modules or parameters registers nothing."""
    has_module = any(isinstance(v, Module) for v in value)
    if not has_module and not any(isinstance(v, Parameter) for v in value):
        return
    key = (type(module), name)
    if key in _WARNED_PLAIN_LISTS:
        return
    _WARNED_PLAIN_LISTS.add(key)
    kind, what = ("ModuleList", "modules") if has_module else ("ParameterList", "parameters")
    warnings.warn(
        f"{type(module).__name__}.{name} is a plain {type(value).__name__} of {what}: as in PyTorch it "
        f"registers nothing, so its parameters are not in parameters(), state_dict() or an optimizer. "
        f"Use nn.{kind}([...]) to register them.", UserWarning, stacklevel=3)


class Module:
    """Base class of layers and models: subclass it, set attributes in ``__init__``,
    and write ``forward``. Calling the module calls ``forward`` (and its hooks, if any)."""

    def __setattr__(self, name, value):
        if isinstance(value, (list, tuple)) and value:
            _warn_plain_list(self, name, value)
        object.__setattr__(self, name, value)

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_buffer_names", [])
        # id -> hook, in registration order; neither parameters, buffers nor children
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())

    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        """The computation: subclasses define it; call the module (``m(x)``), not ``forward``, so hooks run."""
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
        """``(name, module)`` for each direct sub-module, in the order the attributes were set."""
        self._check_init()
        for name, value in self.__dict__.items():
            if isinstance(value, Module):
                yield name, value

    def children(self):
        """The direct sub-modules (see ``named_children``)."""
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
        """This module and every descendant, depth first (see ``named_modules``)."""
        return (m for _, m in self.named_modules())

    def _own_parameters(self):
        """``(name, parameter)`` for the parameters this module holds itself (not its children's)."""
        for name, value in self.__dict__.items():
            if isinstance(value, Parameter):
                yield name, value

    def named_parameters(self, prefix=""):
        """``(dotted name, parameter)`` for every parameter, each module's own before its children's
        (depth first, as PyTorch); a parameter held twice (tied weights) is listed once."""
        seen = set()
        for mname, module in self.named_modules(prefix):
            for pname, value in module._own_parameters():
                if id(value) not in seen:
                    seen.add(id(value))
                    yield (f"{mname}.{pname}" if mname else pname), value

    def parameters(self):
        """Every parameter, in ``named_parameters`` order (a list; PyTorch returns an iterator)."""
        return [p for _, p in self.named_parameters()]

    def register_buffer(self, name: str, array: np.ndarray):
        """Keep ``array`` as state that is saved and loaded but not trained."""
        self._check_init()
        if name not in self._buffer_names:
            self._buffer_names.append(name)
        object.__setattr__(self, name, array)

    def named_buffers(self):
        """``(dotted name, array)`` for every buffer registered with ``register_buffer``."""
        for mname, module in self.named_modules():
            for bname in module._buffer_names:
                yield (f"{mname}.{bname}" if mname else bname), getattr(module, bname)

    # -- modes and gradients -------------------------------------------------------
    def train(self, mode: bool = True):
        """Set training mode (``mode=True``) or evaluation mode on this module and all below; returns self."""
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        """Evaluation mode (``train(False)``): Dropout is off, BatchNorm uses its running statistics."""
        return self.train(False)

    def zero_grad(self):
        """Forget every parameter's gradient (``p.grad = None``)."""
        for p in self.parameters():
            p.grad = None

    def requires_grad_(self, requires_grad: bool = True):
        """Set ``requires_grad`` on every parameter (``False`` freezes them); returns self."""
        if not isinstance(requires_grad, bool):
            raise TypeError(f"{type(self).__name__}.requires_grad_: requires_grad must be True or False, "
                            f"got {requires_grad!r}")
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def apply(self, fn):
        """Call ``fn(module)`` on every sub-module (children first, recursively) and then on this
        module, as ``torch.nn.Module.apply`` (typical use: initialising weights); returns self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # -- dtype -----------------------------------------------------------------------
    def to(self, *args, **kwargs):
        """Convert floating parameters, their gradients and floating buffers to a dtype, in place.

        ``to(dtype)``, ``to(dtype=...)``, ``to("cpu")`` or ``to("cpu", dtype)`` (PyTorch's forms;
        ``dtype`` is anything ``np.dtype`` accepts, e.g. ``np.float64``). The parameter objects stay
        the same (their ``.data`` is replaced), so references to them, an optimizer's included,
        remain valid; build the optimizer after converting, as its state keeps the old dtype.
        Integer buffers (BatchNorm's ``num_batches_tracked``) are left alone. minimix runs on the
        CPU only: the device ``"cpu"`` is accepted and changes nothing, any other is refused.
        Returns self.
        """
        name = f"{type(self).__name__}.to"
        allowed = {"device", "dtype", "non_blocking", "copy"}
        unknown = sorted(set(kwargs) - allowed)
        if unknown:
            raise TypeError(f"{name}: unexpected keyword arguments {unknown}; expected device= or dtype=")
        if len(args) > 2:
            raise TypeError(f"{name}: expected at most (device, dtype), got {len(args)} positional arguments")
        device, dtype = kwargs.get("device"), kwargs.get("dtype")
        for arg in args:
            if _is_device(arg):
                device = arg
            else:
                dtype = arg
        if device is not None:
            _check_device(name, device)
        if dtype is None:
            return self
        try:
            target = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"{name}: expected a dtype (np.float32, np.float64, ...) or a device 'cpu', "
                            f"got {dtype!r}") from None
        if target.kind != "f":
            raise TypeError(f"{name}: only floating dtypes are allowed (as in PyTorch), got {target}")
        for p in self.parameters():
            if p.data.dtype.kind == "f":
                p.data = p.data.astype(target, copy=False)
                if p.grad is not None:
                    p.grad = p.grad.astype(target, copy=False)
        for module in self.modules():
            for bname in module._buffer_names:
                buffer = getattr(module, bname)
                if isinstance(buffer, np.ndarray) and buffer.dtype.kind == "f":
                    object.__setattr__(module, bname, buffer.astype(target, copy=False))
        return self

    def double(self):
        """``to(np.float64)``: floating parameters, gradients and buffers become float64, in place."""
        return self.to(np.float64)

    def float(self):
        """``to(np.float32)``: floating parameters, gradients and buffers become float32, in place."""
        return self.to(np.float32)

    def num_parameters(self) -> int:
        """The number of parameter elements (PyTorch: ``sum(p.numel() for p in m.parameters())``)."""
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
        """The text inside ``Name(...)`` in ``repr`` (a layer's settings); empty by default."""
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


def _is_device(value) -> bool:
    """Whether ``value`` names a device ("cpu", "cuda:0", a torch.device) rather than a dtype."""
    if type(value).__name__ == "device":  # torch.device, without importing torch
        return True
    if not isinstance(value, str):
        return False
    return value.split(":")[0] in {"cpu", "cuda", "mps", "xpu", "meta", "hip", "xla", "ipu", "npu", "hpu"}


def _check_device(owner, device):
    """minimix computes on the CPU: accept "cpu" (and "cpu:0"), refuse anything else by name."""
    text = str(device)
    if text.split(":")[0] != "cpu":
        raise ValueError(f"{owner}: minimix runs on the CPU only; device must be 'cpu', got {text!r}")
