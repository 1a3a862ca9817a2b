"""Layers that change an image's resolution or its pixel values: :class:`UpSampling2D`,
:class:`Resizing` (over :mod:`convkit.ops.resize`) and :class:`Rescaling`."""
from __future__ import annotations

import numpy as np

from .. import shapes
from ..errors import ConvkitError, ShapeError
from .base import Layer
from .conv import ImageLayer, positive_int

__all__ = ["UpSampling2D", "Resizing", "Rescaling"]


class _Resample(ImageLayer):
    """Shared: rank checks, the output shape from :meth:`_out_hw`, the resize op's calls."""

    def _out_hw(self, in_hw) -> tuple:
        raise NotImplementedError

    def _check_interpolation(self, interpolation):
        from ..ops.resize import check_interpolation
        return check_interpolation(interpolation, type(self).__name__)

    def compute_output_shape(self, input_shape):
        out = list(self._check_rank(input_shape))
        for axis, size in zip(self.spatial_axes,
                              self._out_hw([out[a] for a in self.spatial_axes])):
            out[axis] = size
        return tuple(out)

    def _framing(self, x_shape):
        """``(cropping, padding)`` applied to the input before resizing, each
        ``((top, bottom), (left, right))`` or None."""
        return None, None

    def forward(self, x, training: bool = False):
        from ..ops.padding import pad2d
        from ..ops.resize import crop2d, resize2d
        x = self._image(x)
        cropping, padding = self._framing(x.shape)
        if cropping is not None:
            x = crop2d(x, cropping, self.data_format)
        if padding is not None:
            x = pad2d(x, padding, "constant", self.data_format, value=self.fill_value)
        size = self._out_hw([x.shape[a] for a in self.spatial_axes])
        y = resize2d(x, size, self.interpolation, self.data_format)
        self.cache = (x, y.shape, size, cropping, padding)
        return y

    def backward(self, dy):
        from ..ops.padding import pad2d_backward
        from ..ops.resize import crop2d_backward, resize2d_backward
        x, y_shape, size, cropping, padding = self._cached()
        dy = self._gradient(dy, y_shape, x.dtype)
        dx = resize2d_backward(dy, x, size, self.interpolation, self.data_format)
        if padding is not None:
            dx = pad2d_backward(dx, padding, "zeros", self.data_format)
        return dx if cropping is None else crop2d_backward(dx, cropping, self.data_format)


class UpSampling2D(_Resample):
    """Repeat rows ``size[0]`` times and columns ``size[1]`` times (``"nearest"``), or
    interpolate between them (``"bilinear"``, half-pixel centres as in Keras / TensorFlow).

    Shape ``(N, H, W, C) -> (N, H * size[0], W * size[1], C)``; no parameters.

    >>> UpSampling2D(2).compute_output_shape((None, 7, 7, 16))
    (None, 14, 14, 16)
    """

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.size = shapes.to_pair(size, "size", "UpSampling2D")
        self.interpolation = self._check_interpolation(interpolation)

    def _out_hw(self, in_hw):
        return tuple(None if n is None else n * s for n, s in zip(in_hw, self.size))

    def get_config(self):
        return {**super().get_config(), "size": list(self.size),
                "interpolation": self.interpolation}


class Resizing(_Resample):
    """Resize images to ``(height, width)`` with ``"bilinear"`` (default) or ``"nearest"``
    interpolation, as Keras's ``Resizing`` (no antialiasing). With
    ``crop_to_aspect_ratio=True`` the largest centred crop with the target's aspect ratio
    is resized (:func:`convkit.shapes.aspect_crop`), so the image is not distorted; with
    ``pad_to_aspect_ratio=True`` the image is padded with ``fill_value`` on both sides to
    that aspect ratio first (:func:`convkit.shapes.aspect_pad`).

    Shape ``(N, H, W, C) -> (N, height, width, C)``; no parameters.

    >>> Resizing(64, 48).compute_output_shape((None, 28, 28, 3))
    (None, 64, 48, 3)
    """

    def __init__(self, height, width, interpolation="bilinear", crop_to_aspect_ratio=False,
                 pad_to_aspect_ratio=False, fill_mode="constant", fill_value=0.0,
                 antialias=False, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.height = positive_int(height, "height", "Resizing")
        self.width = positive_int(width, "width", "Resizing")
        self.interpolation = self._check_interpolation(interpolation)
        self.crop_to_aspect_ratio = bool(crop_to_aspect_ratio)
        self.pad_to_aspect_ratio = bool(pad_to_aspect_ratio)
        if self.crop_to_aspect_ratio and self.pad_to_aspect_ratio:
            raise ConvkitError("Resizing: crop_to_aspect_ratio and pad_to_aspect_ratio "
                               "cannot both be True")
        if fill_mode != "constant":
            raise ConvkitError(f"Resizing: fill_mode must be 'constant', got {fill_mode!r}")
        if antialias:
            raise ConvkitError("Resizing: antialias=True is not supported (the plain "
                               "interpolation is; they differ only when shrinking)")
        self.fill_mode, self.fill_value = fill_mode, float(fill_value)

    def _out_hw(self, in_hw):
        return (self.height, self.width)

    def _framing(self, x_shape):
        in_hw = tuple(x_shape[a] for a in self.spatial_axes)
        target = (self.height, self.width)
        if self.crop_to_aspect_ratio:
            return shapes.aspect_crop(in_hw, target), None
        if self.pad_to_aspect_ratio:
            return None, shapes.aspect_pad(in_hw, target)
        return None, None

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width,
                "interpolation": self.interpolation,
                "crop_to_aspect_ratio": self.crop_to_aspect_ratio,
                "pad_to_aspect_ratio": self.pad_to_aspect_ratio, "fill_mode": self.fill_mode,
                "fill_value": self.fill_value, "antialias": False}


class Rescaling(Layer):
    """``y = x * scale + offset``, e.g. ``Rescaling(1 / 255)`` maps pixels to [0, 1] and
    ``Rescaling(1 / 127.5, offset=-1)`` to [-1, 1]. ``scale`` and ``offset`` are numbers or
    per-channel lists (broadcast against the last axis). Any shape; no parameters.

    >>> Rescaling(1 / 127.5, offset=-1)(np.array([[0.0, 255.0]])).tolist()
    [[-1.0, 1.0]]
    """

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = _number_or_list(scale, "scale")
        self.offset = _number_or_list(offset, "offset")

    def forward(self, x, training: bool = False):
        x = self._input(x)
        for name, value in (("scale", self.scale), ("offset", self.offset)):
            if isinstance(value, list) and len(value) != x.shape[-1]:
                raise ShapeError(f"Rescaling: {name} has {len(value)} per-channel values but "
                                 f"the input has {x.shape[-1]} channels (shape {x.shape})")
        y = x * np.asarray(self.scale, dtype=x.dtype) + np.asarray(self.offset, dtype=x.dtype)
        self.cache = (x.shape, x.dtype)
        return y

    def backward(self, dy):
        x_shape, dtype = self._cached()
        dy = self._gradient(dy, x_shape, dtype)
        return dy * np.asarray(self.scale, dtype=dtype)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


def _number_or_list(value, name: str):
    """A float, or a list of floats (per channel), as JSON."""
    try:
        numbers = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        numbers = None
    if numbers is None or numbers.ndim > 1 or numbers.size == 0:
        raise ConvkitError(f"Rescaling: {name} must be a number or a list of numbers, "
                           f"got {value!r}")
    return float(numbers) if numbers.ndim == 0 else [float(v) for v in numbers]
