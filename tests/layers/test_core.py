import numpy as np
import pytest

import convkit as ck
from convkit.errors import ConvkitError, ShapeError
from convkit.layers import Activation, Dense, Dropout, Input, InputLayer, ReLU, SymbolicTensor
from tests.gradcheck import directional_check
from tests.layers.helpers import check_layer_gradients


# ----------------------------------------------------------------------------- Dense
@pytest.mark.parametrize("units, input_shape, out_shape, params, use_bias", [
    (10, (None, 1600), (None, 10), 16010, True),
    (3, (None, 4), (None, 3), 12, False),
    (5, (None, 7, 6), (None, 7, 5), 35, True),
])
def test_dense_shapes_and_params(units, input_shape, out_shape, params, use_bias):
    layer = Dense(units, use_bias=use_bias)
    layer.build(input_shape)
    assert layer.output_shape == out_shape
    assert layer.count_params() == params == ck.shapes.dense_param_count(input_shape[-1], units,
                                                                         use_bias)


def test_dense_forward_equals_op(rng):
    layer = Dense(4, activation="relu")
    x = rng.standard_normal((3, 6)).astype(np.float32)
    y = layer(x)
    kernel, bias = layer.get_weights()
    np.testing.assert_allclose(y, np.maximum(x @ kernel + bias, 0), rtol=1e-6, atol=1e-6)
    assert y.dtype == np.float32


@pytest.mark.parametrize("activation", [None, "tanh", "softmax", "gelu"])
def test_dense_gradients(rng, activation):
    layer = Dense(4, activation=activation, dtype="float64")
    assert check_layer_gradients(layer, rng.standard_normal((3, 5)), rng) == ["kernel", "bias"]


def test_dense_on_higher_rank_input_gradients(rng):
    layer = Dense(3, dtype="float64", activation="sigmoid")
    check_layer_gradients(layer, rng.standard_normal((2, 4, 5)), rng)


def test_dense_skip_activation(rng):
    layer = Dense(4, activation="softmax", dtype="float64")
    check_layer_gradients(layer, rng.standard_normal((3, 5)), rng, skip_activation=True)


def test_dense_errors():
    layer = Dense(3)
    layer(np.zeros((2, 5)))
    with pytest.raises(ShapeError, match=r"Dense: expected 5 input features, got 4 "
                                         r"\(input shape \(2, 4\)\)"):
        layer(np.zeros((2, 4)))
    with pytest.raises(ShapeError, match=r"Dense: expected an input of rank >= 2"):
        Dense(3).build((5,))
    with pytest.raises(ConvkitError, match="units must be a positive int"):
        Dense(0)


# ----------------------------------------------------------------------------- Activation, ReLU
@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "softmax", "elu", "swish"])
def test_activation_layer(rng, name):
    layer = Activation(name)
    assert layer.activation.name == name
    x = rng.standard_normal((3, 4))
    np.testing.assert_allclose(layer(x), ck.ops.activations.get(name).forward(x))
    check_layer_gradients(layer, x, rng)


def test_activation_skip_activation_passes_dy_through(rng):
    layer = Activation("softmax")
    layer(rng.standard_normal((2, 3)))
    dy = rng.standard_normal((2, 3))
    np.testing.assert_array_equal(layer.backward(dy, skip_activation=True), dy)


def test_unknown_activation():
    with pytest.raises(ConvkitError, match=r"Activation: unknown activation 'sigmoidd'.*sigmoid"):
        Activation("sigmoidd")


@pytest.mark.parametrize("kwargs, expected", [
    ({}, [0.0, 0.0, 0.5, 3.0, 8.0]),
    ({"max_value": 6.0}, [0.0, 0.0, 0.5, 3.0, 6.0]),
    ({"negative_slope": 0.1}, [-0.2, -0.05, 0.5, 3.0, 8.0]),
    ({"threshold": 1.0, "negative_slope": 0.5}, [-1.5, -0.75, -0.25, 3.0, 8.0]),
])
def test_relu_values(kwargs, expected):
    x = np.array([[-2.0, -0.5, 0.5, 3.0, 8.0]])
    np.testing.assert_allclose(ReLU(**kwargs)(x)[0], expected)


