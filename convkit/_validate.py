"""Input checks shared by ops and layers: clear errors instead of NumPy tracebacks."""
from __future__ import annotations

import numpy as np

from .errors import ShapeError

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def as_float_array(x, where: str, name: str = "input", ndim: int | None = None,
                   layout: str = "") -> np.ndarray:
    """Return ``x`` as a floating NumPy array (float64 stays float64, everything else that is
    numeric becomes float32), or raise an error naming ``where`` and ``name``.

    ``layout`` describes the expected axes for the wrong-rank message, e.g.
    ``"(batch, height, width, channels)"``.
    """
    if type(x) is np.ndarray and x.dtype in _FLOATS:      # the common case: no dtype checks
        arr = x
    else:
        arr = _numeric_array(x, where, name)
    if ndim is not None and arr.ndim != ndim:
        expect = f"{ndim}-D" + (f" {layout}" if layout else "")
        raise ShapeError(f"{where}: expected a {expect} {name}, got shape {arr.shape}")
    if arr.size == 0:
        raise ShapeError(f"{where}: {name} is empty (shape {arr.shape})")
    if arr.dtype not in _FLOATS:
        arr = arr.astype(np.float32)
    return arr


def _numeric_array(x, where: str, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise ShapeError(f"{where}: {name} is not an array ({exc})") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ShapeError(f"{where}: {name} must be numeric, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ShapeError(f"{where}: {name} must be real, got dtype {arr.dtype}")
    return arr


def result_float_dtype(*arrays) -> np.dtype:
    """float64 if any operand is float64, else float32."""
    return np.dtype(np.float64) if any(
        getattr(a, "dtype", None) == np.float64 for a in arrays) else np.dtype(np.float32)
