"""Process-wide performance settings, applied by ONE explicit call: ``minimix.perf.configure()``.

Importing minimix changes nothing outside minimix: the kernels run with whatever BLAS, Numba
and allocator settings the process has. Training is faster with the three settings below,
but they are process-wide (they also apply to your own NumPy products, your own Numba
functions and other libraries in the process), so they are applied only when asked::

    import minimix.perf
    minimix.perf.configure(threads=2)     # first thing: before any kernel runs
    minimix.perf.settings()               # what is in effect now (a small dict)

``python -m minimix train``, the scripts in ``benchmarks/`` and the lessons that time things
call it at their start. What it changes, and why:

1. **BLAS threads** (``blas_threads=1``). Training alternates between two thread pools on
   the same cores: the BLAS library's (NumPy's matrix products: the 1x1 convolutions) and
   Numba's (depthwise, batch-norm, activation and squeeze-excite kernels). OpenBLAS with
   several threads spin-waits for its partner threads after every product; when another
   core is busy (a Numba thread, another process) the small, memory-bound products of the
   1x1 convolutions then take many times longer than with one thread. So BLAS runs
   single-threaded and minimix gets its parallelism elsewhere: ``kernels.threads.run_chunks``
   splits a batch into one chunk per thread and runs the chunks' products on Python threads
   (NumPy releases the GIL inside a product), so no thread ever spin-waits for another.
   Done with ``threadpoolctl`` for every BLAS library loaded at the time of the call (load
   SciPy or another BLAS user first, or call ``configure`` again after). ``None`` leaves
   BLAS alone (and undoes an earlier limit).
2. **Numba's thread pool** (``numba_pool="tbb"``) and its size (``threads``). A training step
   launches a few hundred parallel kernels, many of them short, so what a pool costs to start
   a kernel adds up. TBB's pool starts them quickly and its idle threads leave the cores
   alone; Numba's ``workqueue`` pool polls with short naps, which costs far more per kernel
   start; the OpenMP pool (GNU libgomp) starts them as fast but its threads spin after every
   kernel, stealing the cores from the matrix products that follow, and its wait policy is
   shared with PyTorch's OpenMP threads in the same process. Numba looks for TBB's library
   by name, and the ``tbb`` wheel (a dependency on Linux x86-64) installs it where the
   loader does not look, so ``configure`` loads it by its full path first. ``"tbb"`` falls
   back to ``workqueue`` where TBB is missing; ``"workqueue"`` and ``"omp"`` ask for those;
   ``None`` leaves Numba's choice. A NUMBA_THREADING_LAYER environment variable, Numba's own
   setting, wins over ``numba_pool``. A process picks its pool once, when the first
   parallel kernel runs: ``configure`` must come before that, and warns when it comes too
   late. ``threads`` (default: all cores, Numba's NUMBA_NUM_THREADS) is how many threads the
   Numba kernels and ``run_chunks`` use; ``configure(threads=n)`` may be called again at any
   time to change it.
3. **glibc's allocator** (``tune_allocator=True``, Linux with glibc only). Every op
   allocates its output, arrays of up to ~100 MB. glibc's malloc hands an allocation above
   its mmap threshold (which adapts, but never beyond 32 MB) straight to the kernel (mmap),
   and returns it on free (munmap), so every training step touched fresh pages: a page
   fault for every 4 KB of every large array, with the kernel zeroing each page. Raising the mmap and trim
   thresholds to 1 GB keeps freed arrays in malloc's heap, where the next step reuses them.
   The price: the process keeps its peak memory instead of returning it to the system. It
   cannot be undone within a process (``tune_allocator=False`` leaves the allocator as it is).

What each setting buys is measured by ``python benchmarks/thread_pools.py`` (kernel start
cost and speed-up per Numba pool) and ``python benchmarks/train_step.py`` (training step and
inference, ``--profile`` per layer type); the figures are in the README's performance section.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import importlib.metadata
import os
import sys
import warnings

_POOLS = (None, "tbb", "workqueue", "omp")
_MMAP_THRESHOLD = 1 << 30  # bytes: arrays up to this size stay on malloc's heap
_state = {"configured": False, "allocator_tuned": False, "blas_limiter": None, "warned": False}


def configure(threads: int | None = None, *, blas_threads: int | None = 1, numba_pool: str | None = "tbb",
              tune_allocator: bool = True) -> None:
    """Apply minimix's process-wide performance settings (see the module docstring for what and why).

    ``threads``: threads for the Numba kernels and the chunked NumPy work (None: all cores).
    ``blas_threads``: threads per BLAS library (None: leave BLAS as it was).
    ``numba_pool``: Numba's threading layer, "tbb" (else "workqueue"), "workqueue", "omp" or None.
    ``tune_allocator``: raise glibc's mmap/trim thresholds so freed arrays are reused.

    Safe to call again, e.g. to change ``threads``; prints nothing and returns None.
    """
    for name, value in (("threads", threads), ("blas_threads", blas_threads)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"configure: {name} must be None or an int >= 1, got {value!r}")
    if numba_pool not in _POOLS:
        raise ValueError(f"configure: numba_pool must be one of {_POOLS}, got {numba_pool!r}")
    if tune_allocator and not _state["allocator_tuned"]:
        _state["allocator_tuned"] = _tune_allocator(_MMAP_THRESHOLD)
    _limit_blas(blas_threads)
    _configure_numba(threads, numba_pool)
    _state["configured"] = True


def settings() -> dict:
    """What is in effect now: BLAS libraries and their threads, Numba's pool and threads, the allocator.

    Starts nothing: Numba's fields are None until Numba is imported, its pool's until a parallel
    kernel (or ``configure``) has started it.
    """
    from threadpoolctl import threadpool_info

    blas = [{"library": info.get("internal_api"), "version": info.get("version"),
             "threads": info.get("num_threads"), "path": info.get("filepath")}
            for info in threadpool_info() if info.get("user_api") == "blas"]
    numba = sys.modules.get("numba")
    numba_state = None
    if numba is not None:
        started = _numba_pool_started()
        numba_state = {"threading_layer": numba.threading_layer() if started else None,
                       "threads": numba.get_num_threads() if started else None,
                       "max_threads": numba.config.NUMBA_NUM_THREADS}
    return {"configured": _state["configured"], "blas": blas, "numba": numba_state,
            "allocator_tuned": _state["allocator_tuned"]}


# -- BLAS ------------------------------------------------------------------------------------------
def _limit_blas(count):
    """Limit every loaded BLAS library to ``count`` threads, undoing an earlier limit first (None: undo only)."""
    previous = _state["blas_limiter"]
    if previous is not None:
        previous.restore_original_limits()
        _state["blas_limiter"] = None
    if count is None:
        return
    from threadpoolctl import ThreadpoolController

    # kept alive so that a later call can restore the original limits
    _state["blas_limiter"] = ThreadpoolController().limit(limits=count, user_api="blas")


# -- Numba -----------------------------------------------------------------------------------------
def _numba_pool_started():
    """True once Numba's thread pool runs (its threading layer is then fixed for the process)."""
    parallel = sys.modules.get("numba.np.ufunc.parallel")
    return bool(getattr(parallel, "_is_initialized", False))


