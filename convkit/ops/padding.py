"""Spatial padding of image batches, forward and backward.

Modes follow PyTorch's ``F.pad`` meanings, for pads ``((top, bottom), (left, right))``:

* ``"zeros"`` / ``"constant"``: fill with ``value`` (0 unless given; max pooling uses -inf);
* ``"reflect"``: mirror without repeating the edge, ``[a b c d] -> [c b | a b c d | c b]``
  (each pad must be smaller than the input along its axis);
* ``"replicate"``: repeat the edge, ``[a b c d] -> [a a | a b c d | d d]``;
* ``"circular"``: wrap around, ``[a b c d] -> [c d | a b c d | a b]`` (each pad at most the
  input size).

The non-constant modes are gathers through an index map per axis (padded position -> input
position); their backward is the matching scatter-add, one padded row or column at a time.
"""
from __future__ import annotations

import numpy as np

from .._validate import as_float_array
from ..errors import ShapeError
from ..shapes import normalize_padding

__all__ = ["PAD_MODES", "pad2d", "pad2d_backward", "check_pad_mode", "pad_nhwc",
           "pad_nhwc_backward", "to_channels_last", "from_channels_last", "check_data_format",
           "check_pads_fit", "layout_of", "layout_shape"]

PAD_MODES = ("zeros", "constant", "reflect", "replicate", "circular")
_LAYOUT = {"channels_last": "(batch, height, width, channels)",
           "channels_first": "(batch, channels, height, width)"}


# ----------------------------------------------------------------------------- layouts
def check_data_format(data_format, where: str) -> str:
    """Return ``data_format`` if it is ``"channels_last"`` or ``"channels_first"``."""
    if data_format not in _LAYOUT:
        raise ShapeError(f"{where}: data_format must be 'channels_last' or 'channels_first', "
                         f"got {data_format!r}")
    return data_format


def layout_of(data_format: str) -> str:
    return _LAYOUT[data_format]


def to_channels_last(x: np.ndarray, data_format: str) -> np.ndarray:
    """NCHW -> NHWC view (no copy); NHWC is returned as is."""
    return x.transpose(0, 2, 3, 1) if data_format == "channels_first" else x


def layout_shape(shape_nhwc, data_format: str) -> tuple:
    """An NHWC shape written in ``data_format``'s axis order."""
    n, h, w, c = shape_nhwc
    return (n, c, h, w) if data_format == "channels_first" else (n, h, w, c)


def from_channels_last(y: np.ndarray, data_format: str) -> np.ndarray:
    """NHWC -> NCHW view (no copy); NHWC is returned as is."""
    return y.transpose(0, 3, 1, 2) if data_format == "channels_first" else y


def check_pad_mode(mode, where: str) -> str:
    """Normalise a padding mode name (``"constant"`` is an alias of ``"zeros"``)."""
    name = mode.lower() if isinstance(mode, str) else mode
    if name not in PAD_MODES:
        raise ShapeError(f"{where}: padding_mode must be one of {', '.join(PAD_MODES)}; "
                         f"got {mode!r}")
    return "zeros" if name == "constant" else name


def _source_index(n: int, before: int, after: int, mode: str) -> np.ndarray:
    """Input position read by each of the ``before + n + after`` padded positions."""
    pos = np.arange(-before, n + after)
    if mode == "reflect":
        return np.where(pos < 0, -pos, np.where(pos >= n, 2 * (n - 1) - pos, pos))
    if mode == "replicate":
        return np.clip(pos, 0, n - 1)
    return pos % n  # circular


def check_pads_fit(in_hw, pads, mode: str, where: str, shape) -> None:
    for n, (before, after), axis in zip(in_hw, pads, ("height", "width")):
        if mode == "reflect" and max(before, after) >= n:
            raise ShapeError(f"{where}: reflect padding {(before, after)} along the {axis} "
                             f"must be smaller than the input size {n} (input shape {shape})")
        if mode == "circular" and max(before, after) > n:
            raise ShapeError(f"{where}: circular padding {(before, after)} along the {axis} "
                             f"must not exceed the input size {n} (input shape {shape})")


# ------------------------------------------------------------------ NHWC work-horses
def pad_nhwc(x: np.ndarray, pads, mode: str = "zeros", value: float = 0.0) -> np.ndarray:
    """Pad the spatial axes of an NHWC array (pads already validated). No copy if no pad."""
    (top, bottom), (left, right) = pads
    if top == bottom == left == right == 0:
        return x
    n, h, w, c = x.shape
    if mode == "zeros":
        out = np.empty((n, h + top + bottom, w + left + right, c), dtype=x.dtype)
        # fill only the border strips, then copy the interior once
        out[:, :top] = value
        out[:, top + h:] = value
        out[:, top:top + h, :left] = value
        out[:, top:top + h, left + w:] = value
        out[:, top:top + h, left:left + w] = x
        return out
    rows = _source_index(h, top, bottom, mode)
    cols = _source_index(w, left, right, mode)
    # np.take returns C-contiguous arrays (fancy indexing on a middle axis does not)
    return np.take(np.take(x, rows, axis=1), cols, axis=2)    # (N, H + pads, W + pads, C)


