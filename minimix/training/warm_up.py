"""A first run's depthwise kernels, compiled in a second process while training starts.

Numba compiles a kernel on its first call, on one core, one kernel at a time: on a first run
(no cache yet) the first training step waits for every kernel it meets, which is most of why epoch 1
takes longer (README "Results"). The depthwise convolutions' kernels are the largest share: the
generated row kernels, one module per kernel size and plane size (``kernels/depthwise_rows.py``), the
flat sweeps and the weight gradient (``kernels/depthwise_numba.py``). On a machine with a second
core, another process can compile them at the same time::

    training process:  forward: layer 1, 2, ..., L   backward: layer L, ..., 2, 1
    helper process:    backward: layer 1, 2, ...            forward: layer L, ..., 1

The helper (``start``: ``python -m minimix.training.warm_up LAYERS``) calls the kernels of each
depthwise layer once on a single image of zeros, and Numba caches what it compiles, in the same place as
the training process's kernels ($NUMBA_CACHE_DIR, else ``minimix/kernels/__pycache__``). When the
training step first calls a kernel that the helper has cached by then, Numba loads it from the cache
instead of compiling it. The helper takes the layers in the opposite order to the step, so the two
meet in the middle rather than compiling the same kernels at the same time; everything else (batch
norm, 1x1 convolutions, ...) the training process compiles as before. The stride-2 gradients of the row kernels
the training process only ever loads from the cache (``kernels/depthwise_rows.py`` says why); the helper is one of
the processes that compile them for it. A run with the helper computes exactly what a run without it does (issue
17's closing notes have the run-level check: the same losses with and without the helper, and with a warm cache).

Nothing here is needed: without the helper (one core, a failed helper, a cache that is already
warm) the training process compiles whatever is missing itself.
"""
import copy
import json
import os
import signal
import subprocess
import sys

import numpy as np

from ..backends import use_backend
from ..kernels.geometry import output_size
from ..nn.conv import Conv2d
from ..ops.conv import conv_geometry
from ..tensor import Tensor, no_grad


def depthwise_layers(model, input_shape, dtype=np.float32):
    """The depthwise convolutions of ``model`` on one input of ``input_shape`` (C, H, W), in the order the
    forward runs them, without repeats: a list of [channels, H, W, kernel, stride, padding, dilation] (the
    last four as pairs), H x W the layer's input. Found by hooks on a forward of one image of zeros on the
    reference path (NumPy only: it compiles nothing), on a copy of the model (its batch norms' running
    statistics stay as they are)."""
    probe = copy.deepcopy(model).eval()
    layers = []

    def record(conv, args):
        if conv.groups == conv.in_channels == conv.out_channels > 1:  # depthwise: one channel per group
            pairs = (conv.kernel_size, *conv_geometry(conv.kernel_size, conv.stride, conv.padding, conv.dilation))
            layer = [int(conv.in_channels), *map(int, args[0].shape[2:]), *([int(a), int(b)] for a, b in pairs)]
            if layer not in layers:
                layers.append(layer)

    for module in probe.modules():
        if isinstance(module, Conv2d):
            module.register_forward_pre_hook(record)
    with use_backend("reference"), no_grad():
        probe(Tensor(np.zeros((1, *input_shape), dtype=dtype)))
    return layers


def compile_layers(layers, dtype=np.float32):
    """Call the depthwise kernels of every layer once on one image of zeros, in the helper's order:
    the backward (input and weight gradients) from the first layer on, then the forward from the last
    layer back. Each call compiles its kernels, or loads them from Numba's cache."""
    from ..kernels import depthwise_numba

    def zeros(*shape):
        return np.zeros(shape, dtype=dtype)

    for channels, H, W, kernel, stride, padding, dilation in layers:
        out_hw = [output_size(*args) for args in zip((H, W), kernel, stride, padding, dilation)]
        x, w, gy = zeros(1, channels, H, W), zeros(channels, *kernel), zeros(1, channels, *out_hw)
        depthwise_numba.depthwise_backward_input(gy, w, (H, W), stride, padding, dilation)
        depthwise_numba.depthwise_backward_weight(x, gy, kernel, stride, padding, dilation)
    for channels, H, W, kernel, stride, padding, dilation in reversed(layers):
        depthwise_numba.depthwise_forward(zeros(1, channels, H, W), zeros(channels, *kernel), stride, padding,
                                          dilation)


def start(layers, dtype=np.float32):
    """Start the helper process on ``layers`` (``depthwise_layers``) in ``dtype``; returns its
    ``subprocess.Popen``, or None on a single core (the helper would only take turns with the training
    process) or without layers. The helper caches where this process's Numba does; its errors, if any,
    appear on stderr, and the training process does not depend on it (``stop`` it when done)."""
    if (os.cpu_count() or 1) < 2 or not layers:
        return None
    from ..kernels.depthwise_rows import cache_filling_environment  # (imports Numba: not at this module's import)

    env = cache_filling_environment()
    payload = json.dumps({"dtype": np.dtype(dtype).name, "layers": layers})
    return subprocess.Popen([sys.executable, "-m", "minimix.training.warm_up", payload],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env)


def stop(helper):
    """End the helper if it still runs (Numba writes each cache entry whole, so stopping it loses nothing)."""
    if helper is not None and helper.poll() is None:
        helper.terminate()
        helper.wait()


def main(argv=None):
    """``python -m minimix.training.warm_up '{"dtype": "float32", "layers": [...]}'``: ``compile_layers``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the training process, which then stops this one
    job = json.loads((argv if argv is not None else sys.argv[1:])[0])
    from ..kernels import depthwise_rows

    depthwise_rows._fills_cache = True  # this process compiles the kernels that others only load from the cache
    compile_layers(job["layers"], np.dtype(job["dtype"]))


if __name__ == "__main__":
    main()
