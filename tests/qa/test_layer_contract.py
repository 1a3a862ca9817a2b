"""Every layer the core issue lists follows the whole layer contract: build, forward,
backward, grads aligned with get_weights, shape-checked set_weights, compute_output_shape,
output_shape, count_params, get_config / from_config and a short useful repr."""
import numpy as np
import pytest

import convkit as ck
from convkit.errors import ShapeError
from convkit.layers.base import SymbolicTensor

L = ck.layers

# (factory, input shape without batch, substring the repr must show)
LAYERS = [
    (lambda: L.Conv2D(4, 3, padding="Same", activation="relu"), (6, 7, 3), "filters=4"),
    (lambda: L.Conv2D(4, (3, 2), strides=2, padding=((1, 0), (2, 1)), groups=2,
                      padding_mode="reflect", dilation_rate=(1, 2)), (9, 8, 4), "groups=2"),
    (lambda: L.DepthwiseConv2D(3, depth_multiplier=2, padding=1), (6, 7, 3),
     "depth_multiplier=2"),
    (lambda: L.MaxPooling2D(2, padding="SAME"), (5, 7, 3), "padding='same'"),
    (lambda: L.AveragePooling2D(3, strides=2, padding=1, ceil_mode=True,
                                count_include_pad=True), (6, 7, 3), "ceil_mode=True"),
    (lambda: L.GlobalAveragePooling2D(), (5, 7, 3), "GlobalAveragePooling2D("),
    (lambda: L.GlobalMaxPooling2D(keepdims=True), (5, 7, 3), "keepdims=True"),
    (lambda: L.ZeroPadding2D(((1, 2), (0, 1))), (5, 7, 3), "padding="),
    (lambda: L.Flatten(), (5, 7, 3), "Flatten("),
    (lambda: L.Dense(4, activation="tanh"), (5,), "units=4"),
    (lambda: L.Activation("gelu"), (5,), "gelu"),
    (lambda: L.ReLU(max_value=6.0), (5,), "max_value=6.0"),
    (lambda: L.Dropout(0.3, seed=1), (5,), "rate=0.3"),
    (lambda: L.BatchNormalization(), (5, 7, 3), "BatchNormalization("),
]
IDS = ["conv", "conv-grouped", "depthwise", "maxpool", "avgpool", "gap", "gmp", "zeropad",
       "flatten", "dense", "activation", "relu", "dropout", "batchnorm"]


@pytest.mark.parametrize("make, shape, shown", LAYERS, ids=IDS)
def test_layer_contract(make, shape, shown, rng):
    layer = make()
    assert shown in repr(layer) and len(repr(layer)) < 200
    predicted = layer.compute_output_shape((None,) + shape)
    layer.build((None,) + shape)
    assert layer.built and layer.output_shape == predicted
    assert f"output_shape={predicted}" in repr(layer)
    weights = layer.get_weights()
    assert layer.count_params() == sum(w.size for w in weights)

    x = rng.standard_normal((2,) + shape).astype(np.float32)
    for training in (False, True):
        y = layer(x, training=training)
        assert y.shape == (2,) + tuple(predicted[1:]) and y.dtype == np.float32
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx = layer.backward(dy)
        assert dx.shape == x.shape
        assert len(layer.grads) == len(weights)
        for grad, weight in zip(layer.grads, layer.weights):
            if weight.trainable:
                assert grad is not None and grad.shape == weight.value.shape
            else:
                assert grad is None           # batch-norm moving statistics

    # set_weights: a round trip, then wrong shapes and counts are refused, weights untouched
    new = [rng.standard_normal(w.shape).astype(np.float32) for w in weights]
    if new:
        new = [np.abs(w) + 0.5 if "variance" in wt.name else w
               for w, wt in zip(new, layer.weights)]
        layer.set_weights(new)
        for got, want in zip(layer.get_weights(), new):
            np.testing.assert_array_equal(got, want)
        wrong = [np.zeros(w.shape + (1,), np.float32) for w in new]
        with pytest.raises(ShapeError, match=type(layer).__name__) as info:
            layer.set_weights(wrong)
        assert str(new[0].shape) in str(info.value) and str(wrong[0].shape) in str(info.value)
        for got, want in zip(layer.get_weights(), new):
            np.testing.assert_array_equal(got, want)
    with pytest.raises(ShapeError, match="set_weights expected"):
        layer.set_weights(layer.get_weights() + [np.zeros(3)])

    # config round trip: same architecture, same outputs with the same weights
    clone = type(layer).from_config(layer.get_config())
    clone.build((None,) + shape)
    clone.set_weights(layer.get_weights())
    assert clone.get_config() | {"name": None} == layer.get_config() | {"name": None}
    np.testing.assert_array_equal(clone(x, training=False), layer(x, training=False))


