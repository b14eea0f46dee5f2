"""minimix.perf: importing minimix changes nothing process-wide; ``configure()`` changes exactly what it says.

Each check runs in a fresh Python process (a process picks Numba's pool and sets its allocator once),
which prints a JSON report; the tests below read it.
"""
import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest
from conftest import require

require("threadpoolctl", "minimix.perf limits BLAS threads through threadpoolctl")
require("numba", "minimix.perf chooses Numba's thread pool; the checks below import it")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Allocating, touching and freeing a 64 MB array: glibc serves it with mmap by default (its
# dynamic threshold never exceeds 32 MB), so touching it again costs one page fault per page;
# once configure() raised the threshold, the freed block is reused from the heap without faults.
PROBE = """
import resource

import numpy as np


def faults_of_a_fresh_64mb_array():
    def touch():
        a = np.empty(64 * 2**20 // 8)
        a.fill(1.0)
        del a
    touch()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    touch()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
"""

IMPORT_ALL = PROBE + """
import importlib
import json
import pkgutil
import sys

import numba
import threadpoolctl

try:
    import torch  # loaded first, so that its libraries are in both snapshots
except ImportError:
    pass

import minimix


def snapshot():
    return {"libraries": sorted((i["filepath"], i["num_threads"]) for i in threadpoolctl.threadpool_info()),
            "layer": numba.config.THREADING_LAYER, "priority": list(numba.config.THREADING_LAYER_PRIORITY),
            "pool_started": bool(sys.modules["numba.np.ufunc.parallel"]._is_initialized)}


before = snapshot()
failed = {}
names = [m.name for m in pkgutil.walk_packages(minimix.__path__, "minimix.")]
for name in names:
    try:
        importlib.import_module(name)  # minimix.__main__ runs nothing on import (its main() is guarded)
    except ImportError as err:  # an optional dependency that is not installed
        failed[name] = repr(err)
after = snapshot()
report = {"modules": names, "failed": failed, "before": before, "after": after,
          "faults_after_import": faults_of_a_fresh_64mb_array()}

import minimix.perf

report["blas_original"] = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
minimix.perf.configure()
report["faults_after_configure"] = faults_of_a_fresh_64mb_array()
report["settings"] = minimix.perf.settings()
report["blas_after_configure"] = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
report["layer"] = numba.threading_layer()
report["threads"] = numba.get_num_threads()
minimix.perf.configure(threads=1)
report["threads_1"] = numba.get_num_threads()
minimix.perf.configure(threads=None, blas_threads=2)
report["threads_none"] = numba.get_num_threads()
report["blas_2"] = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
minimix.perf.configure(blas_threads=None)  # BLAS back to what it was before configure
report["blas_restored"] = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
report["max_threads"] = numba.config.NUMBA_NUM_THREADS
print(json.dumps(report))
"""


def _run(code):
    env = dict(os.environ, NUMPY_MADVISE_HUGEPAGE="0")  # 4 KB pages, so that page faults count pages
    env.pop("NUMBA_THREADING_LAYER", None)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env=env, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def report():
    return _run(IMPORT_ALL)[1]


def _glibc():
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def _huge_pages_always():
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[always]" in f.read()
    except OSError:
        return False


def test_every_module_imports(report):
    assert len(report["modules"]) > 30
    assert "minimix.perf" in report["modules"] and "minimix.kernels.depthwise_numba" in report["modules"]
    allowed = ("torch", "safetensors")  # optional dependencies of a few modules
    assert all(any(dep in message for dep in allowed) for message in report["failed"].values()), report["failed"]


def test_importing_every_module_changes_no_thread_setting(report):
    """BLAS threads per library, Numba's threading layer and its priority list are as Python started them,
    and no module started Numba's thread pool (it would then be stuck on Numba's default)."""
    assert report["after"] == report["before"]
    assert report["after"]["pool_started"] is False


def test_importing_every_module_leaves_the_allocator_alone(report):
    if not _glibc():
        pytest.skip("the allocator check counts glibc malloc's page faults (Linux with glibc only)")
    pages = 64 * 2**20 // (2 * 2**20 if _huge_pages_always() else 4096)
    # glibc's default: the 64 MB array is mmapped afresh, every page faults again
    assert report["faults_after_import"] >= pages // 2, report["faults_after_import"]
    # after configure(): the freed block is reused from malloc's heap
    assert report["faults_after_configure"] < report["faults_after_import"] / 10, report["faults_after_configure"]
    assert report["settings"]["allocator_tuned"] is True


def test_configure_limits_blas_and_chooses_the_pool(report):
    assert report["blas_after_configure"] and set(report["blas_after_configure"]) == {1}
    assert report["threads"] == report["max_threads"]  # threads=None: every core
    expected = "tbb"
    import importlib.metadata

    try:
        importlib.metadata.distribution("tbb")
    except importlib.metadata.PackageNotFoundError:
        expected = "workqueue"  # the fallback where TBB is missing
    assert report["layer"] == expected
    settings = report["settings"]
    assert settings["configured"] is True
    assert settings["numba"]["threading_layer"] == expected
    assert [b["threads"] for b in settings["blas"]] == report["blas_after_configure"]


def test_configure_again_changes_the_thread_counts(report):
    assert report["threads_1"] == 1
    assert report["threads_none"] == report["max_threads"]
    assert set(report["blas_2"]) == {2}
    assert report["blas_restored"] == report["blas_original"]


def test_configure_after_the_pool_started_warns():
    """A parallel kernel that runs first starts Numba's pool on its default layer; configure cannot
    switch it and says so (unless that default already is the pool it would choose)."""
    code = """
    import json, warnings
    import numpy as np
    from minimix.kernels import excite_numba
    import numba, minimix.perf

    excite_numba.plane_means(np.ones((2, 3, 4, 4)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        minimix.perf.configure(threads=1)
    print(json.dumps({"layer": numba.threading_layer(), "threads": numba.get_num_threads(),
                      "warnings": [str(w.message) for w in caught]}))
    """
    _, result = _run(code)
    assert result["threads"] == 1
    if result["layer"] == "tbb":
        assert result["warnings"] == []
    else:
        assert len(result["warnings"]) == 1 and "before running any kernel" in result["warnings"][0]


@pytest.mark.parametrize("kwargs", [{"threads": 0}, {"threads": 1.5}, {"blas_threads": True}, {"numba_pool": "gomp"}])
def test_configure_refuses_bad_arguments(kwargs):
    import minimix.perf

    with pytest.raises(ValueError, match="configure"):
        minimix.perf.configure(**kwargs)
