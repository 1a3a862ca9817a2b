"""Layers on the fast paths: Conv2D with a fused ReLU and MaxPooling2D keeping the argmax of
its forward give the same outputs and gradients as on the NumPy backend."""
import numpy as np
import pytest

import convkit as ck
from convkit.fast import kernels as accel


def _run_layer(layer_factory, x, dy, backend):
    with accel.use_backend(backend):
        ck.set_seed(3)
        layer = layer_factory()
        y = layer(x, training=True)
        dx = layer.backward(dy)
        return y, dx, [None if g is None else g.copy() for g in layer.grads]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("factory, in_shape, out_shape", [
    (lambda: ck.layers.Conv2D(8, 3, padding="same", activation="relu"),
     (2, 10, 9, 8), (2, 10, 9, 8)),                                   # Winograd + fused ReLU
    (lambda: ck.layers.Conv2D(32, 3, activation="relu"), (2, 9, 9, 1), (2, 7, 7, 32)),
    (lambda: ck.layers.Conv2D(2, 5, padding="same", activation="relu"),
     (2, 9, 9, 3), (2, 9, 9, 2)),                                     # direct
    (lambda: ck.layers.MaxPooling2D(2), (2, 9, 8, 5), (2, 4, 4, 5)),
    (lambda: ck.layers.MaxPooling2D(3, strides=2, padding="same", data_format="channels_first"),
     (2, 5, 9, 8), (2, 5, 5, 4)),
])
def test_layer_matches_numpy_backend(rng, dtype, factory, in_shape, out_shape):
    if dtype == np.float64:
        ck.config.set_floatx("float64")
    x = rng.permutation(int(np.prod(in_shape))).reshape(in_shape).astype(dtype) / 50 - 1
    dy = rng.standard_normal(out_shape).astype(dtype)
    fast = _run_layer(factory, x, dy, "auto")
    ref = _run_layer(factory, x, dy, "numpy")
    rtol = 2e-5 if dtype == np.float32 else 1e-11
    assert fast[0].dtype == dtype and fast[1].dtype == dtype
    for ours, expected in [(fast[0], ref[0]), (fast[1], ref[1]), *zip(fast[2], ref[2])]:
        scale = np.abs(expected).max()
        assert np.abs(ours - expected).max() <= rtol * scale
