"""Two paths through one library: the reference code students read, and fast implementations that plug in.

Every op has a **reference** implementation: the plain NumPy forward/backward in ``minimix.ops``
and ``minimix.nn`` (``MixConv2d.forward`` reads split -> depthwise conv per group -> concatenate,
``BatchNormAct2d.forward`` reads batch norm -> activation). Some ops also have **fast**
implementations in ``minimix.fast`` (Numba kernels, fused ops, in-place variants). This module is
the one place that lists them, says what each replaces, and chooses between the paths::

    >>> import minimix
    >>> minimix.backends.print_table()          # every implementation and what it replaces

    MINIMIX_BACKEND=reference python train.py   # the whole process on the NumPy path
    with minimix.use_backend("reference"):      # a block of code on the NumPy path
        loss = model(x).sum()
    with minimix.use_backend(conv2d="naive"):   # one op pinned to one implementation

The default path is "fast": an op runs a fast implementation when one is registered for it and
its dtype, its dependencies import (Numba), and it accepts the call (returns something other than
``NotImplemented``: e.g. the Numba depthwise kernels take only depthwise convolutions, and a fused
module steps aside while a forward hook watches one of its parts); otherwise the reference runs.
The fast implementations are tested against the reference ones (``tests/test_backends.py``); the
reference path imports no Numba at all.

How an op asks (the only wiring in ``ops``/``nn``)::

    @fast_path("batch_norm_act")                # a module's reference forward (or an op's function)
    def forward(self, x): ...

    for kernels in implementations("conv2d", x.dtype): ...   # conv2d choosing its kernels
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import os

import numpy as np

PATHS = ("fast", "reference")
FLOATS = ("float32", "float64")  # the dtypes minimix computes in (minimix.tensor's docstring)


@dataclasses.dataclass(frozen=True)
class Implementation:
    """One implementation of an op: where it lives and what it stands in for."""

    op: str         # the op it implements ("conv2d", "batch_norm_act", ...)
    name: str       # its name, for the table and for use_backend(op=name)
    target: str     # "module:attribute", imported on first use
    path: str       # "fast" or "reference"
    dtypes: tuple   # dtypes it is written for
    replaces: str   # the reference code it stands in for
    when: str       # which calls it takes (the rest go to the reference)

    def load(self):
        """The implementation object, or None when it cannot be imported (e.g. no Numba)."""
        return _load(self.target)


def _fast(op, name, target, replaces, when, dtypes=FLOATS):
    return Implementation(op, name, target, "fast", dtypes, replaces, when)


def _reference(op, name, target, when):
    return Implementation(op, name, target, "reference", FLOATS, "-", when)


# The registry: every implementation of every op that has more than one, in the order tried.
REGISTRY = (
    _reference("conv2d", "im2col", "minimix.kernels.im2col",
               "every convolution on the reference path (windows copied into a matrix, one BLAS product)"),
    _reference("conv2d", "naive", "minimix.kernels.naive",
               "only when chosen (use_backend(conv2d='naive')): the loops that define convolution"),
    _fast("conv2d", "numba", "minimix.fast.conv:DEPTHWISE",
          "im2col for depthwise convolutions", "groups == in_channels == out_channels (Numba kernels)"),
    _fast("conv2d", "pointwise", "minimix.fast.conv:POINTWISE",
          "im2col for 1x1 convolutions", "1x1, stride 1, no padding, groups 1: one BLAS product per image, "
          "images shared over threads"),
    _fast("mixconv2d", "in-place", "minimix.fast.mixconv:mixconv2d",
          "MixConv2d.forward's split -> conv per group -> cat", "groups' convs unhooked; every group reads "
          "and writes its channels of whole-layer arrays, no split/concatenate copies"),
    _fast("grouped_conv2d", "in-place", "minimix.fast.mixconv:grouped_conv2d",
          "GroupedConv2d.forward's split -> 1x1 conv per group -> cat", "as mixconv2d, groups of 1x1 convs"),
    _fast("mixed_conv2d", "in-place", "minimix.fast.mixconv:mixed_conv2d",
          "F.mixed_conv2d's split -> conv2d per group -> cat", "as mixconv2d"),
    _fast("batch_norm", "numba-fused", "minimix.fast.norm_act:batch_norm",
          "BatchNorm2d.forward (NumPy BatchNorm op)", "statistics and normalisation in one Numba pass"),
    _fast("batch_norm_act", "numba-fused", "minimix.fast.norm_act:batch_norm_act",
          "BatchNormAct2d.forward's batch norm -> activation", "activation ReLU, SiLU or none, unhooked"),
    _fast("excite", "numba", "minimix.fast.excite:excite",
          "SqueezeExcite's x * gate (broadcasting multiply)", "both gradients from one pass over g and x"),
    _fast("adaptive_avg_pool2d", "numba", "minimix.fast.excite:global_avg_pool",
          "x.mean(axis=(2, 3), keepdims=True)", "plane means on every core"),
    _fast("fused_mixconv_bn_act", "numba-epilogue", "minimix.fast.inference:fused_mixconv_bn_act",
          "nn.fuse's folded MixConv (weights * scale, bias shift) -> activation",
          "no_grad: BatchNorm's scale/shift and the activation applied as each output block is written"),
    _fast("mixnet_block", "fused-inference", "minimix.fast.blocks:mixnet_block",
          "InvertedResidual/DepthwiseSeparable.forward's grouped 1x1 -> BN (-> act) (-> + x) and SE's h * gate",
          "no_grad, eval: each 1x1 conv with its BN, activation and residual add in one pass per few images; "
          "always: SE's gate scales the projection's weights per image (x * gate never made); unhooked parts"),
)


@functools.lru_cache(maxsize=None)
def _load(target):
    module, _, attribute = target.partition(":")  # "package.module" alone: the module itself
    try:
        loaded = importlib.import_module(module)
        return getattr(loaded, attribute) if attribute else loaded
    except ImportError:  # Numba missing: this implementation is unavailable, the reference runs
        return None


def _initial_path():
    path = os.environ.get("MINIMIX_BACKEND", "fast").strip().lower() or "fast"
    if path not in PATHS:
        raise ValueError(f"MINIMIX_BACKEND must be one of {PATHS}, got {os.environ['MINIMIX_BACKEND']!r}")
    return path


_state = {"path": _initial_path(), "pinned": {}}  # pinned: {op: implementation name}


def current_backend() -> str:
    """The path in use: "fast" or "reference"."""
    return _state["path"]


@contextlib.contextmanager
def use_backend(path: str | None = None, **pinned):
    """Run the block on ``path`` ("fast" or "reference"; None keeps the current one), with ops named
    in ``pinned`` on one implementation each, e.g. ``use_backend(conv2d="naive")``."""
    if path is not None and path not in PATHS:
        raise ValueError(f"use_backend: path must be one of {PATHS}, got {path!r}")
    for op, name in pinned.items():
        names = [impl.name for impl in REGISTRY if impl.op == op]
        if not names:
            raise ValueError(f"use_backend: no op {op!r}; ops with several implementations: {ops()}")
        if name is not None and name not in names:
            raise ValueError(f"use_backend: {op} has no implementation {name!r}; it has {names}")
    previous = dict(_state, pinned=dict(_state["pinned"]))
    if path is not None:
        _state["path"] = path
    _state["pinned"].update({op: name for op, name in pinned.items() if name is not None})
    for op in [op for op, name in pinned.items() if name is None]:
        _state["pinned"].pop(op, None)
    try:
        yield
    finally:
        _state.update(previous)


def pinned(op):
    """The implementation name ``op`` is pinned to by use_backend, or None."""
    return _state["pinned"].get(op)


def ops():
    """Names of the ops with registered implementations."""
    return sorted({impl.op for impl in REGISTRY})


def implementations(op, dtype):
    """The loaded fast implementations of ``op`` for ``dtype`` to try, in order (empty on the reference
    path, when ``op`` is pinned to a reference implementation, or when none can be imported)."""
    name = pinned(op)
    dtype = np.dtype(dtype).name
    chosen = []
    for impl in REGISTRY:
        if impl.op != op or dtype not in impl.dtypes:
            continue
        if name is not None:
            if impl.name != name or impl.path != "fast":
                continue
        elif impl.path != "fast" or _state["path"] != "fast":
            continue
        loaded = impl.load()
        if loaded is not None:
            chosen.append(loaded)
    return chosen


def reference(op):
    """The reference implementation object of ``op`` in use (the pinned one, else the first listed)."""
    name = pinned(op)
    for impl in REGISTRY:
        if impl.op == op and impl.path == "reference" and name in (None, impl.name):
            return impl.load()
    return None


def get(op, name):
    """The implementation called ``name`` of ``op`` (loaded); a ValueError lists the names, an
    ImportError says when it exists but cannot be imported here."""
    names = [impl.name for impl in REGISTRY if impl.op == op]
    for impl in REGISTRY:
        if impl.op == op and impl.name == name:
            loaded = impl.load()
            if loaded is None:
                raise ImportError(f"{op} implementation {name!r} cannot be imported here "
                                  f"(module {impl.target.partition(':')[0]}: is Numba installed?)")
            return loaded
    raise ValueError(f"{op}: unknown implementation {name!r}; expected one of {names}")


def fast_path(op):
    """Decorator for a reference implementation: on the fast path, ``op``'s registered fast
    implementations are tried first with the same arguments; the first result that is not
    ``NotImplemented`` is returned, else the decorated (reference) code runs.

    Works on functions (``excite(x, gate)``) and on module methods (``forward(self, x)``; the
    implementation is then called as ``impl(module, x)``). The dtype that picks the
    implementations is that of the first argument that has one. The undecorated code stays
    reachable as ``.reference``.
    """

    def decorate(reference_code):
        @functools.wraps(reference_code)
        def dispatch(*args, **kwargs):
            if _state["path"] == "fast" or _state["pinned"]:
                dtype = next((a.dtype for a in args if hasattr(a, "dtype")), None)
                for fast in implementations(op, dtype) if dtype is not None else ():
                    out = fast(*args, **kwargs)
                    if out is not NotImplemented:
                        return out
            return reference_code(*args, **kwargs)

        dispatch.reference = reference_code
        return dispatch

    return decorate


def table() -> str:
    """The registry as a text table: op, implementation, path, dtypes, availability, what it replaces."""
    header = ("op", "implementation", "path", "dtypes", "available", "replaces", "takes")
    rows = [header]
    for impl in REGISTRY:
        available = "yes" if impl.load() is not None else "no (import failed)"
        rows.append((impl.op, impl.name, impl.path, ", ".join(d.replace("float", "f") for d in impl.dtypes),
                     available, impl.replaces, impl.when))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.append(f"current path: {current_backend()}" + (f", pinned: {_state['pinned']}" if _state["pinned"] else ""))
    return "\n".join(lines)


def print_table(file=None):
    """Print :func:`table`."""
    print(table(), file=file)


__all__ = ["Implementation", "REGISTRY", "PATHS", "use_backend", "current_backend", "implementations",
           "reference", "get", "fast_path", "ops", "pinned", "table", "print_table"]
