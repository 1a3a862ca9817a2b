"""Models inside models and layers called twice: forward, backward (float64 finite
differences), weights, freezing, config round trips and the summary rows."""
import numpy as np
import pytest

import convkit as ck
from convkit.errors import ConvkitError, ShapeError
from tests.gradcheck import numeric_grad

L = ck.layers


@pytest.fixture
def float64():
    ck.set_floatx("float64")
    yield
    ck.set_floatx("float32")


def _siamese(seed=0):
    """Two inputs through one nested Sequential encoder and one shared Dense layer."""
    ck.set_seed(seed)
    encoder = ck.Sequential([L.Input((5,)), L.Dense(4, activation="tanh"), L.Dense(3)],
                            name="encoder")
    a, b = L.Input((5,), name="left"), L.Input((5,), name="right")
    shared = L.Dense(2, activation="tanh", name="shared")
    fa, fb = shared(encoder(a)), shared(encoder(b))
    out = L.Dense(1, name="head")(L.Concatenate(name="merge")([fa, fb]))
    return ck.Model([a, b], out), encoder, shared


def _weight_numeric_grads(model, xs, dy):
    grads = []
    for w in model.weights:
        def loss(values, w=w):
            saved = w.value.copy()
            w.value[...] = values
            out = float(np.sum(model(xs) * dy))
            w.value[...] = saved
            return out
        grads.append(numeric_grad(loss, w.value.copy()))
    return grads


