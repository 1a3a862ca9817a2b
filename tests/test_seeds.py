"""Reproducibility: ck.set_seed and seed= give bit-identical weights and dropout masks, and
the legacy global np.random state is never touched."""
import numpy as np

import convkit as ck
from convkit import layers as L


def build_stack():
    made = [L.Conv2D(8, 3), L.DepthwiseConv2D(3, depth_multiplier=2), L.Dense(5),
            L.BatchNormalization(gamma_initializer="random_normal")]
    shapes = [(None, 8, 8, 3), (None, 6, 6, 8), (None, 12), (None, 5)]
    for layer, shape in zip(made, shapes):
        layer.build(shape)
    return [w for layer in made for w in layer.get_weights()]


def test_set_seed_gives_bit_identical_weights():
    ck.set_seed(42)
    first = build_stack()
    ck.set_seed(42)
    second = build_stack()
    for a, b in zip(first, second):
        assert a.tobytes() == b.tobytes()
    ck.set_seed(43)
    third = build_stack()
    assert not np.array_equal(first[0], third[0])


def test_layer_seed_is_independent_of_the_global_seed():
    ck.set_seed(1)
    a = L.Dense(4, seed=7)
    ck.set_seed(2)
    b = L.Dense(4, seed=7)
    a.build((None, 3))
    b.build((None, 3))
    np.testing.assert_array_equal(a.get_weights()[0], b.get_weights()[0])
    c = L.Dense(4, seed=8)
    c.build((None, 3))
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


def test_dropout_masks_are_reproducible():
    x = np.ones((4, 50), np.float32)
    ck.set_seed(5)
    first = L.Dropout(0.5)(x, training=True)
    ck.set_seed(5)
    second = L.Dropout(0.5)(x, training=True)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(L.Dropout(0.5, seed=3)(x, training=True),
                                  L.Dropout(0.5, seed=3)(x, training=True))
    assert not np.array_equal(L.Dropout(0.5, seed=3)(x, training=True),
                              L.Dropout(0.5, seed=4)(x, training=True))


def test_global_numpy_random_state_is_untouched():
    np.random.seed(123)
    before = np.random.get_state()
    ck.set_seed(0)
    build_stack()
    layer = L.Dropout(0.3)
    layer(np.ones((3, 3)), training=True)
    after = np.random.get_state()
    assert before[0] == after[0]
    np.testing.assert_array_equal(before[1], after[1])
    assert before[2:] == after[2:]
