import json

import numpy as np
import pytest

import convkit as ck
from convkit import initializers, regularizers
from convkit.errors import ConvkitError
from convkit import layers as L

CASES = [
    (lambda: L.InputLayer((8, 8, 3), name="pixels"), (None, 8, 8, 3)),
    (lambda: L.Conv2D(4, (3, 2), strides=2, padding=((1, 0), (2, 1)), dilation_rate=1,
                      groups=1, activation="relu", use_bias=False,
                      kernel_initializer=initializers.RandomNormal(stddev=0.2),
                      kernel_regularizer=regularizers.L2(0.1), padding_mode="reflect",
                      input_shape=(8, 8, 3), seed=5), (None, 8, 8, 3)),
    (lambda: L.Conv2D(6, 3, padding="SAME", groups=3, data_format="channels_first"),
     (None, 3, 8, 8)),
    (lambda: L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="tanh",
                               depthwise_initializer="he_normal", bias_regularizer="l1"),
     (None, 8, 8, 3)),
    (lambda: L.MaxPooling2D(3, strides=2, padding=1, ceil_mode=True, dilation_rate=1),
     (None, 8, 8, 3)),
    (lambda: L.AveragePooling2D((2, 3), padding="same", count_include_pad=True),
     (None, 8, 8, 3)),
    (lambda: L.GlobalAveragePooling2D(keepdims=True), (None, 8, 8, 3)),
    (lambda: L.GlobalMaxPooling2D(data_format="channels_first"), (None, 3, 8, 8)),
    (lambda: L.ZeroPadding2D(((1, 2), (0, 1))), (None, 8, 8, 3)),
    (lambda: L.Flatten(), (None, 8, 8, 3)),
    (lambda: L.Dense(5, activation="softmax", kernel_initializer="lecun_uniform",
                     kernel_regularizer=regularizers.L1L2(0.01, 0.02)), (None, 7)),
    (lambda: L.Activation("gelu"), (None, 7)),
    (lambda: L.ReLU(max_value=6.0, negative_slope=0.1, threshold=0.5), (None, 7)),
    (lambda: L.Dropout(0.25, noise_shape=(None, 1), seed=3), (None, 7)),
    (lambda: L.BatchNormalization(axis=1, momentum=0.9, epsilon=1e-5, center=False,
                                  gamma_regularizer="l2", trainable=False), (None, 3, 8, 8)),
    (lambda: L.Add(), [(None, 7), (None, 7)]),
    (lambda: L.Multiply(), [(None, 7), (None, 7)]),
    (lambda: L.Concatenate(axis=1), [(None, 3, 2), (None, 4, 2)]),
    # resampling, reshaping and 1-D layers
    (lambda: L.Conv2DTranspose(4, 3, strides=2, padding="same", output_padding=1),
     (None, 5, 5, 3)),
    (lambda: L.UpSampling2D((2, 1), interpolation="bilinear"), (None, 5, 5, 3)),
    (lambda: L.Resizing(4, 6, crop_to_aspect_ratio=True), (None, 5, 5, 3)),
    (lambda: L.Rescaling(1 / 255, offset=0.5), (None, 5, 5, 3)),
    (lambda: L.Cropping2D(((1, 0), (0, 2)), data_format="channels_first"), (None, 3, 5, 5)),
    (lambda: L.Reshape((-1, 3)), (None, 5, 5, 3)),
    (lambda: L.Permute((3, 1, 2)), (None, 5, 5, 3)),
    (lambda: L.SeparableConv2D(4, 3, depth_multiplier=2, padding="same", activation="relu",
                               pointwise_regularizer="l1"), (None, 5, 5, 3)),
    (lambda: L.Conv1D(4, 3, padding="causal", dilation_rate=2, groups=1), (None, 9, 3)),
    (lambda: L.MaxPooling1D(3, strides=2, padding="same"), (None, 9, 3)),
    (lambda: L.AveragePooling1D(2, data_format="channels_first"), (None, 3, 9)),
    (lambda: L.GlobalAveragePooling1D(keepdims=True), (None, 9, 3)),
    (lambda: L.GlobalMaxPooling1D(), (None, 9, 3)),
    (lambda: L.UpSampling1D(3), (None, 9, 3)),
    # activation, merging, normalization, noise and augmentation layers
    (lambda: L.LeakyReLU(negative_slope=0.1), (None, 7)),
    (lambda: L.PReLU(alpha_initializer="ones", shared_axes=[1, 2]), (None, 5, 5, 3)),
    (lambda: L.ELU(alpha=0.5), (None, 7)),
    (lambda: L.Softmax(axis=1), (None, 3, 4)),
    (lambda: L.Subtract(), [(None, 7), (None, 7)]),
    (lambda: L.Average(), [(None, 7), (None, 7), (None, 7)]),
    (lambda: L.Maximum(), [(None, 7), (None, 7)]),
    (lambda: L.Minimum(), [(None, 7), (None, 7)]),
    (lambda: L.LayerNormalization(axis=[1, 2], epsilon=1e-5, center=False), (None, 5, 5, 3)),
    (lambda: L.SpatialDropout2D(0.3, seed=2), (None, 5, 5, 3)),
    (lambda: L.GaussianNoise(0.1, seed=1), (None, 7)),
    (lambda: L.RandomFlip("horizontal_and_vertical", seed=1), (None, 5, 5, 3)),
    (lambda: L.RandomRotation(0.1, fill_mode="nearest", seed=1), (None, 5, 5, 3)),
    (lambda: L.RandomZoom(0.2, width_factor=(-0.1, 0.1), seed=1), (None, 5, 5, 3)),
    (lambda: L.RandomTranslation(0.1, 0.2, fill_mode="constant", seed=1), (None, 5, 5, 3)),
    (lambda: L.RandomContrast(0.3, seed=1), (None, 5, 5, 3)),
    (lambda: L.RandomCrop(4, 3, seed=1), (None, 5, 5, 3)),
]
IDS = [make().__class__.__name__ + str(i) for i, (make, _) in enumerate(CASES)]


