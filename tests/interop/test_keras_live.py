"""Round trips against live Keras 3 (JAX backend): convkit writes .keras / .h5 /
.weights.h5, real ``keras.saving.load_model`` opens them and predicts the same numbers
(1e-5 of the largest output), and back; convkit's reproduction of Keras's layer order is
checked against Keras itself on random branched graphs."""
import os

import numpy as np
import pytest

import convkit as ck
from convkit.errors import ConvkitError
from convkit.io.onnx_export import keras_layer_order

pytest.importorskip("h5py")
L = ck.layers


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    return pytest.importorskip("keras")


def assert_close(actual, reference):
    scale = float(np.abs(reference).max())
    np.testing.assert_allclose(actual, reference, rtol=0, atol=1e-5 * scale)


def randomise(model, seed=0):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(w.dtype)
                       if "variance" in name else rng.normal(0, 0.4, w.shape).astype(w.dtype)
                       for name, w in zip([w.name for w in model.weights],
                                          model.get_weights())])


def mnist():
    model = ck.Sequential([L.Input((28, 28, 1)), L.Conv2D(8, 3, activation="relu"),
                           L.MaxPooling2D(2), L.Conv2D(16, 3, activation="relu"),
                           L.MaxPooling2D(2), L.Flatten(), L.Dropout(0.5),
                           L.Dense(10, activation="softmax")])
    model.compile(optimizer=ck.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def bn_depthwise():
    model = ck.Sequential([L.Input((11, 11, 3)),
                           L.Conv2D(6, 3, strides=2, padding="same", use_bias=False),
                           L.BatchNormalization(), L.ReLU(max_value=6.0),
                           L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2),
                           L.BatchNormalization(epsilon=0.01), L.Activation("relu"),
                           L.GlobalAveragePooling2D(), L.Dense(4, activation="softmax")])
    model.compile(optimizer=ck.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
                  loss="categorical_crossentropy", metrics=["categorical_accuracy"])
    return model


def functional():
    inputs = L.Input((9, 9, 4))
    shallow = L.Conv2D(4, 3, padding="same")(inputs)
    deep = L.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    deep = L.Conv2D(4, 3, padding="same", kernel_regularizer=ck.regularizers.L2(1e-3))(deep)
    added = L.Add()([shallow, deep])
    x = L.Concatenate()([added, L.Multiply()([shallow, deep])])
    x = L.ZeroPadding2D(((1, 0), (0, 2)))(x)
    x = L.AveragePooling2D(3, strides=2, padding="same")(x)
    x = L.Conv2D(6, 2, dilation_rate=2, groups=2, activation="tanh")(x)
    x = L.GlobalMaxPooling2D()(x)
    outputs = L.Dense(3, kernel_initializer="he_normal")(L.Dropout(0.2)(x))
    model = ck.Model(inputs, outputs)
    model.compile(optimizer="rmsprop", loss="mse")
    return model


def two_heads():
    a, b = L.Input((6, 6, 2), name="left"), L.Input((6, 6, 2), name="right")
    x = L.Concatenate()([L.Conv2D(3, 3, padding="same")(a), b])
    return ck.Model([a, b], [L.Dense(2)(L.Flatten()(x)),
                             L.GlobalAveragePooling2D()(x)])


BUILDERS = {"mnist": mnist, "bn_depthwise": bn_depthwise, "functional": functional,
            "two_heads": two_heads}


def sample(model, seed=1):
    rng = np.random.default_rng(seed)
    shapes = model.input_shape if isinstance(model.input_shape, list) else [model.input_shape]
    xs = [rng.normal(size=(2, *s[1:])).astype(np.float32) for s in shapes]
    return xs if len(xs) > 1 else xs[0]


def predictions(model, x):
    """The outputs as a list of arrays; a Keras model is called directly (eagerly), which
    for these tiny models is much faster than compiling ``predict``."""
    if isinstance(model, ck.models.Model):
        out = model.predict(x, verbose=0)
    else:
        out = model(x, training=False)
    out = out if isinstance(out, (list, tuple)) else [out]
    return [np.asarray(o) for o in out]


