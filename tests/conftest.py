import os
import sys

sys.path.insert(0, os.path.dirname(__file__))  # lets tests `from parity import check_parity`
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


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
