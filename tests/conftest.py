"""Shared test setup, and the helpers through which every test asks for what it needs.

A test that needs an optional module, a shared reference file or the CIFAR-10 data asks through
:func:`require`, :func:`require_file`/:func:`shared_path` or :func:`require_env` (``from conftest import
require``): where it is missing the test is skipped with a reason locally, and FAILS, naming what is
missing, when the ``CI`` environment variable is set, so that a CI run cannot pass by skipping.
"""
import importlib
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))  # lets tests `from parity import check_parity`
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def in_ci() -> bool:
    """Whether the ``CI`` environment variable is set (to anything but "", "0", "false" or "no")."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(what: str):
    """Something a test needs is not there: skip with ``what`` as the reason, or under CI fail with it.

    Works inside a test or fixture and at module level (there, under CI, the module fails to collect)."""
    __tracebackhide__ = True  # a skip or failure is reported at the test's line
    if in_ci():
        pytest.fail(f"missing under CI: {what} (CI is set, so what the tests need must be present)", pytrace=False)
    pytest.skip(what, allow_module_level=True)


def require(module: str, why: str = ""):
    """Import and return ``module`` (``require("torch")``, ``require("safetensors.numpy")``); where it cannot
    be imported, :func:`missing` (skip locally, fail under CI) names the module, the error and ``why``."""
    __tracebackhide__ = True
    try:
        return importlib.import_module(module)
    except ImportError as err:
        error = err
    # reported outside the except block, so that a failure shows no chained traceback
    missing(f"{module} cannot be imported ({error})" + (f": {why}" if why else ""))


def shared_path(*parts) -> Path:
    """A path in the shared folder (``reference/``, ``data/``): ``$MINIMIX_SHARED`` where set, else the
    ``shared`` folder next to the repository (``../shared`` from its root). Never an absolute path."""
    root = os.environ.get("MINIMIX_SHARED")
    base = Path(root).expanduser() if root else REPO.parent / "shared"
    return base.joinpath(*parts)


def require_file(path, what: str = "") -> Path:
    """``path`` as a Path where it exists; else :func:`missing` (skip locally, fail under CI) names it."""
    __tracebackhide__ = True
    path = Path(path)
    if not path.exists():
        where = ("; set MINIMIX_SHARED to the folder holding reference/ and data/"
                 if shared_path() in path.parents else "")
        missing(f"{what or 'file'} {path} not found{where}")
    return path


def require_shared(*parts, what: str = "") -> Path:
    """:func:`require_file` of :func:`shared_path` ``(*parts)``: ``require_shared("reference", "x.npz")``."""
    __tracebackhide__ = True
    return require_file(shared_path(*parts), what or "shared file")


def require_env(name: str, what: str = "") -> str:
    """The value of environment variable ``name``; where unset or empty, :func:`missing` names it."""
    __tracebackhide__ = True
    value = os.environ.get(name)
    if not value:
        missing(f"${name} is not set" + (f": {what}" if what else ""))
    return value


def rewrite_checkpoint_arrays(meta, change):
    """Apply ``change(arrays)`` to the .npz that checkpoint ``meta`` (its .json) names, and record the new
    size and SHA-256 in ``meta``, so that only checks beyond the file's integrity can catch the change."""
    import hashlib
    import json

    import numpy as np

    record = json.loads(Path(meta).read_text())
    data = Path(meta).parent / record["data"]
    with np.load(data) as npz:
        arrays = {k: npz[k] for k in npz.files}
    change(arrays)
    with open(data, "wb") as f:
        np.savez(f, **arrays)
    record.update(data_bytes=data.stat().st_size, data_sha256=hashlib.sha256(data.read_bytes()).hexdigest())
    Path(meta).write_text(json.dumps(record))


def pytest_report_header(config):
    shared = shared_path()
    mode = "CI is set: a missing dependency or file FAILS" if in_ci() else "a missing dependency or file skips"
    return f"minimix: {mode}; shared files: {shared} ({'found' if shared.is_dir() else 'not found'})"


@pytest.fixture(params=["fast", "reference"])
def each_path(request):
    """Run the test on both paths of minimix.backends: the fast implementations where they apply
    (the default), then the reference NumPy code alone. Op test modules use it for every test:
    ``pytestmark = pytest.mark.usefixtures("each_path")``."""
    import minimix

    with minimix.use_backend(request.param):
        yield request.param


def pytest_sessionstart(session):
    """Run the suite with minimix's performance settings, as training does (an explicit call:
    importing minimix changes nothing; tests/test_perf.py checks both in fresh processes)."""
    import minimix.perf

    minimix.perf.configure()
