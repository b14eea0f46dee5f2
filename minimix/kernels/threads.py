"""Thread (and allocator) settings for the kernels: ONE place, applied on first use (never at ``import minimix``).

Training alternates between two thread pools on the same cores: OpenBLAS (NumPy's
matrix products, i.e. the 1x1 convolutions) and Numba (the depthwise, batch-norm and
activation kernels). Measured on a 2-core machine shared with other work:

* OpenBLAS with 2 threads spin-waits for its partner thread after every product. When
  the other core is busy (a Numba thread, another process), single products of the small,
  memory-bound 1x1-convolution shapes took 10-300x longer than with 1 thread; with 1
  thread the whole set of 1x1 products was 3-10x faster in total. So minimix runs BLAS
  single-threaded and gets its parallelism from the Numba kernels instead.
* Numba's default OpenMP pool also spins after a kernel; its ``workqueue`` pool sleeps
  at once, leaving the cores to whatever runs next.

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


def configure_numba():
    """Select Numba's sleeping ``workqueue`` pool unless NUMBA_THREADING_LAYER is set (before the first kernel)."""
    if _configured["numba"]:
        return
    _configured["numba"] = True
    import numba

    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = "workqueue"


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
    thread pool, and a pool started before ``configure`` is the spinning OpenMP one (measured:
    a mixnet_cifar training step 3x slower on a busy 2-core machine).
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
