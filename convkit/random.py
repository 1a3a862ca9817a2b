"""Seeds: every random number in convkit comes from ``numpy.random.Generator`` objects made here.

``set_seed(n)`` resets the library's root generator; a layer made without ``seed=`` draws its
own generator from the root, so the same seed and the same sequence of layer constructions
give bit-identical weights. ``seed=k`` on a layer gives it ``default_rng(k)`` directly.
The legacy global ``np.random`` state is never used.
"""
from __future__ import annotations

import numpy as np

_root = np.random.default_rng()


def set_seed(seed: int) -> None:
    """Make every later random draw in convkit reproducible (weights, dropout, shuffling)."""
    global _root
    _root = np.random.default_rng(seed)


def make_rng(seed: int | None = None) -> np.random.Generator:
    """A new generator: ``default_rng(seed)`` if a seed is given, else one drawn from the root."""
    if seed is not None:
        return np.random.default_rng(seed)
    return np.random.default_rng(_root.integers(0, 2**63 - 1))