@pytest.mark.parametrize("name", list(BUILDERS))
def test_convkit_to_keras_and_back(keras, tmp_path, name):
    ck.set_seed(3)
    model = BUILDERS[name]()
    randomise(model)
    x = sample(model)
    ours = predictions(model, x)
    model.save(tmp_path / "m.keras")
    model.save(tmp_path / "m.h5")
    model.save_weights(tmp_path / "m.weights.h5")
    for suffix in (".keras", ".h5"):
        theirs = keras.saving.load_model(tmp_path / f"m{suffix}")
        for a, b in zip(predictions(theirs, x), ours):
            assert_close(a, b)
    model.save_weights(tmp_path / "legacy.h5")
    theirs = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    for weights in ("m.weights.h5", "legacy.h5"):
        theirs.set_weights([np.zeros_like(w) for w in theirs.get_weights()])
        theirs.load_weights(tmp_path / weights)
        for a, b in zip(predictions(theirs, x), ours):
            assert_close(a, b)
    # and back: Keras writes, convkit reads
    theirs.save(tmp_path / "k.keras")
    theirs.save(tmp_path / "k.h5")
    for suffix in (".keras", ".h5"):
        again = ck.load_model(tmp_path / f"k{suffix}", compile=False)
        for a, b in zip(predictions(again, x), ours):
            assert_close(a, b)


def test_keras_recompiles_what_convkit_saved(keras, tmp_path):
    model = bn_depthwise()
    model.save(tmp_path / "m.keras")
    theirs = keras.saving.load_model(tmp_path / "m.keras")
    assert type(theirs.optimizer).__name__ == "SGD"
    assert float(theirs.optimizer.momentum) == pytest.approx(0.9)
    assert theirs.optimizer.nesterov
    assert theirs.loss == "categorical_crossentropy"
    model = mnist()
    model.save(tmp_path / "m.h5")
    theirs = keras.saving.load_model(tmp_path / "m.h5")
    assert type(theirs.optimizer).__name__ == "Adam"
    assert float(theirs.optimizer.learning_rate) == pytest.approx(2e-3)


def test_checkpoint_follows_the_extension(keras, tmp_path):
    ck.set_seed(0)
    model = mnist()
    x = np.random.default_rng(0).normal(size=(8, 28, 28, 1)).astype(np.float32)
    y = np.arange(8) % 10
    callbacks = [ck.callbacks.ModelCheckpoint(str(tmp_path / "m_{epoch}.keras")),
                 ck.callbacks.ModelCheckpoint(str(tmp_path / "w_{epoch}.weights.h5"),
                                              save_weights_only=True),
                 ck.callbacks.ModelCheckpoint(str(tmp_path / "c_{epoch}.convkit"))]
    model.fit(x, y, epochs=2, batch_size=4, verbose=0, callbacks=callbacks)
    theirs = keras.saving.load_model(tmp_path / "m_2.keras")
    assert_close(predictions(theirs, x)[0], predictions(model, x)[0])
    theirs.load_weights(tmp_path / "w_1.weights.h5")
    first = ck.load_model(tmp_path / "m_1.keras")
    assert_close(predictions(theirs, x)[0], predictions(first, x)[0])
    assert ck.load_model(tmp_path / "c_2.convkit").optimizer.iterations == 4
    with pytest.raises(ConvkitError, match="weights.h5"):
        ck.callbacks.ModelCheckpoint(str(tmp_path / "w.keras"), save_weights_only=True)


def test_settings_keras_lacks_are_refused_when_saving(tmp_path):
    for layer in (L.Conv2D(2, 3, padding_mode="reflect", padding="same"),
                  L.Conv2D(2, 3, padding=1), L.MaxPooling2D(2, ceil_mode=True)):
        model = ck.Sequential([L.Input((6, 6, 1)), layer])
        with pytest.raises(ConvkitError, match=type(layer).__name__):
            model.save(tmp_path / "m.keras")
        model.save(tmp_path / "m.convkit")          # convkit's own format keeps them
    assert not (tmp_path / "m.keras").exists()


def test_keras_lambda_and_custom_layers_are_refused(keras, tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs))
    model.save(tmp_path / "lambda.keras")
    with pytest.raises(ConvkitError, match="Lambda"):
        ck.load_model(tmp_path / "lambda.keras")

    @keras.saving.register_keras_serializable(package="mine")
    class Scale(keras.layers.Layer):
        def call(self, t):
            return t * 3

    model = keras.Sequential([keras.Input((4,)), Scale()])
    model.save(tmp_path / "custom.keras")
    with pytest.raises(ConvkitError, match="mine>Scale.*custom_objects"):
        ck.load_model(tmp_path / "custom.keras")


