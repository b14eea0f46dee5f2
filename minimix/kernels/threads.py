"""Thread (and allocator) settings for the kernels: ONE place, applied on first use (never at ``import minimix``).

Training alternates between two thread pools on the same cores: OpenBLAS (NumPy's
matrix products, i.e. the 1x1 convolutions) and Numba (the depthwise, batch-norm and
activation kernels). Measured on a 2-core machine shared with other work:

* OpenBLAS with 2 threads spin-waits for its partner thread after every product. When
  the other core is busy (a Numba thread, another process), single products of the small,
  memory-bound 1x1-convolution shapes took 10-300x longer than with 1 thread; with 1
  thread the whole set of 1x1 products was 3-10x faster in total. So minimix runs BLAS
  single-threaded and gets its parallelism from the Numba kernels instead.
* Numba's thread pool (its "threading layer") is TBB's when the ``tbb`` package is
  installed (a dependency of minimix on Linux x86-64), else ``workqueue``; not the OpenMP
  one. A training step runs ~330 parallel kernels (inference over 100), so what a pool costs
  per kernel adds up. Starting an empty kernel takes 2-7 us with TBB and 90-140 us with
  workqueue, whose threads wait by polling with short naps (``benchmarks/thread_pools.py``);
  inside a mixnet_cifar step the difference was larger still: depthwise kernels 440 -> 335
  ms, batch norm + activation 240 -> 200 ms per step (``benchmarks/train_step.py
  --profile``), and in three interleaved pairs of full runs the step took 0.77-0.88 s with
  TBB against 1.00-1.18 s with workqueue (inference 0.95-0.99 s against 1.01-1.16 s). Next
  to a busy process the two were alike. The OpenMP pool starts kernels as fast, but GNU
  libgomp's threads spin after every kernel, stealing the cores from the matrix products
  that follow (+20%; kernels up to 5x slower on a busy machine), and its passive wait
  policy, being process-wide, would also change PyTorch's OpenMP threads in the same
  process (they share the library).
* To still use every core for the products, ``run_chunks`` splits a batch into one chunk per
  thread and runs the chunks on a small pool of Python threads (NumPy releases the GIL inside
  a product): no thread ever spin-waits for another.

Memory: every op allocates its output, arrays of up to ~100 MB. glibc's malloc hands
arrays above a threshold (at most 32 MB by default) straight to the kernel (mmap) and
back (munmap) on free, so every step touched fresh pages: ~40,000 page faults and 10%
of a mixnet_cifar training step in the kernel zeroing pages. ``configure_allocator``
raises glibc's mmap and trim thresholds to 1 GB, so freed arrays are reused by the next
step (0 faults, the step 10% faster); the price is that the process keeps its peak
memory instead of returning it to the system. Set MINIMIX_MALLOC_TUNING=0 to skip it.

``configure()`` applies all of these (idempotent, cheap to call again). Environment overrides:
``MINIMIX_BLAS_THREADS`` (an int; unset -> 1, or OpenBLAS's own ``OPENBLAS_NUM_THREADS``
if that is set) and ``NUMBA_THREADING_LAYER`` / ``NUMBA_NUM_THREADS`` (Numba's own).
Note that the BLAS setting is process-wide: it also applies to your own NumPy products.
"""
import ctypes
import ctypes.util
import glob
import importlib.metadata
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_configured = {"blas": False, "numba": False, "allocator": False}
_pool = {}  # (process id, thread count) -> ThreadPoolExecutor, made on first use (a forked child makes its own)
# symbol names of openblas_set_num_threads in the builds NumPy ships (scipy-openblas, 64-bit ints) and plain ones
_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_",
            "openblas_set_num_threads")


def _openblas_libraries():
    """Paths of the OpenBLAS shared libraries loaded into this process (best effort, Linux and macOS wheels)."""
    paths = set()
    try:
        with open("/proc/self/maps") as maps:
            paths.update(line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line)
    except OSError:
        pass
    root = os.path.dirname(np.__file__)
    for folder in (root + ".libs", os.path.join(root, ".dylibs")):
        paths.update(glob.glob(os.path.join(folder, "*openblas*")))
    return sorted(paths)


def set_blas_threads(count):
    """Set OpenBLAS's thread count; returns True if an OpenBLAS was found (MKL etc. are left alone)."""
    found = False
    for path in _openblas_libraries():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _SETTERS:
            setter = getattr(lib, name, None)
            if setter is not None:
                setter(ctypes.c_int(int(count)))
                found = True
                break
    return found


def configure_blas():
    """Single-threaded BLAS unless MINIMIX_BLAS_THREADS or OPENBLAS_NUM_THREADS says otherwise (once)."""
    if _configured["blas"]:
        return
    _configured["blas"] = True
    count = os.environ.get("MINIMIX_BLAS_THREADS")
    if count is None and "OPENBLAS_NUM_THREADS" in os.environ:
        return  # the user chose OpenBLAS's threads; respect it
    set_blas_threads(int(count or 1))


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


def configure_numba():
    """Choose Numba's pool: TBB if it loads, else ``workqueue`` (see the module docstring), before the
    first kernel. NUMBA_THREADING_LAYER, if set, decides instead."""
    if _configured["numba"]:
        return
    _configured["numba"] = True
    import numba

    _load_tbb()  # also for NUMBA_THREADING_LAYER=tbb
    if "NUMBA_THREADING_LAYER" in os.environ:
        return
    numba.config.THREADING_LAYER = "default"  # the first layer of this list that loads
    numba.config.THREADING_LAYER_PRIORITY = ["tbb", "workqueue", "omp"]


def configure_allocator(threshold=1 << 30):
    """glibc only: keep arrays up to ``threshold`` bytes on malloc's heap and reuse freed memory (once)."""
    if _configured["allocator"]:
        return
    _configured["allocator"] = True
    if os.environ.get("MINIMIX_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    mallopt(m_mmap_threshold, ctypes.c_int(threshold))
    mallopt(m_trim_threshold, ctypes.c_int(threshold))


def configure_numpy():
    """The settings that need no Numba: single-threaded BLAS and the allocator."""
    configure_blas()
    configure_allocator()


def configure():
    """Apply every setting above (call before running kernels; later calls do nothing)."""
    configure_numpy()
    configure_numba()


def set_num_threads(count):
    """Use ``count`` threads for the kernels (Numba and the chunked NumPy work); BLAS stays single-threaded.

    Use this rather than calling ``numba.set_num_threads`` first: that call starts Numba's
    thread pool, and a pool started before ``configure`` is Numba's own choice: without the
    TBB set-up in ``configure``, the spinning OpenMP one (measured: a mixnet_cifar training
    step 3x slower on a busy 2-core machine).
    """
    if int(count) < 1:
        raise ValueError(f"set_num_threads: count must be >= 1, got {count}")
    configure()
    import numba

    numba.set_num_threads(min(int(count), numba.config.NUMBA_NUM_THREADS))


def num_threads():
    """Threads to use: Numba's current count once Numba is loaded (``numba.set_num_threads``), else the cores."""
    numba = sys.modules.get("numba")
    if numba is not None:
        configure_numba()  # get_num_threads starts Numba's pool: choose it first
        return numba.get_num_threads()
    return os.cpu_count() or 1


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
