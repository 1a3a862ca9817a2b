"""Geometric resampling of image batches, forward and backward, on NHWC arrays: the op under
the augmentation layers :class:`~convkit.layers.RandomRotation`,
:class:`~convkit.layers.RandomZoom` and :class:`~convkit.layers.RandomTranslation`.

A transform is Keras's 8-number row ``[a0, a1, a2, b0, b1, b2, c0, c1]`` per image that maps
each OUTPUT pixel ``(x, y)`` (column, row; pixel indices, no half-pixel offset) to the INPUT
point it reads::

    x_in = a0 * x + a1 * y + a2        y_in = b0 * x + b1 * y + b2

(``c0, c1`` must be 0: no projective part). The input is read there by ``"nearest"``
(round half away from zero) or ``"bilinear"`` interpolation; neighbours outside the image
follow ``fill_mode``, per axis of size ``n``:

============ ======================================== ===============================
fill_mode    index i outside [0, n)                   e.g. n = 3, i = -2 -1 | 0 1 2 | 3 4
============ ======================================== ===============================
"reflect"    mirrored about the edge, edge repeated   1 0 | 0 1 2 | 2 1
"wrap"       i mod n                                  1 2 | 0 1 2 | 0 1
"nearest"    clipped to the edge                      0 0 | 0 1 2 | 2 2
"constant"   the neighbour reads ``fill_value``       c c | 0 1 2 | c c
============ ======================================== ===============================

which are the rules of ``jax.scipy.ndimage.map_coordinates`` that Keras uses on JAX. The
backward pass is the exact adjoint of this linear map: each output gradient is scattered
back to the input pixels it was read from, with the same weights.

>>> image = np.arange(9.0).reshape(1, 3, 3, 1)
>>> shift_right = np.array([[1, 0, -1, 0, 1, 0, 0, 0]])        # x_in = x - 1
>>> affine_transform(image, shift_right, fill_mode="constant")[0, :, :, 0]
array([[0., 0., 1.],
       [0., 3., 4.],
       [0., 6., 7.]])
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ShapeError

__all__ = ["FILL_MODES", "INTERPOLATIONS", "SamplingPlan", "sampling_plan", "resample",
           "resample_backward", "affine_transform", "rotation_transforms",
           "zoom_transforms", "translation_transforms"]

FILL_MODES = ("reflect", "wrap", "constant", "nearest")
INTERPOLATIONS = ("nearest", "bilinear")


def _fix_index(index, size: int, fill_mode: str):
    """``(index inside [0, size), valid)``; ``valid`` is False only for constant fill."""
    if fill_mode == "reflect":      # half-sample symmetric, period 2n: ... 1 0 | 0 1 2 | 2 1 ...
        folded = index % (2 * size)
        return np.where(folded < size, folded, 2 * size - 1 - folded), True
    if fill_mode == "wrap":
        return index % size, True
    if fill_mode == "nearest":
        return np.clip(index, 0, size - 1), True
    valid = (index >= 0) & (index < size)
    return np.clip(index, 0, size - 1), valid


def _nodes(coordinate, interpolation: str):
    """The 1-D interpolation nodes ``[(integer index, weight), ...]`` for coordinates."""
    if interpolation == "nearest":
        rounded = np.sign(coordinate) * np.floor(np.abs(coordinate) + 0.5)
        return [(rounded.astype(np.int64), np.ones_like(coordinate))]
    lower = np.floor(coordinate)
    upper_weight = coordinate - lower
    lower = lower.astype(np.int64)
    return [(lower, 1.0 - upper_weight), (lower + 1, upper_weight)]


@dataclass
class SamplingPlan:
    """Where each output pixel reads: for a batch of ``B`` images of ``H x W`` and
    ``P = H_out * W_out`` output pixels with ``K`` neighbours each (1 or 4): per
    neighbour, ``index`` (B, P) into the flattened ``B*H*W`` input pixels and ``weight``
    (B, P) (zero for a neighbour outside under constant fill); ``fill_weight`` (B, P), the
    weight that reads ``fill_value``."""
    input_shape: tuple          # (B, H, W)
    output_hw: tuple            # (H_out, W_out)
    index: list                 # K arrays (B, P)
    weight: list                # K arrays (B, P)
    fill_weight: np.ndarray


def _check(fill_mode: str, interpolation: str, transforms, batch: int) -> np.ndarray:
    if fill_mode not in FILL_MODES:
        raise ShapeError(f"affine_transform: fill_mode must be one of {FILL_MODES}, got "
                         f"{fill_mode!r}")
    if interpolation not in INTERPOLATIONS:
        raise ShapeError(f"affine_transform: interpolation must be one of {INTERPOLATIONS}, "
                         f"got {interpolation!r}")
    transforms = np.asarray(transforms, dtype=np.float64)
    if transforms.ndim == 1:
        transforms = np.broadcast_to(transforms, (batch, transforms.shape[0]))
    if transforms.shape != (batch, 8):
        raise ShapeError(f"affine_transform: transforms must have shape (8,) or ({batch}, 8) "
                         f"for {batch} images, got {transforms.shape}")
    if np.any(transforms[:, 6:] != 0):
        raise ShapeError("affine_transform: projective transforms (c0, c1 != 0) are not "
                         "supported")
    return transforms


def sampling_plan(input_shape, transforms, interpolation="bilinear", fill_mode="constant",
                  output_hw=None) -> SamplingPlan:
    """The :class:`SamplingPlan` for images of ``input_shape`` ``(B, H, W, ...)`` under
    ``transforms`` (B, 8); the output is ``output_hw`` (default ``(H, W)``)."""
    batch, height, width = (int(s) for s in input_shape[:3])
    transforms = _check(fill_mode, interpolation, transforms, batch)
    out_h, out_w = output_hw or (height, width)
    rows, cols = np.meshgrid(np.arange(out_h, dtype=np.float64),
                             np.arange(out_w, dtype=np.float64), indexing="ij")
    rows, cols = rows.reshape(1, -1), cols.reshape(1, -1)                 # (1, P)
    a0, a1, a2, b0, b1, b2 = (transforms[:, i:i + 1] for i in range(6))    # each (B, 1)
    x_in = a0 * cols + a1 * rows + a2                                      # (B, P)
    y_in = b0 * cols + b1 * rows + b2
    base = (np.arange(batch) * height * width).reshape(batch, 1)          # image offsets
    row_nodes = [(*_fix_index(row, height, fill_mode), weight)
                 for row, weight in _nodes(y_in, interpolation)]
    col_nodes = [(*_fix_index(col, width, fill_mode), weight)
                 for col, weight in _nodes(x_in, interpolation)]
    indices, weights, fill = [], [], np.zeros_like(x_in)
    for row, row_valid, row_weight in row_nodes:
        for col, col_valid, col_weight in col_nodes:
            weight = row_weight * col_weight
            indices.append(base + row * width + col)
            if fill_mode == "constant":
                valid = row_valid & col_valid
                fill += np.where(valid, 0.0, weight)
                weight = np.where(valid, weight, 0.0)
            weights.append(weight)
    return SamplingPlan((batch, height, width), (out_h, out_w), indices, weights, fill)


def resample(images, plan: SamplingPlan, fill_value=0.0) -> np.ndarray:
    """Read NHWC ``images`` through ``plan``: ``(B, H_out, W_out, C)``, in their dtype."""
    batch, height, width = plan.input_shape
    channels = images.shape[-1]
    flat = images.reshape(batch * height * width, channels)               # (B*H*W, C)
    out = np.zeros(plan.fill_weight.shape + (channels,), dtype=images.dtype)  # (B, P, C)
    for index, weight in zip(plan.index, plan.weight):                     # the neighbours
        out += weight[..., None].astype(images.dtype) * flat[index]
    if fill_value:
        out += (fill_value * plan.fill_weight[..., None]).astype(images.dtype)
    return out.reshape(batch, *plan.output_hw, channels)


def resample_backward(dy, plan: SamplingPlan) -> np.ndarray:
    """The adjoint of :func:`resample` for ``images``: ``dy`` (B, H_out, W_out, C) scattered
    back to ``(B, H, W, C)`` (the fill value is a constant: no gradient)."""
    batch, height, width = plan.input_shape
    channels = dy.shape[-1]
    dy = dy.reshape(batch, -1, channels)                                   # (B, P, C)
    size = batch * height * width * channels
    dx = np.zeros(size, dtype=np.float64)
    channel = np.arange(channels)
    for index, weight in zip(plan.index, plan.weight):
        target = index[..., None] * channels + channel                     # (B, P, C)
        contribution = weight[..., None] * dy
        dx += np.bincount(target.ravel(), weights=contribution.ravel(), minlength=size)
    return dx.reshape(batch, height, width, channels).astype(dy.dtype, copy=False)


def affine_transform(images, transforms, interpolation="bilinear", fill_mode="constant",
                     fill_value=0.0) -> np.ndarray:
    """Resample NHWC ``images`` (B, H, W, C) under ``transforms`` ((8,) or (B, 8), see the
    module docstring); output ``(B, H, W, C)``."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ShapeError(f"affine_transform: expected 4-D images (batch, height, width, "
                         f"channels), got shape {images.shape}")
    plan = sampling_plan(images.shape, transforms, interpolation, fill_mode)
    return resample(images, plan, fill_value)


