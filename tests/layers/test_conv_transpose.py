import numpy as np
import pytest

from convkit.errors import ConvkitError, ShapeError
from convkit.layers import Conv2DTranspose
from convkit.ops.conv_transpose import conv2d_transpose
from tests.layers.helpers import check_config_and_archive, check_layer_gradients
from tests.layers.keras_parity import check_keras_parity, keras_layers


@pytest.mark.parametrize("kwargs, input_shape, out_shape, params", [
    ({"filters": 32, "kernel_size": 3, "strides": 2, "padding": "same"}, (None, 7, 7, 64),
     (None, 14, 14, 32), 18464),
    ({"filters": 4, "kernel_size": 3}, (None, 5, 6, 2), (None, 7, 8, 4), 76),
    ({"filters": 4, "kernel_size": 2, "strides": 3}, (None, 5, 6, 2), (None, 15, 18, 4), 36),
    ({"filters": 4, "kernel_size": 3, "strides": 2, "output_padding": 1, "use_bias": False},
     (None, 5, 5, 2), (None, 12, 12, 4), 72),
    ({"filters": 4, "kernel_size": (3, 1), "data_format": "channels_first", "strides": 2,
      "padding": "same"}, (None, 2, 5, 6), (None, 4, 10, 12), 28),
    ({"filters": 1, "kernel_size": 3, "padding": "same"}, (None, None, None, 2),
     (None, None, None, 1), 19),
])
def test_output_shape_and_params(kwargs, input_shape, out_shape, params):
    layer = Conv2DTranspose(**kwargs)
    assert layer.compute_output_shape(input_shape) == out_shape
    layer.build(input_shape)
    assert layer.output_shape == out_shape and layer.count_params() == params
    channels = input_shape[1 if kwargs.get("data_format") else 3]
    assert layer.get_weights()[0].shape == (*layer.kernel_size, kwargs["filters"], channels)


def test_forward_equals_op(rng):
    layer = Conv2DTranspose(3, 3, strides=2, padding="same", activation="tanh")
    x = rng.standard_normal((2, 4, 5, 2)).astype(np.float32)
    y = layer(x)
    kernel, bias = layer.get_weights()
    expected = np.tanh(conv2d_transpose(x, kernel, bias, strides=2, padding="same"))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    assert y.dtype == np.float32 and y.shape == (2, 8, 10, 3)


@pytest.mark.parametrize("kwargs", [
    {"strides": 2, "padding": "same", "activation": "sigmoid"},
    {"strides": (2, 3), "output_padding": (1, 0), "use_bias": False},
    {"padding": ((1, 0), (2, 1)), "dilation_rate": 2},
    {"data_format": "channels_first", "strides": 2},
])
def test_gradients(rng, kwargs):
    layer = Conv2DTranspose(4, 3, dtype="float64", **kwargs)
    x = rng.standard_normal((2, 3, 4, 3) if kwargs.get("data_format") else (2, 4, 3, 3))
    assert check_layer_gradients(layer, x, rng) == (
        ["kernel", "bias"] if kwargs.get("use_bias", True) else ["kernel"])


@pytest.mark.parametrize("seed", range(4))
def test_keras_parity(seed):
    layers = keras_layers()
    rng = np.random.default_rng(seed)
    strides = tuple(int(s) for s in rng.integers(1, 4, 2))
    kwargs = {"kernel_size": tuple(int(k) for k in rng.integers(1, 5, 2)), "strides": strides,
              "padding": ["same", "valid"][seed % 2], "activation": ["relu", "tanh"][seed // 2],
              "output_padding": None if seed < 2 else
              tuple(int(rng.integers(0, s)) for s in strides)}
    x = rng.standard_normal((2, *rng.integers(2, 6, 2), 3))
    layer = Conv2DTranspose(4, dtype="float64", bias_initializer="random_normal", **kwargs)
    check_keras_parity(layer, lambda dtype: layers.Conv2DTranspose(4, dtype=dtype, **kwargs),
                       x, rng)


def test_keras_config_keys():
    layers = keras_layers()
    theirs = layers.Conv2DTranspose(4, 3).get_config()
    ours = Conv2DTranspose(4, 3).get_config()
    extras = {"activity_regularizer", "kernel_constraint", "bias_constraint"}
    assert set(theirs) - extras <= set(ours)


def test_config_and_archive(rng, tmp_path):
    layer = Conv2DTranspose(3, (3, 2), strides=2, padding="same", output_padding=(1, 0),
                            activation="relu", kernel_regularizer="l2")
    check_config_and_archive(layer, (4, 5, 2), rng, tmp_path)


def test_errors(rng):
    with pytest.raises(ShapeError, match="output_padding must be smaller than strides"):
        Conv2DTranspose(4, 3, strides=2, output_padding=2)
    with pytest.raises(ConvkitError, match="padding_mode must be 'zeros'"):
        Conv2DTranspose(4, 3, padding_mode="reflect")
    layer = Conv2DTranspose(4, 3)
    layer(rng.standard_normal((1, 5, 5, 2)))
    with pytest.raises(ShapeError, match="expected 2 input channels, got 3"):
        layer(rng.standard_normal((1, 5, 5, 3)))
    with pytest.raises(ShapeError, match=r"expected a 4-D .* input, got shape \(5, 5, 2\)"):
        Conv2DTranspose(4, 3)(rng.standard_normal((5, 5, 2)))  # no batch axis
