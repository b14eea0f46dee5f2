import numpy as np
from parity import DTYPES, check_parity, randn, torch


@DTYPES
def test_mul_broadcast(dtype):
    check_parity(lambda a, b: a * b, lambda a, b: a * b, [randn(3, 1, 4), randn(5, 1, seed=1)], dtype)
