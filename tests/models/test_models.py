"""Building models: Sequential and functional agree, shapes propagate, weights and config."""
import numpy as np
import pytest

import convkit as ck
from convkit.errors import ConvkitError, ShapeError

from ._nets import L, residual_net


def _pair():
    """The same network as a Sequential and as a functional Model, same weights."""
    ck.set_seed(0)
    seq = ck.Sequential([L.Input((10, 10, 3)), L.Conv2D(4, 3, activation="relu"),
                         L.MaxPooling2D(2), L.BatchNormalization(), L.Flatten(),
                         L.Dense(5, activation="softmax")])
    inputs = L.Input((10, 10, 3))
    x = L.Conv2D(4, 3, activation="relu")(inputs)
    x = L.MaxPooling2D(2)(x)
    x = L.BatchNormalization()(x)
    x = L.Flatten()(x)
    func = ck.Model(inputs, L.Dense(5, activation="softmax")(x))
    func.set_weights(seq.get_weights())
    return seq, func


def test_sequential_and_functional_give_the_same_output(rng):
    seq, func = _pair()
    x = rng.random((7, 10, 10, 3)).astype(np.float32)
    np.testing.assert_array_equal(seq.predict(x, batch_size=3), func.predict(x, batch_size=3))
    np.testing.assert_array_equal(seq(x), func(x))
    assert seq.count_params() == func.count_params() == 4 * 27 + 4 + 16 + 64 * 5 + 5
    assert seq.output_shape == func.output_shape == (None, 5)
    assert seq.input_shape == func.input_shape == (None, 10, 10, 3)
    assert type(func.layers[0]).__name__ == "InputLayer"
    assert [type(layer).__name__ for layer in seq.layers][0] == "Conv2D"


def test_shapes_propagate_without_data_and_input_shape_argument():
    model = ck.Sequential([L.Conv2D(2, 5, input_shape=(28, 28, 1)), L.MaxPooling2D(2)])
    assert model.built and model.output_shape == (None, 12, 12, 2)
    model.add(L.Flatten())
    assert model.output_shape == (None, 288)
    assert model.layers[-1].input_shape == (None, 12, 12, 2)


def test_sequential_without_input_builds_on_first_call(rng):
    model = ck.Sequential()
    model.add(L.Conv2D(2, 3))
    model.add(L.Flatten())
    assert not model.built
    out = model(rng.random((2, 5, 5, 1)).astype(np.float32))
    assert out.shape == (2, 18) and model.built and model.input_shape == (None, 5, 5, 1)
    with pytest.raises(ShapeError, match="channels 2 instead of 1"):
        model(np.zeros((2, 5, 5, 2), np.float32))


def test_input_layer_object_as_first_entry():
    model = ck.Sequential([L.InputLayer((4, 4, 2)), L.Flatten()])
    assert model.output_shape == (None, 32)
    with pytest.raises(ConvkitError, match="first entry"):
        model.add(L.Input((3,)))


def test_predict_is_batched_and_float32(rng, monkeypatch):
    model = ck.Sequential([L.Input((4,)), L.Dense(3)])
    sizes = []
    dense = model.layers[0]
    original = dense.forward
    monkeypatch.setattr(dense, "forward", lambda x, training=False: sizes.append(len(x))
                        or original(x, training=training))
    x = rng.random((10, 4))                       # float64 input, float32 model
    out = model.predict(x, batch_size=4)
    assert sizes == [4, 4, 2]
    assert out.shape == (10, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, model.predict_on_batch(x), rtol=1e-6)


def test_get_layer_weights_and_set_weights_checks():
    seq, _ = _pair()
    conv = seq.get_layer(seq.layers[0].name)
    assert conv is seq.layers[0] and seq.get_layer(index=-1) is seq.layers[-1]
    with pytest.raises(ConvkitError, match="no layer named"):
        seq.get_layer("nope")
    weights = seq.get_weights()
    assert [w.shape for w in weights[:2]] == [(3, 3, 3, 4), (4,)]
    # 2 conv + 4 batch-norm + 2 dense; moving statistics are not trainable
    assert len(weights) == 8 and len(seq.trainable_weights) == 6
    bad = list(weights)
    bad[0] = np.zeros((3, 3, 3, 5))
    with pytest.raises(ShapeError, match=r"must have shape \(3, 3, 3, 4\), got \(3, 3, 3, 5\)"):
        seq.set_weights(bad)
    with pytest.raises(ShapeError, match="expected 8 arrays, got 7"):
        seq.set_weights(weights[:-1])
    np.testing.assert_array_equal(seq.get_weights()[0], weights[0])   # unchanged


def test_config_round_trip_keeps_architecture(rng):
    seq, func = _pair()
    for model in (seq, func, residual_net()):
        config = model.get_config()
        import json
        clone = type(model).from_config(json.loads(json.dumps(config)))
        assert clone.get_config() == config
        assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
        clone.set_weights(model.get_weights())
        x = rng.random((3,) + model.input_shape[1:]).astype(np.float32)
        np.testing.assert_array_equal(clone.predict(x), model.predict(x))


def test_graph_errors_are_clear():
    inputs = L.Input((4, 4, 1))
    conv = L.Conv2D(1, 1)
    y = conv(conv(inputs))
    assert [layer.name for layer in ck.Model(inputs, y).layers].count(conv.name) == 1  # shared
    other = L.Input((4, 4, 1))
    with pytest.raises(ConvkitError, match="not in the model's inputs"):
        ck.Model(inputs, L.Add()([inputs, other]))
    with pytest.raises(ConvkitError, match="merges several inputs"):
        ck.Sequential([L.Input((3,)), L.Add()])
    with pytest.raises(ConvkitError, match="unique"):
        ck.Sequential([L.Dense(2, name="d"), L.Dense(2, name="d")])


def test_multi_input_multi_output_graph(rng):
    a, b = L.Input((3,)), L.Input((3,))
    s = L.Add()([a, b])
    out1, out2 = L.Dense(2)(s), L.Dense(1)(a)
    model = ck.Model([a, b], [out1, out2])
    xa, xb = rng.random((4, 3)), rng.random((4, 3))
    o1, o2 = model.predict([xa, xb], batch_size=3)
    assert o1.shape == (4, 2) and o2.shape == (4, 1)
    assert model.input_shape == [(None, 3), (None, 3)]
    with pytest.raises(ConvkitError, match="has 2 inputs"):
        model.predict(xa)
    # gradients reach both inputs; a, used twice, gets the sum
    model([xa, xb], training=True)
    da, db = model.backward([np.ones((4, 2)), np.ones((4, 1))])
    dense1 = next(layer for layer in model.layers if getattr(layer, "units", 0) == 2)
    dense2 = next(layer for layer in model.layers if getattr(layer, "units", 0) == 1)
    k1, k2 = dense1.weights[0].value, dense2.weights[0].value
    np.testing.assert_allclose(db, np.tile(k1.sum(1), (4, 1)), rtol=1e-6)
    np.testing.assert_allclose(da, np.tile(k1.sum(1) + k2.sum(1), (4, 1)), rtol=1e-6)
