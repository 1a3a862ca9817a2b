"""The resampling, separable, reshaping and 1-D layers inside whole models: float64
whole-model gradients against finite differences, the same model in Keras 3 with the same
weights, training, and save/load."""
import numpy as np
import pytest

import convkit as ck
from tests.layers.keras_parity import keras_layers

EPS = 1e-6


def autoencoder(layers, dtype=None):
    """A small convolutional autoencoder as Keras users write one (``layers`` is
    ``convkit.layers`` or ``keras.layers``)."""
    kw = {} if dtype is None else {"dtype": dtype}
    return [layers.Rescaling(1 / 255, **kw),
            layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", **kw),
            layers.SeparableConv2D(6, 3, padding="same", depth_multiplier=2,
                                   activation="tanh", **kw),
            layers.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu", **kw),
            layers.Cropping2D(((1, 1), (0, 2)), **kw),
            layers.UpSampling2D(2, interpolation="bilinear", **kw),
            layers.Resizing(10, 10, **kw),
            layers.Conv2D(1, 3, padding="same", activation="sigmoid", **kw)]


def sequence_net(layers, dtype=None):
    """Images read as sequences of rows: (10, 10, 1) -> (10, 10) -> 1-D layers -> classes."""
    kw = {} if dtype is None else {"dtype": dtype}
    return [layers.Reshape((10, 10), **kw), layers.Permute((2, 1), **kw),
            layers.Conv1D(5, 3, padding="causal", dilation_rate=2, activation="relu", **kw),
            layers.MaxPooling1D(2, **kw), layers.UpSampling1D(2, **kw),
            layers.AveragePooling1D(3, strides=2, padding="same", **kw),
            layers.Conv1D(4, 2, activation="tanh", **kw), layers.GlobalMaxPooling1D(**kw),
            layers.Dense(3, activation="softmax", **kw)]


def build(stack, loss):
    model = ck.Sequential([ck.layers.Input((10, 10, 1))] + stack(ck.layers))
    model.compile(optimizer=ck.optimizers.SGD(learning_rate=1e-2), loss=loss)
    return model


CASES = [(autoencoder, "mse"), (sequence_net, "sparse_categorical_crossentropy")]


def _targets(stack, rng, x):
    if stack is autoencoder:
        return rng.random(x.shape)
    return rng.integers(0, 3, len(x))


@pytest.mark.parametrize("stack, loss", CASES, ids=["autoencoder", "sequences"])
def test_whole_model_gradients(rng, stack, loss):
    ck.set_floatx("float64")
    ck.set_seed(3)
    model = build(stack, loss)
    x = rng.random((3, 10, 10, 1)) * 255
    y = _targets(stack, rng, x)
    weights = model.trainable_weights
    before = [w.value.copy() for w in weights]
    model.train_on_batch(x, y)                     # one SGD step: g = (before - after) / lr
    grads = [(b - w.value) / 1e-2 for b, w in zip(before, weights)]
    for w, value in zip(weights, before):
        w.value[...] = value
    assert len(grads) >= 6
    for w, g in zip(weights, grads):
        assert np.any(g != 0), w.name
        v = rng.standard_normal(w.value.shape)
        w.value += EPS * v
        up = model.loss(y, model(x, training=True))
        w.value -= 2 * EPS * v
        down = model.loss(y, model(x, training=True))
        w.value += EPS * v
        assert float(np.sum(g * v)) == pytest.approx((up - down) / (2 * EPS), rel=1e-5,
                                                     abs=1e-9), w.name


@pytest.mark.parametrize("stack, loss", CASES, ids=["autoencoder", "sequences"])
def test_same_model_in_keras_gives_the_same_outputs(rng, stack, loss):
    layers = keras_layers()
    import jax
    import keras
    ck.set_floatx("float64")
    model = build(stack, loss)
    x = rng.random((2, 10, 10, 1)) * 255
    with jax.enable_x64(True):
        theirs = keras.Sequential([keras.Input((10, 10, 1), dtype="float64")]
                                  + stack(layers, "float64"))
        theirs.set_weights(model.get_weights())
        expected = np.asarray(theirs(x))
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-5, atol=1e-6)
    assert model.count_params() == theirs.count_params()


def test_autoencoder_trains_and_survives_save_and_load(rng, tmp_path):
    ck.set_seed(1)
    model = ck.Sequential([ck.layers.Input((10, 10, 1))] + autoencoder(ck.layers))
    model.compile(optimizer=ck.optimizers.Adam(learning_rate=0.01), loss="mse")
    x = np.zeros((32, 10, 10, 1), np.float32)
    x[:, 3:7, 3:7] = 255 * rng.random((32, 1, 1, 1))        # bright squares to reconstruct
    history = model.fit(x, x / 255, epochs=8, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < 0.8 * history.history["loss"][0]
    model.save(tmp_path / "ae.convkit")
    loaded = ck.load_model(tmp_path / "ae.convkit")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_weights_saved_by_keras_load_into_the_same_model(rng, tmp_path):
    layers = keras_layers()
    import keras
    from convkit.io.keras_import import load_keras_weights
    theirs = keras.Sequential([keras.Input((10, 10, 1))] + autoencoder(layers))
    theirs.save_weights(tmp_path / "ae.weights.h5")
    model = ck.Sequential([ck.layers.Input((10, 10, 1))] + autoencoder(ck.layers))
    loaded = load_keras_weights(model, tmp_path / "ae.weights.h5")
    assert [path for _, path in loaded] == [
        "layers/conv2d/vars", "layers/separable_conv2d/vars", "layers/conv2d_transpose/vars",
        "layers/conv2d_1/vars"]
    x = (rng.random((2, 10, 10, 1)) * 255).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), np.asarray(theirs(x)), rtol=1e-5, atol=1e-6)