def sample(shape, rng):
    if isinstance(shape, list):
        return [rng.standard_normal((2,) + s[1:]) for s in shape]
    return rng.standard_normal((2,) + shape[1:])


@pytest.mark.parametrize("make, input_shape", CASES, ids=IDS)
def test_config_round_trip(rng, make, input_shape):
    layer = make()
    config = layer.get_config()
    text = json.dumps(L.serialize(layer))                      # JSON-serialisable
    clone = L.deserialize(json.loads(text))
    assert type(clone) is type(layer)
    assert clone.get_config() == config
    if not clone.built:
        layer.build(input_shape)
        clone.build(input_shape)
    assert clone.output_shape == layer.output_shape
    assert clone.count_params() == layer.count_params()
    clone.set_weights(layer.get_weights())
    x = sample(input_shape, rng)
    np.testing.assert_allclose(clone(x), layer(x))


def test_every_exported_layer_is_registered():
    classes = {name for name in L.__all__ if isinstance(getattr(L, name), type)
               and issubclass(getattr(L, name), L.Layer) and name != "Layer"}
    assert classes == set(L.names())
    # Lambda runs a function in memory only: it has no config to round-trip
    assert {type(make()).__name__ for make, _ in CASES} == classes - {"Lambda"}
    assert L.get("MaxPool2D") is L.MaxPooling2D and L.get("conv2d") is L.Conv2D
    with pytest.raises(ConvkitError, match="unknown layer class 'Conv3D'"):
        L.get("Conv3D")


def test_register_custom_layer():
    @L.register
    class Scale(L.Layer):
        def __init__(self, factor=2.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def forward(self, x, training=False):
            return x * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}

    clone = L.deserialize(L.serialize(Scale(3.0)))
    assert clone.factor == 3.0


def test_repr_shows_non_default_arguments():
    text = repr(L.Conv2D(32, 3, activation="relu", name="c1"))
    assert text.startswith("Conv2D(filters=32, kernel_size=[3, 3], activation='relu', name='c1'")
    assert "strides" not in text and "padding" not in text and "data_format" not in text
    assert "strides=[2, 2]" in repr(L.Conv2D(32, 3, strides=2))
    assert repr(L.MaxPooling2D()) .startswith("MaxPooling2D(name=")
    assert "rate=0.5" in repr(L.Dropout(0.5))
    built = L.Dense(3)
    built.build((None, 4))
    assert repr(built).endswith("output_shape=(None, 3))")


def test_automatic_names_follow_keras():
    assert L.Conv2D(1, 1).name.startswith("conv2d")
    assert L.BatchNormalization().name.startswith("batch_normalization")
    assert L.MaxPooling2D().name.startswith("max_pooling2d")
    a, b = L.Dense(1), L.Dense(1)
    assert a.name != b.name


def test_symbolic_call_rejects_wrong_input_count():
    with pytest.raises(ck.errors.ShapeError, match="Dense: takes one input, got 2"):
        L.Dense(3)([L.Input((4,)), L.Input((4,))])


def test_building_twice_keeps_the_weights():
    layer = L.Conv2D(2, 3)
    layer.build((None, 5, 5, 1))
    kernel = layer.get_weights()[0]
    layer.build((None, 7, 7, 1))
    assert len(layer.weights) == 2
    np.testing.assert_array_equal(layer.get_weights()[0], kernel)
    with pytest.raises(ck.errors.ShapeError, match="expected 1 input channels, got 2"):
        layer.build((None, 5, 5, 2))


def test_mnist_convnet_shapes_and_counts_through_symbolic_calls():
    """SEMANTICS.md's simple MNIST convnet: shapes and parameter counts, no data."""
    t = L.Input((28, 28, 1))
    stack = [L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
             L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2), L.Flatten(),
             L.Dropout(0.5), L.Dense(10, activation="softmax")]
    shapes = []
    for layer in stack:
        t = layer(t)
        shapes.append(t.shape)
    assert shapes == [(None, 26, 26, 32), (None, 13, 13, 32), (None, 11, 11, 64),
                      (None, 5, 5, 64), (None, 1600), (None, 1600), (None, 10)]
    assert [layer.count_params() for layer in stack] == [320, 0, 18496, 0, 0, 0, 16010]
    assert sum(layer.count_params() for layer in stack) == 34826