def test_input_gives_a_symbolic_tensor_and_input_layer_passes_data(rng):
    tensor = L.Input((6, 7, 3))
    assert isinstance(tensor, SymbolicTensor) and tensor.shape == (None, 6, 7, 3)
    input_layer = tensor.layer
    assert type(input_layer).__name__ == "InputLayer"
    assert input_layer.count_params() == 0 and input_layer.get_weights() == []
    x = rng.standard_normal((2, 6, 7, 3)).astype(np.float32)
    np.testing.assert_array_equal(input_layer(x), x)
    with pytest.raises(ShapeError, match="InputLayer"):
        input_layer(rng.standard_normal((2, 6, 7, 2)))


def test_the_seed_example_conv2d_with_keras_keywords():
    conv = L.Conv2D(filters=2, kernel_size=7, strides=1, padding="SAME", activation="relu",
                    input_shape=(427, 640, 3))
    model = ck.Sequential([conv])
    assert conv.padding == "same" and conv.activation.name == "relu"
    assert model.layers[0].output_shape == (None, 427, 640, 2)
    assert conv.count_params() == 7 * 7 * 3 * 2 + 2
    assert conv.get_weights()[0].shape == (7, 7, 3, 2)


@pytest.mark.parametrize("spelling", ["same", "SAME", "Same", "valid", "VALID", "Valid"])
def test_padding_strings_are_case_insensitive_everywhere(spelling, rng):
    mode = spelling.lower()
    x = rng.standard_normal((1, 7, 6, 2)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 2, 4)).astype(np.float32)
    np.testing.assert_array_equal(ck.ops.conv2d(x, kernel, padding=spelling),
                                  ck.ops.conv2d(x, kernel, padding=mode))
    for op in (ck.ops.max_pool2d, ck.ops.avg_pool2d):
        np.testing.assert_array_equal(op(x, 2, padding=spelling), op(x, 2, padding=mode))
    for make in (lambda p: L.Conv2D(4, 3, padding=p), lambda p: L.DepthwiseConv2D(3, padding=p),
                 lambda p: L.MaxPooling2D(2, padding=p),
                 lambda p: L.AveragePooling2D(2, padding=p)):
        assert make(spelling).compute_output_shape((None, 7, 6, 2)) == \
            make(mode).compute_output_shape((None, 7, 6, 2))
    assert ck.shapes.conv_output_shape((None, 7, 6, 2), 4, 3, padding=spelling) == \
        ck.shapes.conv_output_shape((None, 7, 6, 2), 4, 3, padding=mode)


@pytest.mark.parametrize("padding, out_hw", [
    ("valid", (5, 4)), ("same", (7, 6)), (1, (7, 6)), ((2, 0), (9, 4)),
    (((0, 1), (2, 3)), (6, 9)), ([[0, 1], [2, 3]], (6, 9)),
])
def test_every_padding_form_in_ops_and_layers(padding, out_hw, rng):
    x = rng.standard_normal((1, 7, 6, 2)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 2, 4)).astype(np.float32)
    y = ck.ops.conv2d(x, kernel, padding=padding)
    assert y.shape == (1,) + out_hw + (4,)
    layer = L.Conv2D(4, 3, padding=padding)
    assert layer.compute_output_shape((None, 7, 6, 2)) == (None,) + out_hw + (4,)
    layer.build((None, 7, 6, 2))
    layer.set_weights([kernel, np.zeros(4, np.float32)])
    np.testing.assert_allclose(layer(x), y, rtol=1e-5, atol=1e-5)


def test_set_seed_and_seed_argument_give_bit_identical_weights():
    def build(**kwargs):
        layers = [L.Conv2D(4, 3, **kwargs), L.DepthwiseConv2D(3, **kwargs),
                  L.Dense(5, **kwargs)]
        for layer, shape in zip(layers, [(None, 8, 8, 3), (None, 8, 8, 3), (None, 6)]):
            layer.build(shape)
        return [w for layer in layers for w in layer.get_weights()]

    ck.set_seed(42)
    first = build()
    ck.set_seed(42)
    second = build()
    ck.set_seed(7)
    third = build()
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not np.array_equal(first[0], third[0])
    seeded = [build(seed=3) for _ in range(2)]
    assert all(np.array_equal(a, b) for a, b in zip(*seeded))
    # a seeded layer does not depend on the global seed
    ck.set_seed(1)
    again = build(seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(seeded[0], again))
