"""Regularisation layers active only in training (``training=True``), each drawing from its
own generator (``seed=``, else one from :func:`convkit.random.set_seed`'s root):
:class:`SpatialDropout2D` (whole feature maps) and :class:`GaussianNoise` (additive noise).
At inference both are the identity."""
from __future__ import annotations

from numbers import Real

import numpy as np

from ..errors import ConvkitError, ShapeError
from .base import Layer, data_format_arg
from .core import Dropout

__all__ = ["SpatialDropout2D", "GaussianNoise"]


class SpatialDropout2D(Dropout):
    """Dropout of whole channels: in training each (sample, channel) feature map is kept
    with probability ``1 - rate`` and scaled by ``1 / (1 - rate)``, or zeroed entirely.

    Input 4-D, ``(N, H, W, C)`` (or ``(N, C, H, W)`` with ``data_format="channels_first"``);
    the mask has shape ``(N, 1, 1, C)`` (``(N, C, 1, 1)``), kept in ``layer.mask``.

    >>> layer = SpatialDropout2D(0.5, seed=0)
    >>> y = layer(np.ones((2, 3, 3, 4)), training=True)
    >>> bool(np.all((y == 0) | (y == 2))), bool(np.all(y == y[:, :1, :1, :]))
    (True, True)
    """

    def __init__(self, rate, data_format=None, seed=None, **kwargs):
        super().__init__(rate, seed=seed, **kwargs)
        self.data_format = data_format_arg(data_format, "SpatialDropout2D")

    def _check_array(self, x) -> None:
        self.compute_output_shape(np.shape(x))

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 4:
            raise ShapeError(f"SpatialDropout2D: expected a 4-D input ({self.data_format}), "
                             f"got shape {input_shape}")
        return input_shape

    def forward(self, x, training: bool = False):
        self.compute_output_shape(np.shape(x))
        return super().forward(x, training)

    def _mask_shape(self, shape) -> tuple:
        if self.data_format == "channels_last":
            return (shape[0], 1, 1, shape[3])            # (N, 1, 1, C)
        return (shape[0], shape[1], 1, 1)                # (N, C, 1, 1)

    def get_config(self):
        cfg = super().get_config()
        del cfg["noise_shape"]
        return {**cfg, "data_format": self.data_format}


class GaussianNoise(Layer):
    """Adds zero-mean normal noise of standard deviation ``stddev`` in training; the
    gradient passes unchanged (``dx = dy``). Any input shape.

    >>> layer = GaussianNoise(0.1, seed=0)
    >>> x = np.zeros((1000, 10))
    >>> bool(np.all(layer(x) == x)), round(float(layer(x, training=True).std()), 1)
    (True, 0.1)
    """

    def __init__(self, stddev, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not isinstance(stddev, Real) or isinstance(stddev, bool) or \
                not np.isfinite(stddev) or stddev < 0:
            raise ConvkitError(f"GaussianNoise: stddev must be a number >= 0, got {stddev!r}")
        self.stddev = float(stddev)

    def forward(self, x, training: bool = False):
        x = self._input(x)
        self.cache = x.shape
        if not training or self.stddev == 0.0:
            return x
        noise = self.rng.standard_normal(x.shape, dtype=x.dtype)
        noise *= x.dtype.type(self.stddev)
        return x + noise

    def backward(self, dy):
        return self._gradient(dy, self._cached())

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}
