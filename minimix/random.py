"""One seeded random generator for the whole library (initialisation, dropout).

``minimix.manual_seed(s)`` resets it, so a run is reproducible from its seed.
"""
import numpy as np

_generator = np.random.default_rng(0)


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed minimix's generator; returns it."""
    global _generator
    _generator = np.random.default_rng(seed)
    return _generator


def generator() -> np.random.Generator:
    return _generator


def get_state() -> dict:
    return _generator.bit_generator.state


def set_state(state: dict):
    _generator.bit_generator.state = state
