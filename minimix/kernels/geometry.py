"""Convolution geometry shared by every convolution in minimix: output sizes and (h, w) argument pairs.

Along one axis, an input of ``size`` pixels, zero-padded by ``padding`` on both sides, is
read by a kernel of ``kernel`` taps spaced ``dilation`` apart (it spans
``dilation*(kernel-1) + 1`` pixels), placed every ``stride`` pixels::

    output = (size + 2*padding - dilation*(kernel-1) - 1) // stride + 1

(the number of placements that fit, as in PyTorch's ``Conv2d``). The two axes are
independent, so every argument is an (h, w) pair; ``as_pair`` turns the int-or-pair that a
user writes into one.
"""
import numpy as np


def output_size(size, kernel, stride, padding, dilation):
    """Output length along one axis: (size + 2*padding - dilation*(kernel-1) - 1) // stride + 1."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def as_pair(value, name, op="conv2d"):
    """An int or a pair of ints -> an (h, w) pair of Python ints; anything else (a bool, a float, a
    string, three values...) is a ValueError naming ``op`` and the argument ``name``."""
    if _is_int(value):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        return int(value[0]), int(value[1])
    raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")


__all__ = ["output_size", "as_pair"]
