"""This round's layers through real Keras 3 files, both ways: models written by Keras
(``.keras`` and legacy ``.h5``) load with ``ck.load_model`` and predict as Keras did, and
what convkit writes back opens in Keras with the same predictions."""
import numpy as np
import pytest

import convkit as ck

keras = pytest.importorskip("keras")
L = keras.layers


def _transposed_and_separable():
    return keras.Sequential([
        keras.Input((8, 8, 3)), L.Conv2DTranspose(4, 3, strides=2, padding="same"),
        L.SeparableConv2D(5, 3, padding="same", activation="relu"),
        L.UpSampling2D(2, interpolation="bilinear"), L.Cropping2D(((1, 0), (0, 1))),
        L.GlobalAveragePooling2D(), L.Dense(3)])


def _one_dimensional():
    return keras.Sequential([
        keras.Input((20, 3)), L.Conv1D(4, 3, padding="causal", dilation_rate=2),
        L.MaxPooling1D(2), L.Conv1D(4, 3), L.AveragePooling1D(2), L.UpSampling1D(2),
        L.GlobalMaxPooling1D(), L.Dense(2)])


def _normalization_and_activations():
    return keras.Sequential([
        keras.Input((6, 6, 2)), L.Rescaling(1 / 255.0), L.Conv2D(4, 3),
        L.LayerNormalization(), L.LeakyReLU(), L.PReLU(), L.ELU(), L.Reshape((16, 4)),
        L.Permute((2, 1)), L.Flatten(), L.Dense(3), L.Softmax()])


def _merging_and_augmentation():
    inputs = keras.Input((8, 8, 2))
    flipped = L.RandomFlip()(inputs)              # identity at inference
    a = L.Conv2D(2, 3, padding="same")(flipped)
    b = L.Conv2D(2, 1)(flipped)
    mixed = L.Average()([L.Subtract()([L.Maximum()([a, b]), L.Minimum()([a, b])]), a])
    mixed = L.GaussianNoise(0.1)(L.SpatialDropout2D(0.2)(mixed))
    outputs = L.Dense(2)(L.Flatten()(L.Resizing(4, 4)(mixed)))
    return keras.Model(inputs, outputs)


BUILDERS = {"transposed_separable": _transposed_and_separable,
            "one_dimensional": _one_dimensional,
            "normalization_activations": _normalization_and_activations,
            "merging_augmentation": _merging_and_augmentation}


def _relative(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b)))


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_new_layers_cross_keras_files_both_ways(name, tmp_path):
    keras.utils.set_random_seed(3)
    model = BUILDERS[name]()
    shape = (2,) + tuple(model.inputs[0].shape[1:])
    x = np.random.default_rng(0).random(shape).astype("float32")
    want = np.asarray(model.predict(x, verbose=0))
    for ext in (".keras", ".h5"):
        path = tmp_path / f"{name}{ext}"
        model.save(path)
        ours = ck.load_model(path)
        assert _relative(ours.predict(x), want) < 1e-5, ext
        back = tmp_path / f"{name}_back{ext}"
        ours.save(back)
        theirs = keras.saving.load_model(back)
        assert _relative(theirs.predict(x, verbose=0), want) < 1e-5, ext
