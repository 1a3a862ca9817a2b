"""Library-wide settings, Keras style: the default float type of new weights."""
from __future__ import annotations

import numpy as np

_FLOATX = "float32"


def floatx() -> str:
    """The dtype new layers create their weights in (``"float32"`` unless changed)."""
    return _FLOATX


def set_floatx(dtype: str) -> None:
    """Set the dtype of weights of layers made from now on: ``"float32"`` or ``"float64"``
    (float64 is what finite-difference gradient checks use)."""
    global _FLOATX
    name = np.dtype(dtype).name
    if name not in ("float32", "float64"):
        raise ValueError(f"set_floatx: dtype must be 'float32' or 'float64', got {dtype!r}")
    _FLOATX = name
