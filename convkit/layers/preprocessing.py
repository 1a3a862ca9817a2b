"""Image augmentation layers, active only in training (``training=True``), as in Keras 3:
:class:`RandomFlip`, :class:`RandomRotation`, :class:`RandomZoom`,
:class:`RandomTranslation`, :class:`RandomContrast` and :class:`RandomCrop`.

Each draws from its own generator (``seed=``; without one, from the root that
:func:`convkit.random.set_seed` resets), once per image (RandomCrop: once per batch, as
Keras), so the same seed gives the same augmented batches. The draw of the last training
call is kept in ``layer.transformation``. Outside training every layer is the identity
(RandomCrop: a centre crop, so the output shape is the same in both modes).

Backward passes are exact: the flip of the gradient, the gradient padded back into the
uncropped frame, the adjoint of the resampling (:mod:`convkit.ops.image`) and the
derivative of the contrast change; the identity outside training.

Inputs are 4-D, ``(N, H, W, C)`` or ``(N, C, H, W)`` with ``data_format="channels_first"``.
Random geometric layers resample with ``interpolation`` (``"bilinear"`` or ``"nearest"``)
and fill what comes from outside the image by ``fill_mode`` (``"reflect"``, ``"wrap"``,
``"constant"`` with ``fill_value``, ``"nearest"``), the rules of Keras on JAX.
"""
from __future__ import annotations

from numbers import Integral, Real

import numpy as np

from ..errors import ConvkitError, ShapeError
from ..ops import image as image_ops
from .conv import ImageLayer, positive_int

__all__ = ["RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation",
           "RandomContrast", "RandomCrop"]


def _factor_range(value, name: str, where: str, low: float, high: float,
                  symmetric: bool = True) -> tuple:
    """Keras's factor forms: a number ``f`` -> ``(-|f|, |f|)`` (``(|f|, |f|)`` when not
    ``symmetric``), a pair ``(a, b)`` -> ``(min, max)``; each within ``[low, high]``."""
    def number(v):
        if not isinstance(v, Real) or isinstance(v, bool) or not np.isfinite(v) \
                or not low <= v <= high:
            raise ConvkitError(f"{where}: {name} must be a number in [{low}, {high}] or a "
                               f"pair of them, got {value!r}")
        return float(v)

    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ConvkitError(f"{where}: {name} must be a number or a pair (lower, upper), "
                               f"got {value!r}")
        return tuple(sorted(number(v) for v in value))
    magnitude = abs(number(value))
    return (-magnitude if symmetric else magnitude, magnitude)


def _config_factor(value):
    return list(value) if isinstance(value, (list, tuple)) else value


class _RandomImageLayer(ImageLayer):
    """Shared machinery: 4-D checks, channels_last working layout, the identity outside
    training, the seed in the config."""

    def __init__(self, seed=None, data_format=None, **kwargs):
        super().__init__(data_format=data_format, seed=seed, **kwargs)
        self.transformation = None

    def compute_output_shape(self, input_shape):
        return self._check_rank(input_shape)

    def _to_nhwc(self, x):
        return x if self.data_format == "channels_last" else x.transpose(0, 2, 3, 1)

    def _from_nhwc(self, x):
        return x if self.data_format == "channels_last" else x.transpose(0, 3, 1, 2)

    def forward(self, x, training: bool = False):
        x = self._image(x)
        self.compute_output_shape(x.shape)
        if not training:
            y, state = self._infer(x)
            self.cache = ("infer", y.shape, state)
            return y
        y, state = self._augment(self._to_nhwc(x))
        y = np.ascontiguousarray(self._from_nhwc(y))
        self.cache = ("train", y.shape, state)
        return y

    def backward(self, dy):
        kind, output_shape, state = self._cached()
        dy = self._gradient(dy, output_shape)
        if kind == "infer":
            return self._infer_backward(dy, state)
        dx = self._augment_backward(self._to_nhwc(dy), state)
        return np.ascontiguousarray(self._from_nhwc(dx))

    # -- inference: the identity unless a subclass says otherwise
    def _infer(self, x):
        return x, None

    def _infer_backward(self, dy, state):
        return dy

    # -- what subclasses define, on channels_last arrays
    def _augment(self, x):
        raise NotImplementedError

    def _augment_backward(self, dy, state):
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


