"""Thread helpers of minimix.kernels.threads, and the threaded 1x1 convolution against torch.

(Numba's TBB pool and single-threaded BLAS, set by ``minimix.perf.configure``: tests/test_perf.py.)"""
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import require
from parity import DTYPES, check_parity, randn, torch

import minimix.nn.functional as F
from minimix.kernels import pointwise, threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("n, min_chunk", [(1, 1), (7, 1), (7, 3), (100, 1000)])
def test_run_chunks_covers_the_range_in_order(n, min_chunk):
    parts = threads.run_chunks(lambda a, b: list(range(a, b)), n, min_chunk)
    assert sum(parts, []) == list(range(n))
    assert all(len(p) >= min(n, min_chunk) for p in parts)


def test_run_chunks_follows_numbas_thread_count():
    numba = require("numba", "minimix's kernels run on Numba's thread pool")
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert threads.num_threads() == 1
        assert len(threads.run_chunks(lambda a, b: (a, b), 8)) == 1
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        assert len(threads.run_chunks(lambda a, b: (a, b), 8)) == min(8, numba.config.NUMBA_NUM_THREADS)
    finally:
        numba.set_num_threads(before)


def test_num_threads_does_not_start_numbas_pool():
    """A process picks Numba's pool when the pool starts; asking for the thread count must not start it
    (minimix.perf.configure could then no longer choose TBB's pool)."""
    require("numba", "minimix's kernels run on Numba's thread pool")
    code = ("import sys, numba; from minimix.kernels import threads; n = threads.num_threads(); "
            "print(n == numba.config.NUMBA_NUM_THREADS, sys.modules['numba.np.ufunc.parallel']._is_initialized)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["True", "False"]


@DTYPES
@pytest.mark.parametrize("shape, out_channels", [((8, 16, 32, 32), 24), ((9, 7, 40, 33), 3), ((13, 96, 4, 4), 700)])
def test_pointwise_conv_split_over_threads_matches_torch(shape, out_channels, dtype):
    """The last case has so many channels that the weight gradient takes its images a few at a time."""
    per_image = (shape[1] + out_channels) * shape[2] * shape[3]
    assert shape[0] // max(1, pointwise._MIN_CHUNK_ELEMENTS // per_image) >= 2  # really runs in chunks
    inputs = [randn(*shape), randn(out_channels, shape[1], 1, 1, seed=1)]
    check_parity(lambda x, w: F.conv2d(x, w), lambda x, w: torch.nn.functional.conv2d(x, w), inputs, dtype)


def test_pointwise_reads_channel_slices_in_place():
    """MixNet's grouped 1x1 convolutions pass channel slices of a larger array: same result as a copy."""
    x = randn(6, 10, 9, 9).astype(np.float32)
    w = randn(4, 3, seed=2).astype(np.float32)
    part = x[:, 5:8]
    np.testing.assert_allclose(pointwise.pointwise_forward(part, w),
                               pointwise.pointwise_forward(np.ascontiguousarray(part), w), rtol=1e-6)


def test_pointwise_writes_into_channel_slices():
    """out=: a group's result lands in its channels of the layer's output; nothing else is touched."""
    x = randn(6, 10, 9, 9).astype(np.float32)
    w = randn(4, 3, seed=2).astype(np.float32)
    gy = randn(6, 4, 9, 9, seed=3).astype(np.float32)
    y = np.full((6, 7, 9, 9), np.nan, np.float32)
    gx = np.full_like(x, np.nan)
    returned = pointwise.pointwise_forward(x[:, 5:8], w, out=y[:, 2:6])
    assert returned.shape == (6, 4, 9, 9) and np.shares_memory(returned, y)  # out= itself, not a copy
    pointwise.pointwise_backward_input(gy, w, out=gx[:, 5:8])
    np.testing.assert_allclose(y[:, 2:6], pointwise.pointwise_forward(np.ascontiguousarray(x[:, 5:8]), w), rtol=1e-6)
    np.testing.assert_allclose(gx[:, 5:8], pointwise.pointwise_backward_input(gy, w), rtol=1e-6)
    assert np.isnan(y[:, [0, 1, 6]]).all() and np.isnan(gx[:, :5]).all() and np.isnan(gx[:, 8:]).all()
    with pytest.raises(ValueError, match="shape"):
        pointwise.pointwise_forward(x[:, 5:8], w, out=y[:, 2:5])
    with pytest.raises(ValueError, match="contiguous"):
        pointwise.pointwise_forward(x[:, 5:8], w, out=y.transpose(0, 1, 3, 2)[:, 2:6])


@DTYPES
def test_pointwise_conv_on_1x1_maps_matches_torch(dtype):
    """Squeeze-excite's convolutions see (N, C, 1, 1): their weight gradient is one product over the images."""
    inputs = [randn(5, 7, 1, 1), randn(3, 7, 1, 1, seed=1), randn(3, seed=2)]
    check_parity(lambda x, w, b: F.conv2d(x, w, b), lambda x, w, b: torch.nn.functional.conv2d(x, w, b),
                 inputs, dtype)
