"""The whole layer contract (tests/qa/test_layer_contract.py) for the single-input layers
added beside the core ones, and a summary of a model that uses them."""
import numpy as np
import pytest

import convkit as ck
from tests.qa.test_layer_contract import test_layer_contract as check_contract

L = ck.layers

LAYERS = {
    "leaky_relu": (lambda: L.LeakyReLU(0.1), (5,), "negative_slope=0.1"),
    "prelu": (lambda: L.PReLU(shared_axes=[1, 2]), (5, 7, 3), "shared_axes=[1, 2]"),
    "elu": (lambda: L.ELU(0.5), (5,), "alpha=0.5"),
    "softmax": (lambda: L.Softmax(axis=1), (4, 3), "axis=1"),
    "layer_norm": (lambda: L.LayerNormalization(axis=[1, 2]), (5, 7, 3), "axis=[1, 2]"),
    "spatial_dropout": (lambda: L.SpatialDropout2D(0.3, seed=1), (5, 7, 3), "rate=0.3"),
    "gaussian_noise": (lambda: L.GaussianNoise(0.2, seed=1), (5,), "stddev=0.2"),
    "flip": (lambda: L.RandomFlip("vertical", seed=1), (5, 7, 3), "mode='vertical'"),
    "rotation": (lambda: L.RandomRotation(0.1, seed=1), (5, 7, 3), "factor="),
    "zoom": (lambda: L.RandomZoom(0.1, seed=1), (5, 7, 3), "height_factor=0.1"),
    "translation": (lambda: L.RandomTranslation(0.1, 0.2, seed=1), (5, 7, 3),
                    "width_factor=0.2"),
    "contrast": (lambda: L.RandomContrast(0.3, seed=1), (5, 7, 3), "factor="),
    "crop": (lambda: L.RandomCrop(3, 4, seed=1), (5, 7, 3), "height=3"),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_contract(rng, name):
    make, shape, shown = LAYERS[name]
    check_contract(make, shape, shown, rng)


def test_summary_counts_their_parameters(capsys):
    model = ck.Sequential([L.Input((8, 8, 3)), L.RandomFlip(), L.RandomCrop(6, 6),
                           L.Conv2D(4, 3), L.PReLU(shared_axes=[1, 2]),
                           L.LayerNormalization(), L.SpatialDropout2D(0.2), L.Flatten(),
                           L.Dense(3), L.Softmax()])
    model.summary()
    text = capsys.readouterr().out
    for row in ("random_crop", "(None, 6, 6, 3)", "p_re_lu", "layer_normalization",
                "spatial_dropout2d", "softmax"):
        assert row in text
    # conv 3*3*3*4+4 = 112, PReLU 4, LayerNormalization 8, Dense 64*3+3 = 195
    assert model.count_params() == 112 + 4 + 8 + 195