@pytest.mark.parametrize("kwargs", [{}, {"max_value": 1.0, "negative_slope": 0.2},
                                    {"threshold": 0.5, "negative_slope": 0.3}])
def test_relu_gradients(rng, kwargs):
    x = rng.uniform(-3, 3, (4, 5))
    x = np.where(np.abs(x) < 0.05, 0.3, x)       # away from the kinks at 0
    x = np.where(np.abs(x - 0.5) < 0.05, 0.7, x)
    x = np.where(np.abs(x - 1.0) < 0.05, 1.2, x)
    check_layer_gradients(ReLU(**kwargs), x, rng)


def test_relu_rejects_negative_arguments():
    with pytest.raises(ConvkitError, match="ReLU: max_value must be a number >= 0"):
        ReLU(max_value=-1)


# ----------------------------------------------------------------------------- Dropout
def test_dropout_identity_at_inference(rng):
    x = rng.standard_normal((4, 10)).astype(np.float32)
    layer = Dropout(0.5)
    np.testing.assert_array_equal(layer(x), x)
    np.testing.assert_array_equal(layer.backward(x), x)


def test_dropout_training_scales_kept_units(rng):
    x = np.ones((200, 50), dtype=np.float32)
    layer = Dropout(0.3, seed=0)
    y = layer(x, training=True)
    assert y.dtype == np.float32
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_array_equal(kept, layer.mask)
    dy = rng.standard_normal(x.shape)
    np.testing.assert_allclose(layer.backward(dy), dy * kept / 0.7, rtol=1e-6)


def test_dropout_gradient_with_the_fixed_mask(rng):
    layer = Dropout(0.4, seed=3)
    x = rng.standard_normal((3, 6))
    y = layer(x, training=True)
    g = rng.standard_normal(y.shape)
    dx = layer.backward(g)
    multiplier = layer.cache[1]
    directional_check(lambda v: v * multiplier, x, dx, g, rng)


def test_dropout_noise_shape_drops_whole_channels():
    layer = Dropout(0.5, noise_shape=(None, 1, 1, 8), seed=1)
    y = layer(np.ones((2, 4, 4, 8)), training=True)
    per_channel = y.reshape(2, 16, 8)
    assert np.all(per_channel == per_channel[:, :1, :])
    assert 0 < np.count_nonzero(per_channel[:, 0, :]) < 16


def test_dropout_rate_bounds():
    assert np.all(Dropout(1.0)(np.ones((2, 3)), training=True) == 0)
    with pytest.raises(ConvkitError, match=r"Dropout: rate must be a number in \[0, 1\]"):
        Dropout(1.5)


# ----------------------------------------------------------------------------- Input
def test_input_returns_symbolic_tensor():
    t = Input((28, 28, 1), name="pixels")
    assert isinstance(t, SymbolicTensor) and t.shape == (None, 28, 28, 1)
    assert isinstance(t.layer, InputLayer) and t.layer.name == "pixels"
    assert Input((4,), batch_size=8).shape == (8, 4)
    conv = ck.layers.Conv2D(4, 3)
    out = conv(t)
    assert out.shape == (None, 26, 26, 4) and out.layer is conv and out.inputs == [t]
    assert conv.built and conv.output_shape == (None, 26, 26, 4)


def test_input_layer_passes_data_and_checks_shape():
    layer = InputLayer((5, 3))
    x = np.ones((2, 5, 3))
    assert layer(x) is not None and layer.output_shape == (None, 5, 3)
    np.testing.assert_array_equal(layer.backward(x), x)
    with pytest.raises(ShapeError, match=r"InputLayer: expected input shape \(None, 5, 3\), "
                                         r"got \(2, 5, 4\)"):
        layer(np.ones((2, 5, 4)))
    with pytest.raises(ShapeError, match="InputLayer: shape must be a tuple of positive ints"):
        InputLayer((0, 3))