# ----------------------------------------------------------------------------- flips
class RandomFlip(_RandomImageLayer):
    """Flip each image left-right (``mode="horizontal"``), top-bottom (``"vertical"``) or
    each way independently (``"horizontal_and_vertical"``, the default), each flip with
    probability 1/2. ``transformation`` holds the booleans ``{"horizontal": (N,),
    "vertical": (N,)}``. The gradient is flipped back the same way.

    >>> layer = RandomFlip("horizontal", seed=1)
    >>> y = layer(np.arange(8.0).reshape(2, 1, 4, 1), training=True)
    >>> flipped = layer.transformation["horizontal"]
    >>> bool(np.array_equal(y[flipped], np.arange(8.0).reshape(2, 1, 4, 1)[flipped, :, ::-1]))
    True
    """

    MODES = ("horizontal", "vertical", "horizontal_and_vertical")

    def __init__(self, mode="horizontal_and_vertical", seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        if mode not in self.MODES:
            raise ConvkitError(f"RandomFlip: mode must be one of {self.MODES}, got {mode!r}")
        self.mode = mode

    def _flips(self, batch: int) -> dict:
        flips = {}
        for direction in ("horizontal", "vertical"):
            if direction in self.mode:
                flips[direction] = self.rng.random(batch) < 0.5
            else:
                flips[direction] = np.zeros(batch, dtype=bool)
        return flips

    @staticmethod
    def _apply(x, flips):
        out = x.copy()
        for direction, axis in (("horizontal", 2), ("vertical", 1)):
            chosen = flips[direction]
            out[chosen] = np.flip(out[chosen], axis=axis)
        return out

    def _augment(self, x):
        self.transformation = self._flips(x.shape[0])
        return self._apply(x, self.transformation), self.transformation

    def _augment_backward(self, dy, flips):
        return self._apply(dy, flips)           # a flip is its own inverse and adjoint

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


# ----------------------------------------------------------------------------- resampling
class _RandomAffine(_RandomImageLayer):
    """Layers that resample each image under a random affine transform."""

    def __init__(self, fill_mode="reflect", interpolation="bilinear", fill_value=0.0,
                 seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        where = type(self).__name__
        if fill_mode not in image_ops.FILL_MODES:
            raise ConvkitError(f"{where}: fill_mode must be one of {image_ops.FILL_MODES}, "
                               f"got {fill_mode!r}")
        if interpolation not in image_ops.INTERPOLATIONS:
            raise ConvkitError(f"{where}: interpolation must be one of "
                               f"{image_ops.INTERPOLATIONS}, got {interpolation!r}")
        if not isinstance(fill_value, Real) or isinstance(fill_value, bool):
            raise ConvkitError(f"{where}: fill_value must be a number, got {fill_value!r}")
        self.fill_mode, self.interpolation = fill_mode, interpolation
        self.fill_value = float(fill_value)

    def _draw(self, batch: int, height: int, width: int) -> tuple:
        """``(transformation dict, transforms (batch, 8))``."""
        raise NotImplementedError

    def _augment(self, x):
        self.transformation, transforms = self._draw(*x.shape[:3])
        plan = image_ops.sampling_plan(x.shape, transforms, self.interpolation,
                                       self.fill_mode)
        return image_ops.resample(x, plan, self.fill_value), plan

    def _augment_backward(self, dy, plan):
        return image_ops.resample_backward(dy, plan)

    def get_config(self):
        return {**super().get_config(), "fill_mode": self.fill_mode,
                "interpolation": self.interpolation, "fill_value": self.fill_value}


class RandomRotation(_RandomAffine):
    """Rotate each image about its centre by a random angle ``uniform(lower, upper) * 360``
    degrees; ``factor`` is a fraction of a full turn: ``f`` means ``(-f, f)``, or give
    ``(lower, upper)``, within [-1, 1]. ``transformation``: ``{"angle": (N,) degrees}``.

    >>> layer = RandomRotation((0.25, 0.25), fill_mode="constant")     # a quarter turn
    >>> layer(np.arange(4.0).reshape(1, 2, 2, 1), training=True)[0, :, :, 0].round(6)
    array([[1., 3.],
           [0., 2.]])
    """

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        super().__init__(fill_mode, interpolation, fill_value, seed, data_format, **kwargs)
        self.factor = _factor_range(factor, "factor", "RandomRotation", -1.0, 1.0)

    def _draw(self, batch, height, width):
        angles = self.rng.uniform(self.factor[0], self.factor[1], batch) * 360.0
        return {"angle": angles}, image_ops.rotation_transforms(angles, height, width)

    def get_config(self):
        return {**super().get_config(), "factor": list(self.factor)}


class RandomZoom(_RandomAffine):
    """Zoom each image about its centre by ``1 + uniform(lower, upper)`` per axis: a
    positive factor zooms out (shows more, filled by ``fill_mode``), a negative one zooms
    in. ``height_factor`` ``f`` means ``(-f, f)``, or give ``(lower, upper)``, within
    (-1, 1]; ``width_factor=None`` zooms both axes by the same amount (keeps the aspect).
    ``transformation``: ``{"height_zoom": (N,), "width_zoom": (N,)}``.

    >>> layer = RandomZoom((-0.5, -0.5), interpolation="nearest")      # twice as large
    >>> layer(np.arange(16.0).reshape(1, 4, 4, 1), training=True)[0, :, :, 0]
    array([[ 5.,  5.,  6.,  6.],
           [ 5.,  5.,  6.,  6.],
           [ 9.,  9., 10., 10.],
           [ 9.,  9., 10., 10.]])
    """

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect",
                 interpolation="bilinear", seed=None, fill_value=0.0, data_format=None,
                 **kwargs):
        super().__init__(fill_mode, interpolation, fill_value, seed, data_format, **kwargs)
        self.height_factor, self.width_factor = height_factor, width_factor
        self._height_range = self._range(height_factor, "height_factor")
        self._width_range = None if width_factor is None else self._range(width_factor,
                                                                          "width_factor")

    @staticmethod
    def _range(value, name):
        lower, upper = _factor_range(value, name, "RandomZoom", -1.0, 1.0)
        if lower <= -1.0:
            raise ConvkitError(f"RandomZoom: {name} must be above -1 (a zoom factor "
                               f"1 + {lower} would be <= 0), got {value!r}")
        return lower, upper

    def _draw(self, batch, height, width):
        height_zoom = 1.0 + self.rng.uniform(*self._height_range, batch)
        width_zoom = height_zoom if self._width_range is None else \
            1.0 + self.rng.uniform(*self._width_range, batch)
        return ({"height_zoom": height_zoom, "width_zoom": width_zoom},
                image_ops.zoom_transforms(height_zoom, width_zoom, height, width))

    def get_config(self):
        return {**super().get_config(), "height_factor": _config_factor(self.height_factor),
                "width_factor": _config_factor(self.width_factor)}


class RandomTranslation(_RandomAffine):
    """Shift each image by ``uniform(lower, upper) * H`` pixels down and
    ``uniform(...) * W`` pixels right; each factor ``f`` means ``(-f, f)``, or give
    ``(lower, upper)``, within [-1, 1]. ``transformation``: ``{"dy": (N,), "dx": (N,)}``
    in pixels.

    >>> layer = RandomTranslation(0.0, (0.5, 0.5), fill_mode="constant")   # 2 px right
    >>> layer(np.arange(1.0, 5.0).reshape(1, 1, 4, 1), training=True).ravel()
    array([0., 0., 1., 2.])
    """

    def __init__(self, height_factor, width_factor, fill_mode="reflect",
                 interpolation="bilinear", seed=None, fill_value=0.0, data_format=None,
                 **kwargs):
        super().__init__(fill_mode, interpolation, fill_value, seed, data_format, **kwargs)
        self.height_factor, self.width_factor = height_factor, width_factor
        self._height_range = _factor_range(height_factor, "height_factor",
                                           "RandomTranslation", -1.0, 1.0)
        self._width_range = _factor_range(width_factor, "width_factor", "RandomTranslation",
                                          -1.0, 1.0)

    def _draw(self, batch, height, width):
        dy = self.rng.uniform(*self._height_range, batch) * height
        dx = self.rng.uniform(*self._width_range, batch) * width
        return {"dy": dy, "dx": dx}, image_ops.translation_transforms(dx, dy)

    def get_config(self):
        return {**super().get_config(), "height_factor": _config_factor(self.height_factor),
                "width_factor": _config_factor(self.width_factor)}


# ----------------------------------------------------------------------------- contrast
class RandomContrast(_RandomImageLayer):
    """Scale each image's deviation from its per-channel mean by a random factor ``k`` in
    ``[1 - lower, 1 + upper]``, then clip to ``value_range``::

        y = clip((x - mean_HW(x)) * k + mean_HW(x), *value_range)

    ``factor`` ``f`` means ``lower = upper = f`` (as Keras documents), or give
    ``(lower, upper)``, within [0, 1]. ``transformation``: ``{"contrast_factor": (N,)}``.

    >>> layer = RandomContrast(0.5, value_range=(0, 10), seed=0)       # k in [0.5, 1.5]
    >>> y = layer(np.array([[[[2.0], [6.0]]]]), training=True)        # mean 4
    >>> k = layer.transformation["contrast_factor"][0]
    >>> bool(np.allclose(y.ravel(), [4 - 2 * k, 4 + 2 * k])), bool(0.5 <= k <= 1.5)
    (True, True)
    """

    def __init__(self, factor, value_range=(0, 255), seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = _factor_range(factor, "factor", "RandomContrast", 0.0, 1.0,
                                    symmetric=False)
        if not isinstance(value_range, (list, tuple)) or len(value_range) != 2 or not all(
                isinstance(v, Real) and not isinstance(v, bool) for v in value_range) or \
                value_range[0] > value_range[1]:
            raise ConvkitError(f"RandomContrast: value_range must be (low, high) with "
                               f"low <= high, got {value_range!r}")
        self.value_range = tuple(float(v) for v in value_range)

    def _augment(self, x):
        batch = x.shape[0]
        factor = self.rng.uniform(1.0 - self.factor[0], 1.0 + self.factor[1], batch)
        self.transformation = {"contrast_factor": factor}
        k = factor.reshape(batch, 1, 1, 1).astype(x.dtype)
        mean = x.mean(axis=(1, 2), keepdims=True)                          # (N, 1, 1, C)
        unclipped = (x - mean) * k + mean
        low, high = self.value_range
        inside = (unclipped >= low) & (unclipped <= high)
        return np.clip(unclipped, low, high).astype(x.dtype, copy=False), (k, inside)

    def _augment_backward(self, dy, state):
        # y = k x + (1 - k) mean(x) inside the clip: dx = k g + (1 - k) mean_HW(g)
        k, inside = state
        g = dy * inside
        return k * g + (1 - k) * g.mean(axis=(1, 2), keepdims=True)

    def get_config(self):
        return {**super().get_config(), "factor": list(self.factor),
                "value_range": list(self.value_range)}


# ----------------------------------------------------------------------------- crop
class RandomCrop(_RandomImageLayer):
    """Crop a ``height x width`` window at a random place (one place for the whole batch,
    as Keras) in training, and the centred window otherwise, so the output is
    ``(N, height, width, C)`` in both modes. The gradient is ``dy`` put back into the
    window of a zero array of the input's shape. Inputs smaller than the window are an
    error. ``transformation``: ``{"top": int, "left": int}``.

    >>> layer = RandomCrop(2, 2)
    >>> layer(np.arange(16.0).reshape(1, 4, 4, 1))[0, :, :, 0]          # centre
    array([[ 5.,  6.],
           [ 9., 10.]])
    """

    def __init__(self, height, width, seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.height = positive_int(height, "height", "RandomCrop")
        self.width = positive_int(width, "width", "RandomCrop")

    def compute_output_shape(self, input_shape):
        shape = list(self._check_rank(input_shape))
        axes = (1, 2) if self.data_format == "channels_last" else (2, 3)
        for axis, size, name in zip(axes, (self.height, self.width), ("height", "width")):
            if shape[axis] is not None and shape[axis] < size:
                raise ShapeError(f"RandomCrop: the input {name} {shape[axis]} is smaller than "
                                 f"the crop {name} {size} (input shape {tuple(input_shape)})")
            shape[axis] = size
        return tuple(shape)

    def _crop(self, nhwc, top: int, left: int):
        window = nhwc[:, top:top + self.height, left:left + self.width]   # (N, h, w, C)
        return window, (nhwc.shape, top, left)

    def _uncrop(self, dy, state):
        shape, top, left = state
        dx = np.zeros(shape, dtype=dy.dtype)
        dx[:, top:top + self.height, left:left + self.width] = dy
        return dx

    def _augment(self, x):
        top = int(self.rng.integers(0, x.shape[1] - self.height + 1))
        left = int(self.rng.integers(0, x.shape[2] - self.width + 1))
        self.transformation = {"top": top, "left": left}
        return self._crop(x, top, left)

    def _augment_backward(self, dy, state):
        return self._uncrop(dy, state)

    def _infer(self, x):
        nhwc = self._to_nhwc(x)
        top, left = (nhwc.shape[1] - self.height) // 2, (nhwc.shape[2] - self.width) // 2
        y, state = self._crop(nhwc, top, left)
        return np.ascontiguousarray(self._from_nhwc(y)), state

    def _infer_backward(self, dy, state):
        dx = self._uncrop(self._to_nhwc(dy), state)
        return np.ascontiguousarray(self._from_nhwc(dx))

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width}
