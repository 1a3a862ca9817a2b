"""SpatialDropout2D and GaussianNoise: identity at inference, the training behaviour and its
statistics, seeded reproducibility, float64 gradient checks with the draw held fixed, and
Keras's config keys."""
import doctest

import numpy as np
import pytest

import convkit as ck
from convkit.errors import ConvkitError, ShapeError
from convkit.layers import GaussianNoise, SpatialDropout2D
from tests.gradcheck import directional_check
from tests.layers.keras_reference import assert_same_config_keys, keras_module


def test_docstring_examples():
    result = doctest.testmod(ck.layers.noise, extraglobs={"np": np})
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("make", [lambda: SpatialDropout2D(0.4), lambda: GaussianNoise(0.5)])
def test_identity_at_inference(rng, make):
    x = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    layer = make()
    y = layer(x)
    np.testing.assert_array_equal(y, x)
    g = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_array_equal(layer.backward(g), g)


@pytest.mark.parametrize("data_format, mask_shape", [("channels_last", (8, 1, 1, 6)),
                                                     ("channels_first", (8, 6, 1, 1))])
def test_spatial_dropout_drops_whole_channels(data_format, mask_shape):
    layer = SpatialDropout2D(0.5, data_format=data_format, seed=3)
    shape = (8, 5, 4, 6) if data_format == "channels_last" else (8, 6, 5, 4)
    y = layer(np.ones(shape), training=True)
    assert layer.mask.shape == mask_shape
    expected = np.broadcast_to(np.where(layer.mask, 2.0, 0.0), shape)
    np.testing.assert_array_equal(y, expected)
    assert 0.25 < layer.mask.mean() < 0.75             # 48 channels, half kept
    dx = layer.backward(np.full(shape, 3.0))
    np.testing.assert_array_equal(dx, expected * 3.0)


def test_spatial_dropout_keep_rate_over_many_channels():
    layer = SpatialDropout2D(0.3, seed=0)
    layer(np.ones((100, 2, 2, 100)), training=True)
    assert abs(layer.mask.mean() - 0.7) < 0.02


def test_gaussian_noise_statistics_and_dtype():
    layer = GaussianNoise(2.0, seed=1)
    x = np.full((200, 500), 3.0, dtype=np.float32)
    y = layer(x, training=True)
    assert y.dtype == np.float32
    assert abs(float(y.mean()) - 3.0) < 0.02 and abs(float(y.std()) - 2.0) < 0.02


@pytest.mark.parametrize("make", [lambda s: SpatialDropout2D(0.5, seed=s),
                                  lambda s: GaussianNoise(1.0, seed=s)])
def test_seeded_reproducibility(make):
    x = np.ones((4, 3, 3, 5), dtype=np.float32)
    first = [make(7)(x, training=True) for _ in range(2)]
    np.testing.assert_array_equal(first[0], first[1])
    layer = make(7)
    assert not np.array_equal(layer(x, training=True), layer(x, training=True))   # fresh draws
    assert not np.array_equal(make(7)(x, training=True), make(8)(x, training=True))
    ck.random.set_seed(11)
    a = make(None)(x, training=True)
    ck.random.set_seed(11)
    np.testing.assert_array_equal(make(None)(x, training=True), a)


@pytest.mark.parametrize("make", [lambda: SpatialDropout2D(0.4, dtype="float64"),
                                  lambda: GaussianNoise(0.3, dtype="float64")])
def test_gradients_with_the_draw_fixed(rng, make):
    layer = make()
    x = rng.standard_normal((2, 4, 3, 5))

    def f(value):
        layer.rng = np.random.default_rng(5)       # the same mask or noise on every call
        return layer.forward(value, training=True)
    y = f(x)
    g = rng.standard_normal(y.shape)
    directional_check(f, x, layer.backward(g), g, rng)
    f(x)
    assert layer.backward(g).dtype == np.float64


def test_errors():
    with pytest.raises(ShapeError, match=r"SpatialDropout2D: expected a 4-D input .*\(2, 3\)"):
        SpatialDropout2D(0.5)(np.zeros((2, 3)))
    layer = SpatialDropout2D(0.5)
    layer(np.zeros((1, 2, 2, 3)))
    with pytest.raises(ShapeError, match="SpatialDropout2D: expected a 4-D input"):
        layer(np.zeros((1, 2, 3)), training=True)
    with pytest.raises(ConvkitError, match="Dropout: rate must be"):
        SpatialDropout2D(1.5)
    with pytest.raises(ConvkitError, match="GaussianNoise: stddev must be"):
        GaussianNoise(-0.1)


def test_configs_use_keras_keys():
    keras = keras_module()
    for layer, keras_layer, extra in [
            (SpatialDropout2D(0.2, seed=4), keras.layers.SpatialDropout2D(0.2, seed=4),
             ("trainable",)),
            (GaussianNoise(0.1, seed=4), keras.layers.GaussianNoise(0.1, seed=4), ())]:
        assert_same_config_keys(layer, keras_layer, ours_only=extra)
        clone = ck.layers.deserialize(ck.layers.serialize(layer))
        assert clone.get_config() == layer.get_config()
        config = keras_layer.get_config()
        config.pop("dtype")
        rebuilt = type(layer).from_config(config)            # Keras's own config loads
        assert rebuilt.seed == 4