# ------------------------------------------------------------------ transforms, as Keras
def rotation_transforms(angles_degrees, height: int, width: int) -> np.ndarray:
    """(B, 8) rotations about the image centre ``((W-1)/2, (H-1)/2)`` by ``angles``
    (degrees; positive turns the content counter-clockwise on screen)."""
    theta = np.deg2rad(np.asarray(angles_degrees, dtype=np.float64))
    cos, sin = np.cos(theta), np.sin(theta)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    zeros = np.zeros_like(theta)
    return np.stack([cos, -sin, cx - cx * cos + cy * sin,
                     sin, cos, cy - cx * sin - cy * cos, zeros, zeros], axis=-1)


def zoom_transforms(height_zoom, width_zoom, height: int, width: int) -> np.ndarray:
    """(B, 8) zooms about the image centre: the output reads ``zoom`` times as far from the
    centre, so a zoom above 1 shows more of the image (zooms out)."""
    zy = np.asarray(height_zoom, dtype=np.float64)
    zx = np.asarray(width_zoom, dtype=np.float64)
    zeros = np.zeros_like(zx)
    return np.stack([zx, zeros, (width - 1) / 2.0 * (1 - zx),
                     zeros, zy, (height - 1) / 2.0 * (1 - zy), zeros, zeros], axis=-1)


def translation_transforms(dx, dy) -> np.ndarray:
    """(B, 8) shifts of the content by ``dx`` pixels right and ``dy`` pixels down."""
    dx = np.asarray(dx, dtype=np.float64)
    dy = np.asarray(dy, dtype=np.float64)
    zeros, ones = np.zeros_like(dx), np.ones_like(dx)
    return np.stack([ones, zeros, -dx, zeros, ones, -dy, zeros, zeros], axis=-1)