def _configure_numba(threads, pool):
    try:
        import numba
    except ImportError:  # no Numba: the NumPy definitions run, and only run_chunks uses threads
        return
    if pool == "tbb" or "NUMBA_THREADING_LAYER" in os.environ:
        _load_tbb()  # also lets NUMBA_THREADING_LAYER=tbb (or a priority list with tbb) find it
    if pool is not None and "NUMBA_THREADING_LAYER" not in os.environ:
        if not _numba_pool_started():
            if pool == "tbb":  # the first of these that loads
                numba.config.THREADING_LAYER = "default"
                numba.config.THREADING_LAYER_PRIORITY = ["tbb", "workqueue", "omp"]
            else:
                numba.config.THREADING_LAYER = pool
        else:
            running, wanted = numba.threading_layer(), pool
            if pool == "tbb" and not _load_tbb():
                wanted = "workqueue"
            if running != wanted and not _state["warned"]:
                _state["warned"] = True  # once per process: nothing can change it now
                warnings.warn(f"minimix.perf.configure: Numba's thread pool already runs on {running!r} (a parallel "
                              f"kernel ran before configure), so it stays there instead of {wanted!r}; call "
                              "minimix.perf.configure() before running any kernel (first thing in a script; "
                              "restart a notebook's kernel)", RuntimeWarning, stacklevel=3)
    count = numba.config.NUMBA_NUM_THREADS if threads is None else min(threads, numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(count)  # starts the pool, on the layer chosen above


def _load_tbb():
    """True if TBB's library is loaded, so that Numba's ``tbb`` layer can start (Linux).

    Numba opens ``libtbb.so.12`` by name. The ``tbb`` wheel puts that file in
    ``<environment>/lib``, where the dynamic loader does not look; loaded once by its full
    path (RTLD_GLOBAL), the name resolves to it.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        ctypes.CDLL("libtbb.so.12")  # on the loader's path already (conda, a system package)
        return True
    except OSError:
        pass
    try:
        files = importlib.metadata.files("tbb") or []
    except importlib.metadata.PackageNotFoundError:
        return False
    for file in files:
        if file.name == "libtbb.so.12":
            try:
                ctypes.CDLL(str(file.locate()), mode=ctypes.RTLD_GLOBAL)
                return True
            except OSError:
                return False
    return False


# -- the allocator ---------------------------------------------------------------------------------
def _tune_allocator(threshold):
    """glibc only: keep allocations up to ``threshold`` bytes on malloc's heap, and freed memory in it.
    True if applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, ctypes.c_int(threshold))) and bool(
        mallopt(m_trim_threshold, ctypes.c_int(threshold)))


__all__ = ["configure", "settings"]
