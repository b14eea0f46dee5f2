import numpy as np
import pytest
from parity import DTYPES, check_parity, randn, torch

pytestmark = pytest.mark.usefixtures("each_path")  # every test on the fast and the reference path


@DTYPES
def test_mul_broadcast(dtype):
    check_parity(lambda a, b: a * b, lambda a, b: a * b, [randn(3, 1, 4), randn(5, 1, seed=1)], dtype)
