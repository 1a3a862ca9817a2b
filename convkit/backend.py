"""Keras's ``keras.backend`` helpers that make sense for convkit.

convkit computes with NumPy (``backend()`` is ``"numpy"``), images are channels_last by
default, and there is no graph or session to free: ``clear_session()`` resets the automatic
layer names (``dense``, ``dense_1``, ... start again), which is what Keras scripts call it for.
"""
from __future__ import annotations

import gc

from .config import floatx, set_floatx

__all__ = ["backend", "clear_session", "image_data_format", "epsilon", "floatx",
           "set_floatx"]


def backend() -> str:
    """The name of the computing backend: ``"numpy"``."""
    return "numpy"


def clear_session(free_memory: bool = True) -> None:
    """Start the automatic layer and model names afresh (and collect garbage)."""
    from .layers.base import _name_counters
    _name_counters.clear()
    if free_memory:
        gc.collect()


def image_data_format() -> str:
    """The default image layout of convkit's layers: ``"channels_last"`` (NHWC)."""
    return "channels_last"


def epsilon() -> float:
    """Keras's fuzz factor, ``1e-7``."""
    return 1e-7
