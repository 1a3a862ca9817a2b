"""Regenerate the Keras fixture files in ``tests/interop/keras_fixtures/`` with real Keras.

    KERAS_BACKEND=jax python tests/interop/make_keras_fixtures.py      # Keras 3.15.1 + JAX

Each model in :data:`BUILDERS` is built by Keras, given seeded random weights (batch
normalization statistics too, so every variable matters), and written three ways:
``<name>.keras``, ``<name>.h5`` (legacy HDF5, with its config) and ``<name>.weights.h5``;
beside them ``<name>_x.npy`` (a fixed input) and ``<name>_y.npy`` (Keras's prediction on
it). ``tests/interop/test_keras_files.py`` loads every file with convkit and compares.

To cover a new layer, add a builder: a function returning a Keras model (small: the whole
folder should stay well under a megabyte).
"""
from __future__ import annotations

import os
import pathlib
import sys

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")

HERE = pathlib.Path(__file__).resolve().parent / "keras_fixtures"


def mnist_convnet(keras):
    """Keras's simple MNIST convnet (34,826 parameters), compiled as in its example."""
    L = keras.layers
    model = keras.Sequential([
        keras.Input((28, 28, 1)), L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2), L.Flatten(), L.Dropout(0.5),
        L.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def bn_depthwise(keras):
    """Batch normalization, DepthwiseConv2D, strides with 'same' padding (odd sizes, so
    the extra pad goes bottom/right), global average pooling."""
    L = keras.layers
    model = keras.Sequential([
        keras.Input((11, 11, 3)),
        L.Conv2D(6, 3, strides=2, padding="same", use_bias=False),
        L.BatchNormalization(),
        L.ReLU(),
        L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2),
        L.BatchNormalization(epsilon=1e-2, momentum=0.9),
        L.Activation("relu"),
        L.GlobalAveragePooling2D(),
        L.Dense(4, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                  loss="categorical_crossentropy", metrics=["categorical_accuracy"])
    return model


def add_concat(keras):
    """A functional graph with a residual Add and a Concatenate."""
    L = keras.layers
    inputs = keras.Input((8, 8, 3))
    a = L.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    b = L.Conv2D(4, 1)(inputs)
    added = L.Add()([a, b])
    x = L.Concatenate()([added, a])
    x = L.MaxPooling2D(2)(x)
    x = L.Flatten()(x)
    outputs = L.Dense(3)(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss="mse", metrics=["mae"])
    return model


def branched(keras):
    """Two same-shape convolutions on one input, the second branch one layer deeper: Keras
    lists the deeper branch's convolution first, whatever order the code made them in."""
    L = keras.layers
    inputs = keras.Input((7, 7, 2))
    shallow = L.Conv2D(4, 3, padding="same")(inputs)
    deep = L.Conv2D(4, 3, padding="same")(inputs)
    deep = L.Conv2D(4, 3, padding="same", activation="relu")(deep)
    x = L.Add()([shallow, deep])
    x = L.GlobalMaxPooling2D()(x)
    outputs = L.Dense(3, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def other_layers(keras):
    """The remaining layer types and arguments: ZeroPadding2D (uneven), dilation, groups,
    AveragePooling2D with 'same', Activation, ReLU with all three arguments, Multiply,
    Dropout, GlobalMaxPooling2D, a regularizer and non-default initializers."""
    L = keras.layers
    inputs = keras.Input((9, 9, 4))
    x = L.ZeroPadding2D(((1, 0), (2, 1)))(inputs)
    x = L.Conv2D(6, 2, dilation_rate=2, groups=2, activation="sigmoid",
                 kernel_initializer="he_normal",
                 kernel_regularizer=keras.regularizers.L2(1e-4))(x)
    x = L.AveragePooling2D(3, strides=2, padding="same")(x)
    y = L.Activation("tanh")(x)
    z = L.ReLU(max_value=0.5, negative_slope=0.1, threshold=0.05)(x)
    x = L.Multiply()([y, z])
    x = L.MaxPooling2D(2, strides=1, padding="same")(x)
    x = L.Dropout(0.3)(x)
    x = L.GlobalMaxPooling2D()(x)
    outputs = L.Dense(5, kernel_initializer=keras.initializers.RandomNormal(0.0, 0.2),
                      bias_initializer="ones")(x)
    return keras.Model(inputs, outputs, name="other_layers")


#: name -> builder; every one is written in all three formats
BUILDERS = {"mnist_convnet": mnist_convnet, "bn_depthwise": bn_depthwise,
            "add_concat": add_concat, "branched": branched, "other_layers": other_layers}


def randomise(model, seed: int) -> None:
    """Seeded random values for every variable (positive for variances)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for variable in layer.weights:
            shape = tuple(variable.shape)
            if "variance" in variable.path:
                values.append(rng.uniform(0.5, 2.0, shape).astype("float32"))
            else:
                values.append(rng.normal(0.0, 0.4, shape).astype("float32"))
        if values:
            layer.set_weights(values)


def main(names=None) -> None:
    import keras
    keras.utils.set_random_seed(0)
    HERE.mkdir(exist_ok=True)
    for seed, (name, build) in enumerate(BUILDERS.items()):
        if names and name not in names:
            continue
        model = build(keras)
        randomise(model, seed)
        shape = (2, *model.input_shape[1:])
        x = np.random.default_rng(100 + seed).normal(0.0, 1.0, shape).astype("float32")
        y = np.asarray(model.predict(x, verbose=0))
        model.save(HERE / f"{name}.keras")
        model.save(HERE / f"{name}.h5")
        model.save_weights(HERE / f"{name}.weights.h5")
        np.save(HERE / f"{name}_x.npy", x)
        np.save(HERE / f"{name}_y.npy", y)
        print(f"{name}: {model.count_params()} parameters, output {y.shape}")
    total = sum(p.stat().st_size for p in HERE.iterdir())
    print(f"keras {keras.__version__}, {HERE}: {total:,} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
