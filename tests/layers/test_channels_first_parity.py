"""channels_first against Keras 3: the image layers with weights or resampling give Keras's
outputs and gradients on (N, C, H, W) too."""
import numpy as np
import pytest

from convkit.layers import Conv2DTranspose, Cropping2D, Resizing, SeparableConv2D, UpSampling2D
from tests.layers.keras_parity import check_keras_parity, keras_layers


@pytest.mark.parametrize("cls, kwargs", [
    (Conv2DTranspose, {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same",
                       "output_padding": 1}),
    (SeparableConv2D, {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same",
                       "depth_multiplier": 2}),
    (UpSampling2D, {"size": (2, 3), "interpolation": "bilinear"}),
    (Resizing, {"height": 7, "width": 3, "crop_to_aspect_ratio": True}),
    (Cropping2D, {"cropping": ((1, 0), (2, 1))}),
], ids=lambda v: v.__name__ if isinstance(v, type) else "")
def test_channels_first_keras_parity(rng, cls, kwargs):
    layers = keras_layers()
    kwargs = dict(kwargs, data_format="channels_first")
    x = rng.standard_normal((2, 3, 5, 4))                         # (N, C, H, W)
    check_keras_parity(cls(dtype="float64", **kwargs),
                       lambda dtype: getattr(layers, cls.__name__)(dtype=dtype, **kwargs), x, rng)