def _axis_pad_backward(grad: np.ndarray, n: int, before: int, after: int, mode: str,
                       axis: int) -> np.ndarray:
    """Adjoint of padding along one axis: fold the padded rows back onto their sources."""
    take = [slice(None)] * grad.ndim
    take[axis] = slice(before, before + n)
    out = grad[tuple(take)].copy()
    if mode == "zeros" or before == after == 0:
        return out
    sources = _source_index(n, before, after, mode)
    for padded in list(range(before)) + list(range(before + n, before + n + after)):
        src = [slice(None)] * grad.ndim
        dst = [slice(None)] * grad.ndim
        src[axis] = padded
        dst[axis] = sources[padded]
        out[tuple(dst)] += grad[tuple(src)]
    return out


def pad_nhwc_backward(dy: np.ndarray, pads, mode: str, in_hw) -> np.ndarray:
    """Gradient of :func:`pad_nhwc` with respect to its input, NHWC."""
    (top, bottom), (left, right) = pads
    if top == bottom == left == right == 0:
        return dy
    if mode == "zeros":
        return dy[:, top:top + in_hw[0], left:left + in_hw[1]]
    grad = _axis_pad_backward(dy, in_hw[0], top, bottom, mode, axis=1)
    return _axis_pad_backward(grad, in_hw[1], left, right, mode, axis=2)


# -------------------------------------------------------------------------- public
def _explicit_pads(pads, where: str):
    if isinstance(pads, str):
        raise ShapeError(f"{where}: pads must be an int, (ph, pw) or ((top, bottom), "
                         f"(left, right)), got {pads!r}")
    return normalize_padding(pads, where)


def pad2d(x, pads, mode: str = "zeros", data_format: str = "channels_last",
          value: float = 0.0) -> np.ndarray:
    """Pad the two spatial axes of a 4-D batch.

    Shapes: ``x`` is ``(N, H, W, C)`` (or ``(N, C, H, W)`` for channels_first); the result is
    ``(N, H + top + bottom, W + left + right, C)``. ``pads`` is ``((top, bottom),
    (left, right))``, ``(ph, pw)`` or an int. ``mode`` is ``"zeros"``/``"constant"``
    (filled with ``value``, 0 by default), ``"reflect"``, ``"replicate"`` or ``"circular"``.

    >>> pad2d(np.arange(3.0).reshape(1, 1, 3, 1), ((0, 0), (2, 1)), "reflect")[0, 0, :, 0]
    array([2., 1., 0., 1., 2., 1.])
    """
    where = "pad2d"
    check_data_format(data_format, where)
    x = as_float_array(x, where, "input", ndim=4, layout=layout_of(data_format))
    pads = _explicit_pads(pads, where)
    mode = check_pad_mode(mode, where)
    xl = to_channels_last(x, data_format)
    check_pads_fit(xl.shape[1:3], pads, mode, where, x.shape)
    out = pad_nhwc(xl, pads, mode, value)
    if out is xl:
        out = xl.copy()
    return from_channels_last(out, data_format)


def pad2d_backward(dy, pads, mode: str = "zeros", data_format: str = "channels_last") -> np.ndarray:
    """Gradient of :func:`pad2d`: ``dy`` is shaped like pad2d's output, the result like its
    input. Pads of a constant mode are cropped away; the other modes add each padded row and
    column onto the input cell it copied.

    >>> pad2d_backward(np.ones((1, 1, 6, 1)), ((0, 0), (2, 1)), "reflect")[0, 0, :, 0]
    array([1., 3., 2.])
    """
    where = "pad2d_backward"
    check_data_format(data_format, where)
    dy = as_float_array(dy, where, "dy", ndim=4, layout=layout_of(data_format))
    pads = _explicit_pads(pads, where)
    mode = check_pad_mode(mode, where)
    dyl = to_channels_last(dy, data_format)
    (top, bottom), (left, right) = pads
    in_hw = (dyl.shape[1] - top - bottom, dyl.shape[2] - left - right)
    if min(in_hw) <= 0:
        raise ShapeError(f"{where}: dy of shape {dy.shape} is too small for pads {pads}")
    check_pads_fit(in_hw, pads, mode, where, dy.shape)
    dx = np.array(pad_nhwc_backward(dyl, pads, mode, in_hw), copy=True)
    return from_channels_last(dx, data_format)