def test_shared_layer_and_nested_model_gradients_are_summed(rng, float64):
    model, encoder, shared = _siamese()
    assert [layer.name for layer in model.layers] == ["left", "right", "encoder", "shared",
                                                      "merge", "head"]
    # every weight once: encoder 5*4+4 + 4*3+3, shared 3*2+2, head 4*1+1
    assert model.count_params() == 39 + 8 + 5
    xs = [rng.random((6, 5)), rng.random((6, 5))]
    dy = rng.standard_normal((6, 1))
    model(xs, training=True)
    dx_left, dx_right = model.backward(dy)
    analytic = model.grads
    for got, want in zip(analytic, _weight_numeric_grads(model, xs, dy)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
    # the input gradients too (both branches pass through the shared weights)
    for index, dx in enumerate((dx_left, dx_right)):
        def loss(values, index=index):
            inputs = list(xs)
            inputs[index] = values
            return float(np.sum(model(inputs) * dy))
        np.testing.assert_allclose(dx, numeric_grad(loss, xs[index]), rtol=1e-6, atol=1e-8)


def test_shared_conv_twice_in_a_row(rng, float64):
    inputs = L.Input((5, 5, 2))
    conv = L.Conv2D(2, 3, padding="same", activation="tanh")
    model = ck.Model(inputs, conv(conv(inputs)))
    x = rng.random((2, 5, 5, 2))
    dy = rng.standard_normal((2, 5, 5, 2))
    model(x, training=True)
    model.backward(dy)
    for got, want in zip(model.grads, _weight_numeric_grads(model, x, dy)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


def test_nested_sequential_trains_and_can_be_frozen(rng):
    x = rng.random((32, 6)).astype(np.float32)
    y = (x.sum(axis=1) > 3).astype(np.int64)
    ck.set_seed(1)
    body = ck.Sequential([L.Dense(8, activation="relu")], name="body")
    model = ck.Sequential([L.Input((6,)), body, L.Dense(2, activation="softmax")])
    assert body.built and body.output_shape == (None, 8)
    model.compile(optimizer=ck.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=8, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    body.trainable = False             # as in Keras: compile again after freezing
    model.compile(optimizer=ck.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    frozen = body.get_weights()
    head = model.layers[-1].get_weights()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    for before, after in zip(frozen, body.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert any(not np.array_equal(a, b) for a, b in zip(head, model.layers[-1].get_weights()))
    assert body.trainable_weights == [] and len(model.trainable_weights) == 2


def test_config_round_trip_keeps_nesting_and_sharing(rng):
    model, _, _ = _siamese()
    clone = ck.Model.from_config(model.get_config())
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    assert type(clone.get_layer("encoder")).__name__ == "Sequential"
    clone.set_weights(model.get_weights())
    xs = [rng.random((3, 5)).astype(np.float32), rng.random((3, 5)).astype(np.float32)]
    np.testing.assert_array_equal(clone.predict(xs), model.predict(xs))
    shared_entry = [e for e in model.get_config()["layers"] if e["name"] == "shared"][0]
    assert shared_entry["inbound_nodes"] == [[["encoder", 0, 0]], [["encoder", 1, 0]]]


def test_model_as_layer_errors_are_clear():
    inputs = L.Input((4,))
    two_outputs = ck.Model(inputs, [L.Dense(2)(inputs), L.Dense(3)(inputs)], name="two")
    with pytest.raises(ConvkitError, match="must have one output"):
        two_outputs(L.Input((4,)))
    single = ck.Model(inputs, L.Dense(2)(inputs), name="single")
    with pytest.raises(ShapeError, match="input 0 has shape \\(None, 5\\)"):
        single(L.Input((5,)))


def test_summary_lists_a_nested_model_as_one_row():
    model, _, _ = _siamese()
    text = []
    model.summary(print_fn=text.append, line_length=120)
    rows = [line for line in text[0].splitlines() if line.startswith("│")]
    assert any("encoder (Sequential)" in row and "39" in row for row in rows)
    assert any("encoder[0][0]" in row for row in rows)
    assert any("encoder[1][0]" in row for row in rows)


def test_weight_paths_are_unique_with_nesting():
    model, _, _ = _siamese()
    paths = [path for path, _ in model.weight_paths()]
    assert len(set(paths)) == len(paths) == len(model.weights)
    assert all(path.startswith("encoder/") for path in paths[:4])      # encoder/dense_k/...
    assert paths[4:] == ["shared/kernel", "shared/bias", "head/kernel", "head/bias"]
    assert [w for _, w in model.weight_paths()] == model.weights


def _summary_text(api, expand_nested):
    layers = api.layers
    encoder = api.Sequential([api.Input((8, 8, 1)), layers.Conv2D(4, 3, activation="relu",
                                                                   name="conv2d"),
                              layers.Flatten(name="flatten")], name="encoder")
    a, b = api.Input((8, 8, 1), name="img_a"), api.Input((8, 8, 1), name="img_b")
    merged = layers.Concatenate(name="concatenate")([encoder(a), encoder(b)])
    out = layers.Dense(3, activation="softmax", name="a_rather_long_output_layer_name")(merged)
    model = api.Model([a, b], out, name="siamese")
    lines = []
    model.summary(print_fn=lambda text, line_break=None: lines.append(text), line_length=78,
                  expand_nested=expand_nested)
    return "\n".join(lines).rstrip("\n")


@pytest.mark.parametrize("expand_nested", [False, True])
def test_summary_matches_keras_for_nested_and_shared(expand_nested):
    keras = pytest.importorskip("keras")
    assert _summary_text(ck, expand_nested) == _summary_text(keras, expand_nested)


def test_nested_model_called_with_training_false_stays_in_inference_mode(rng):
    ck.set_seed(4)
    base = ck.Sequential([L.Input((6,)), L.Dense(8), L.BatchNormalization(),
                          L.Dropout(0.5)], name="base")
    inputs = L.Input((6,))
    pinned = ck.Model(inputs, L.Dense(2)(base(inputs, training=False)))
    x = rng.random((16, 6)).astype(np.float32)
    np.testing.assert_array_equal(pinned(x, training=True), pinned(x, training=False))
    moving = [w.value.copy() for w in base.layers[1].weights[2:]]
    pinned.compile(optimizer="sgd", loss="mse")
    pinned.fit(x, rng.random((16, 2)), epochs=1, batch_size=8, verbose=0)
    for before, w in zip(moving, base.layers[1].weights[2:]):
        np.testing.assert_array_equal(before, w.value)    # moving statistics untouched
    free = ck.Model(inputs, L.Dense(2)(base(inputs)))
    assert not np.array_equal(free(x, training=True), free(x, training=False))


def test_shared_dropout_backward_uses_each_calls_own_mask():
    ck.set_seed(8)
    a, b = L.Input((50,)), L.Input((50,))
    drop = L.Dropout(0.5)
    model = ck.Model([a, b], L.Add()([drop(a), drop(b)]))
    out = model([np.ones((4, 50)), np.full((4, 50), 1000.0)], training=True)
    kept_a = np.isin(out, (2.0, 2002.0))          # out = 2 * mask_a + 2000 * mask_b
    kept_b = out >= 2000.0
    assert not np.array_equal(kept_a, kept_b)
    dx_a, dx_b = model.backward(np.ones_like(out))
    np.testing.assert_array_equal(dx_a, 2.0 * kept_a)
    np.testing.assert_array_equal(dx_b, 2.0 * kept_b)
