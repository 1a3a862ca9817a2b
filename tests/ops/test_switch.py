"""The one switch: ``CONVKIT_ACCEL`` (and its run-time form ``set_backend``) decides whether
any fast path runs; without numba or with the switch off, every op takes the NumPy code, so
no op can reach a compiled kernel that is not there."""
import numpy as np
import pytest

from convkit import ops
from convkit.ops import conv
from convkit.fast import kernels as accel
from convkit.fast.runtime import backend

PLAN_CASES = [  # one per plan conv_plan knows, with numba
    ((2, 6, 6, 32), (1, 1, 32, 16)),       # pointwise
    ((2, 8, 8, 8), (3, 3, 8, 8)),          # winograd
    ((2, 12, 12, 1), (3, 3, 1, 8)),        # wide
    ((2, 7, 7, 4), (3, 3, 1, 4)),          # depthwise
    ((2, 9, 9, 6), (5, 5, 6, 16)),         # implicit
]


@pytest.fixture
def without_numba(monkeypatch):
    """The state of a machine where ``import numba`` fails."""
    monkeypatch.setattr(backend, "_numba", None)
    monkeypatch.setattr(backend, "_import_failed", True)


@pytest.mark.parametrize("how", ["no numba", "CONVKIT_ACCEL=0", "CONVKIT_BACKEND=numpy"])
def test_switch_off_sends_every_op_to_numpy(request, monkeypatch, how):
    if how == "no numba":
        request.getfixturevalue("without_numba")
    else:
        name, value = how.split("=")
        monkeypatch.setenv(name, value)
    assert not accel.available() and not accel.enabled() and not accel.threaded()
    for x_shape, k_shape in PLAN_CASES:
        for backward in (False, True):
            assert conv.conv_plan(x_shape, k_shape, backward=backward) == "numpy"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pointwise_relu_backward_without_numba(rng, without_numba, dtype):
    # the bug this switch closed: a 1x1 ReLU convolution took the threaded plan and then a
    # compiled ReLU gradient that does not exist without numba
    x = rng.standard_normal((2, 5, 5, 32)).astype(dtype)
    k = rng.standard_normal((1, 1, 32, 16)).astype(dtype)
    b = rng.standard_normal(16).astype(dtype)
    y = conv.conv2d_relu(x, k, b)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, dk, db = conv.conv2d_relu_backward(dy, x, k, y)
    ref = ops.conv2d_backward(dy * (y > 0), x, k)
    for got, want in zip((dx, dk, db), ref):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_fit_with_pointwise_relu_conv_without_numba(rng, without_numba):
    from convkit import layers, models
    model = models.Sequential([layers.Input((6, 6, 3)), layers.Conv2D(4, 1, activation="relu"),
                               layers.Flatten(), layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    x = rng.standard_normal((8, 6, 6, 3)).astype(np.float32)
    y = rng.standard_normal((8, 2)).astype(np.float32)
    history = model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
