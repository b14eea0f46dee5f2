"""Running NumPy work on several threads: ``run_chunks`` and ``num_threads``.

The 1x1 convolutions (``pointwise``) and im2col convolutions are BLAS products. Rather than
letting the BLAS library split each product over its own threads, ``run_chunks`` splits a
batch into one chunk of images per thread and runs the chunks on a small pool of Python
threads (NumPy releases the GIL inside a product), each chunk's products single-threaded:
no thread ever spin-waits for another. ``num_threads`` is how many: Numba's thread count,
so that the Numba kernels and the chunked products use the same cores.

Nothing here changes process-wide state. The settings this relies on for speed, BLAS
limited to one thread, Numba's TBB pool and the allocator thresholds, are applied by one
explicit call, ``minimix.perf.configure()``, whose docstring says what each one does and why.
"""
import os
import sys
from concurrent.futures import ThreadPoolExecutor

_pool = {}  # (process id, thread count) -> ThreadPoolExecutor, made on first use (a forked child makes its own)


def num_threads():
    """Threads to use: Numba's current count (``numba.set_num_threads``, ``minimix.perf.configure(threads=)``)
    once its pool runs, else Numba's maximum if Numba is loaded, else the cores.

    Never starts Numba's pool: the process would then be stuck with Numba's default pool
    before ``minimix.perf.configure`` could choose one.
    """
    numba = sys.modules.get("numba")
    if numba is None:
        return os.cpu_count() or 1
    parallel = sys.modules.get("numba.np.ufunc.parallel")
    if getattr(parallel, "_is_initialized", False):
        return numba.get_num_threads()
    return numba.config.NUMBA_NUM_THREADS


def run_chunks(fn, n, min_chunk=1):
    """Call ``fn(start, stop)`` for consecutive chunks covering range(n), one per thread, in parallel.

    Returns the list of results in chunk order. Chunks have at least ``min_chunk`` items, so small
    jobs run inline on the calling thread. ``fn`` must only release the GIL in NumPy calls
    (e.g. ``np.matmul``) and write to disjoint outputs.
    """
    count = max(1, min(num_threads(), n // max(1, min_chunk)))
    bounds = [n * i // count for i in range(count + 1)]
    if count == 1:
        return [fn(0, n)]
    key = (os.getpid(), count)
    pool = _pool.get(key)
    if pool is None:
        pool = _pool[key] = ThreadPoolExecutor(count - 1, thread_name_prefix="minimix")
    futures = [pool.submit(fn, a, b) for a, b in zip(bounds[1:-1], bounds[2:])]
    results = [fn(bounds[0], bounds[1])]  # the calling thread takes the first chunk itself
    return results + [f.result() for f in futures]
