"""Argument checks shared by the kernels' wrappers: NHWC float arrays, a
:class:`convkit.shapes.Geometry` that fits the input, ``dy`` of the output's shape, and the
geometry as the plain integers the kernels take, zero pads as four integers, and ``out=``
buffers.

Every check raises :class:`convkit.errors.ShapeError` naming the calling function (``where``).
"""
from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ...shapes import Geometry


def _nhwc(where: str, name: str, arr, dtype=None) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 4:
        raise ShapeError(f"{where}: expected a 4-D (batch, height, width, channels) {name}, "
                         f"got shape {arr.shape}")
    if dtype is None:
        if arr.dtype not in (np.float32, np.float64):
            raise ShapeError(f"{where}: {name} must be float32 or float64, got {arr.dtype}")
        dtype = arr.dtype
    return np.ascontiguousarray(arr, dtype=dtype)


def _check_geometry(where: str, geometry, x_shape) -> Geometry:
    if not isinstance(geometry, Geometry):
        raise ShapeError(f"{where}: geometry must be a convkit.shapes.Geometry "
                         f"(from window_geometry), got {type(geometry).__name__}")
    if tuple(x_shape[1:3]) != tuple(geometry.in_hw):
        raise ShapeError(f"{where}: input shape {tuple(x_shape)} does not match the geometry's "
                         f"input size {geometry.in_hw}")
    return geometry


def _check_dy(where: str, dy, geo: Geometry, batch: int, channels: int, dtype,
              name: str = "dy") -> np.ndarray:
    """``dy`` (or another array named ``name`` shaped like the output) as a C-contiguous
    ``dtype`` array of the output shape ``(batch, H_out, W_out, channels)``."""
    dy = _nhwc(where, name, dy, dtype)
    expected = (batch, *geo.out_hw, channels)
    if dy.shape != expected:
        raise ShapeError(f"{where}: {name} has shape {dy.shape}, expected the output shape "
                         f"{expected}")
    return dy


def _geo_ints(geo: Geometry):
    """(kh, kw, sh, sw, dh, dw, top, left) as plain ints for the kernels."""
    (kh, kw), (sh, sw), (dh, dw) = geo.kernel, geo.strides, geo.dilation
    (top, _), (left, _) = geo.pads
    return kh, kw, sh, sw, dh, dw, top, left



def _pads(where: str, pads):
    """``(top, bottom, left, right)`` ints from zero pads ``((top, bottom), (left, right))``,
    none negative."""
    try:
        (top, bottom), (left, right) = pads
        values = tuple(int(p) for p in (top, bottom, left, right))
    except (TypeError, ValueError):
        raise ShapeError(f"{where}: pads must be ((top, bottom), (left, right)) ints, "
                         f"got {pads!r}") from None
    if min(values) < 0:
        raise ShapeError(f"{where}: pads must not be negative, got {pads!r}")
    return values


def _out_array(where: str, out, shape, dtype) -> np.ndarray:
    """``out`` when it is a C-contiguous ``dtype`` array of ``shape`` (a reused buffer), a
    fresh ``np.empty`` when it is None."""
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not (isinstance(out, np.ndarray) and out.shape == tuple(shape) and out.dtype == dtype
            and out.flags.c_contiguous):
        raise ShapeError(f"{where}: out must be a C-contiguous {np.dtype(dtype)} array of "
                         f"shape {tuple(shape)}, got {getattr(out, 'dtype', type(out).__name__)} "
                         f"{np.shape(out)}")
    return out