# ---------------------------------------------------------------- Keras's layer order
def random_graph(lib, seed: int):
    """The same random graph of convolutions, Add, Concatenate and pooling, built with
    Keras or convkit (whose APIs match), layers named by creation."""
    rng = np.random.default_rng(seed)
    layers = lib.layers
    inputs = [layers.Input((5, 5, 2), name="in0")]
    if rng.random() < 0.3:
        inputs.append(layers.Input((5, 5, 2), name="in1"))
    tensors = list(inputs)
    for index in range(int(rng.integers(4, 10))):
        kind = rng.choice(["conv", "conv", "add", "concat", "relu"])
        name = f"n{index}"
        pick = [tensors[int(i)] for i in rng.choice(len(tensors), 2)]
        if kind == "conv" or pick[0] is pick[1]:
            x = layers.Conv2D(2, 3, padding="same", name=name)(pick[0])
        elif kind == "add":
            x = layers.Add(name=name)(pick)
        elif kind == "concat":
            x = layers.Conv2D(2, 1, name=name + "c")(layers.Concatenate(name=name)(pick))
        else:
            x = layers.ReLU(name=name)(pick[0])
        tensors.append(x)
    outputs = [tensors[-1]] + ([tensors[-3]] if rng.random() < 0.3 else [])
    used_inputs = inputs
    return (lib.Model if hasattr(lib, "Model") else lib.models.Model)(
        used_inputs, outputs if len(outputs) > 1 else outputs[0])


def test_keras_layer_order_matches_keras(keras):
    checked = 0
    for seed in range(25):
        try:
            theirs = random_graph(keras, seed)
        except ValueError:                 # an input no output depends on
            continue
        ours = random_graph(ck, seed)
        assert [layer.name for layer in keras_layer_order(ours)] == \
            [layer.name for layer in theirs.layers], f"seed {seed}"
        checked += 1
    assert checked >= 15


@pytest.mark.parametrize("optimizer", [
    ck.optimizers.Adam(1e-2, amsgrad=True), ck.optimizers.SGD(0.1, momentum=0.9),
    ck.optimizers.RMSprop(1e-2, momentum=0.5, centered=True)])
def test_optimizer_state_crosses_over(keras, tmp_path, optimizer):
    """convkit trains two steps and saves .keras: Keras loads every optimizer variable
    (no 'Skipping variable loading' warning) in its own order, and back."""
    import warnings
    ck.set_seed(0)
    model = bn_depthwise()
    model.compile(optimizer=optimizer, loss="categorical_crossentropy")
    x = sample(model)
    model.fit(x, np.eye(4, dtype=np.float32)[[0, 2]], epochs=2, batch_size=2, verbose=0)
    model.save(tmp_path / "m.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        theirs = keras.saving.load_model(tmp_path / "m.keras")
    assert not [w for w in caught if "Skipping variable loading" in str(w.message)]
    state = model.optimizer.get_state()
    assert int(theirs.optimizer.iterations) == state["iterations"] == 2
    trainable = [id(w) for w in model.trainable_weights]
    index = {f"{layer.name}/{w.name}": trainable.index(id(w)) for layer in model.layers
             for w in layer.weights if id(w) in trainable}
    checked = 0
    for variable in theirs.optimizer.variables[2:]:
        # Keras names a slot "<layer>_<weight>_<slot>", e.g. "conv2d_kernel_momentum"
        for path, position in index.items():
            prefix = path.replace("/", "_") + "_"
            slot = variable.name[len(prefix):] if variable.name.startswith(prefix) else None
            if slot in ("momentum", "velocity", "velocity_hat", "average_gradient"):
                np.testing.assert_allclose(np.asarray(variable), state[f"{slot}/{position}"],
                                           rtol=1e-6, atol=1e-7)
                checked += 1
    assert checked == len(theirs.optimizer.variables) - 2 > 0
    theirs.save(tmp_path / "k.keras")
    again = ck.load_model(tmp_path / "k.keras")
    for key, value in state.items():
        np.testing.assert_allclose(again.optimizer.get_state()[key], value, rtol=1e-6)
