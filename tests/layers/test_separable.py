import numpy as np
import pytest

from convkit.layers import SeparableConv2D
from convkit.ops.separable import separable_conv2d
from tests.layers.helpers import check_config_and_archive, check_layer_gradients
from tests.layers.keras_parity import check_keras_parity, keras_layers


@pytest.mark.parametrize("kwargs, input_shape, out_shape, params", [
    ({"filters": 64, "kernel_size": 3, "padding": "same"}, (None, 32, 32, 32),
     (None, 32, 32, 64), 3 * 3 * 32 + 32 * 64 + 64),
    ({"filters": 4, "kernel_size": 3, "depth_multiplier": 2, "strides": 2},
     (None, 9, 9, 3), (None, 4, 4, 4), 9 * 3 * 2 + 6 * 4 + 4),
    ({"filters": 4, "kernel_size": (1, 3), "use_bias": False,
      "data_format": "channels_first"}, (None, 3, 5, 5), (None, 4, 5, 3), 9 + 12),
])
def test_shapes_params_and_weight_names(kwargs, input_shape, out_shape, params):
    layer = SeparableConv2D(**kwargs)
    layer.build(input_shape)
    assert layer.output_shape == out_shape and layer.count_params() == params
    names = [w.name for w in layer.weights]
    assert names == ["depthwise_kernel", "pointwise_kernel"] + (
        ["bias"] if kwargs.get("use_bias", True) else [])


def test_forward_equals_op(rng):
    layer = SeparableConv2D(5, 3, padding="same", depth_multiplier=2, activation="relu")
    x = rng.standard_normal((2, 6, 7, 3)).astype(np.float32)
    y = layer(x)
    depthwise, pointwise, bias = layer.get_weights()
    expected = np.maximum(separable_conv2d(x, depthwise, pointwise, bias, padding="same"), 0)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    assert y.dtype == np.float32


@pytest.mark.parametrize("kwargs", [{"activation": "tanh", "depth_multiplier": 2},
                                    {"strides": 2, "padding": "same", "use_bias": False},
                                    {"data_format": "channels_first", "dilation_rate": 2}])
def test_gradients(rng, kwargs):
    layer = SeparableConv2D(4, 3, dtype="float64", **kwargs)
    x = rng.standard_normal((2, 3, 7, 6) if kwargs.get("data_format") else (2, 7, 6, 3))
    assert check_layer_gradients(layer, x, rng)[:2] == ["depthwise_kernel", "pointwise_kernel"]


@pytest.mark.parametrize("seed", range(3))
def test_keras_parity(seed):
    layers = keras_layers()
    rng = np.random.default_rng(seed)
    kwargs = {"kernel_size": tuple(int(k) for k in rng.integers(1, 4, 2)),
              "strides": int(rng.integers(1, 3)), "padding": ["same", "valid"][seed % 2],
              "depth_multiplier": int(rng.integers(1, 3)), "activation": "relu"}
    if seed == 2:
        kwargs.update(strides=1, dilation_rate=2)
    x = rng.standard_normal((2, *rng.integers(5, 8, 2), 3))
    layer = SeparableConv2D(4, dtype="float64", bias_initializer="random_normal", **kwargs)
    check_keras_parity(layer, lambda dtype: layers.SeparableConv2D(4, dtype=dtype, **kwargs),
                       x, rng)


def test_keras_config_keys_and_count():
    layers = keras_layers()
    theirs = layers.SeparableConv2D(8, 3, depth_multiplier=2)
    theirs.build((None, 9, 9, 5))
    ours = SeparableConv2D(8, 3, depth_multiplier=2)
    ours.build((None, 9, 9, 5))
    assert ours.count_params() == theirs.count_params()
    extras = {"activity_regularizer", "depthwise_constraint", "pointwise_constraint",
              "bias_constraint"}
    assert set(theirs.get_config()) - extras <= set(ours.get_config())


def test_config_and_archive(rng, tmp_path):
    layer = SeparableConv2D(3, 3, padding="same", depth_multiplier=2, activation="relu",
                            pointwise_regularizer="l2", depthwise_initializer="he_normal")
    check_config_and_archive(layer, (5, 6, 2), rng, tmp_path)
