import numpy as np
import pytest

from convkit.errors import ConvkitError, ShapeError
from convkit.layers import Rescaling, Resizing, UpSampling2D
from tests.layers.helpers import check_config_and_archive, check_layer_gradients
from tests.layers.keras_parity import check_keras_parity, keras_layers


# ----------------------------------------------------------------------------- UpSampling2D
@pytest.mark.parametrize("kwargs, input_shape, out_shape", [
    ({}, (None, 7, 7, 16), (None, 14, 14, 16)),
    ({"size": (3, 1), "interpolation": "bilinear"}, (None, 4, 5, 2), (None, 12, 5, 2)),
    ({"size": 2, "data_format": "channels_first"}, (None, 2, 4, 5), (None, 2, 8, 10)),
    ({}, (None, None, 5, 3), (None, None, 10, 3)),
])
def test_upsampling_shapes(kwargs, input_shape, out_shape):
    layer = UpSampling2D(**kwargs)
    assert layer.compute_output_shape(input_shape) == out_shape
    layer.build(input_shape)
    assert layer.output_shape == out_shape and layer.count_params() == 0


def test_upsampling_nearest_repeats(rng):
    x = rng.standard_normal((2, 3, 4, 2)).astype(np.float32)
    y = UpSampling2D((2, 3))(x)
    np.testing.assert_array_equal(y, x.repeat(2, axis=1).repeat(3, axis=2))
    assert y.dtype == np.float32


@pytest.mark.parametrize("kwargs", [{"size": (2, 3)}, {"interpolation": "bilinear"},
                                    {"size": 3, "interpolation": "bilinear",
                                     "data_format": "channels_first"}])
def test_upsampling_gradients(rng, kwargs):
    assert check_layer_gradients(UpSampling2D(**kwargs), rng.standard_normal((2, 3, 4, 2)),
                                 rng) == []


@pytest.mark.parametrize("kwargs", [{"size": (2, 3)}, {"size": (3, 2), "interpolation":
                                                        "bilinear"}])
def test_upsampling_keras_parity(rng, kwargs):
    layers = keras_layers()
    check_keras_parity(UpSampling2D(**kwargs),
                       lambda dtype: layers.UpSampling2D(dtype=dtype, **kwargs),
                       rng.standard_normal((2, *rng.integers(2, 7, 2), 2)), rng)


# ----------------------------------------------------------------------------- Resizing
@pytest.mark.parametrize("kwargs", [{"height": 7, "width": 3},
                                    {"height": 2, "width": 9, "interpolation": "nearest"},
                                    {"height": 4, "width": 8, "crop_to_aspect_ratio": True},
                                    {"height": 3, "width": 9, "pad_to_aspect_ratio": True,
                                     "fill_value": 0.5}])
def test_resizing_gradients_and_keras_parity(rng, kwargs):
    layers = keras_layers()
    x = rng.standard_normal((2, *rng.integers(3, 9, 2), 3))       # random sizes
    layer = Resizing(**kwargs)
    assert layer.compute_output_shape((None, *x.shape[1:])) == (None, kwargs["height"],
                                                                kwargs["width"], 3)
    check_layer_gradients(Resizing(**kwargs), x, rng)
    check_keras_parity(layer, lambda dtype: layers.Resizing(dtype=dtype, **kwargs), x, rng)


def test_resizing_pad_to_aspect_ratio_pads_both_sides():
    x = np.arange(2 * 4.0).reshape(1, 2, 4, 1)           # 2 x 4 image, square target
    y = Resizing(4, 4, interpolation="nearest", pad_to_aspect_ratio=True, fill_value=-1)(x)
    np.testing.assert_array_equal(y[0, :, :, 0], [[-1] * 4, [0, 1, 2, 3], [4, 5, 6, 7],
                                                  [-1] * 4])


def test_resizing_crop_to_aspect_ratio_takes_the_centre():
    x = np.arange(2 * 4.0).reshape(1, 2, 4, 1)           # 2 x 4 image, square target
    y = Resizing(2, 2, interpolation="nearest", crop_to_aspect_ratio=True)(x)
    np.testing.assert_array_equal(y[0, :, :, 0], [[1, 2], [5, 6]])


# ----------------------------------------------------------------------------- Rescaling
def test_rescaling_values_and_gradient(rng):
    x = np.array([[0.0, 127.5, 255.0]])
    np.testing.assert_allclose(Rescaling(1 / 127.5, offset=-1)(x), [[-1, 0, 1]])
    layer = Rescaling([1.0, 2.0, 3.0], offset=[0.0, 1.0, -1.0], dtype="float64")
    assert check_layer_gradients(layer, rng.standard_normal((2, 4, 3)), rng) == []
    assert Rescaling(0.5)(np.ones((1, 2), np.float32)).dtype == np.float32


def test_rescaling_keras_parity(rng):
    layers = keras_layers()
    check_keras_parity(Rescaling(1 / 255, offset=-0.5),
                       lambda dtype: layers.Rescaling(1 / 255, offset=-0.5, dtype=dtype),
                       rng.standard_normal((2, 4, 4, 3)) * 255, rng)


# ----------------------------------------------------------------------------- common
@pytest.mark.parametrize("make, input_shape", [
    (lambda: UpSampling2D((2, 3), interpolation="bilinear"), (4, 5, 2)),
    (lambda: Resizing(6, 3, interpolation="nearest", crop_to_aspect_ratio=True), (4, 5, 2)),
    (lambda: Resizing(3, 6, pad_to_aspect_ratio=True, fill_value=1.0), (4, 5, 2)),
    (lambda: Rescaling([0.5, 2.0], offset=1.0), (4, 5, 2)),
])
def test_config_and_archive(rng, tmp_path, make, input_shape):
    check_config_and_archive(make(), input_shape, rng, tmp_path)


def test_keras_config_keys():
    layers = keras_layers()
    for ours, theirs in [(UpSampling2D(), layers.UpSampling2D()),
                         (Resizing(3, 4), layers.Resizing(3, 4)),
                         (Rescaling(2.0), layers.Rescaling(2.0))]:
        assert set(theirs.get_config()) <= set(ours.get_config()), type(ours).__name__


def test_errors(rng):
    with pytest.raises(ConvkitError, match="UpSampling2D: interpolation must be one of"):
        UpSampling2D(interpolation="bicubic")
    with pytest.raises(ConvkitError, match="antialias=True is not supported"):
        Resizing(3, 3, antialias=True)
    with pytest.raises(ConvkitError, match="Rescaling: scale must be a number"):
        Rescaling("big")
    with pytest.raises(ShapeError, match="scale has 2 per-channel values but the input has 3"):
        Rescaling([1.0, 2.0])(np.ones((1, 3)))
    with pytest.raises(ShapeError, match="expected a 4-D"):
        UpSampling2D()(np.ones((2, 3, 3)))
