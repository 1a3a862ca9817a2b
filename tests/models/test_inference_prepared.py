"""Inference through the prepared fast paths (``convkit.fast.dispatch.prepare``): a layer's
checks and its op's set-up run once per input shape, and the numbers equal the usual path's.

Each case compares a model's ``predict`` / ``model(x)`` with the same layers run with the
prepared door shut (``dispatch.prepare`` returning None), so the two paths differ only in the
set-up they skip."""
import numpy as np
import pytest

import convkit as ck
from convkit.errors import ShapeError
from convkit.fast import dispatch
from convkit.fast.runtime import backend, threads

L = ck.layers


def _usual(monkeypatch, fn):
    """``fn()`` with the prepared forms switched off."""
    with monkeypatch.context() as patch:
        patch.setattr(dispatch, "prepare", lambda *a, **k: None)
        return fn()


def _convnet(padding="valid", activation="relu", strides=1, filters=32):
    ck.set_seed(3)
    return ck.Sequential([L.Input((14, 14, 3)),
                          L.Conv2D(filters, 3, strides=strides, padding=padding,
                                   activation=activation),
                          L.MaxPooling2D(2, padding="same"),
                          L.Conv2D(16, 1, activation="relu"),
                          L.Flatten(), L.Dense(5, activation="softmax")])


@pytest.mark.parametrize("padding,activation,strides,filters", [
    ("valid", "relu", 1, 32), ("same", "relu", 1, 32), ("same", "tanh", 2, 16),
    ("valid", None, 1, 8)])
@pytest.mark.parametrize("batch", [1, 3])
def test_prepared_inference_equals_usual_path(monkeypatch, padding, activation, strides,
                                              filters, batch):
    model = _convnet(padding, activation, strides, filters)
    x = np.random.default_rng(batch).standard_normal((batch, 14, 14, 3)).astype(np.float32)
    fast = model.predict(x, verbose=0)
    usual = _usual(monkeypatch, lambda: model.predict(x, verbose=0))
    np.testing.assert_allclose(fast, usual, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(model(x), usual, rtol=1e-6, atol=1e-7)
    assert fast.shape == (batch, 5)


def test_prepared_conv_is_used_and_sees_new_weights():
    if not dispatch.allowed():
        pytest.skip("requires numba (the compiled kernels)")
    model = _convnet()
    x = np.random.default_rng(0).standard_normal((1, 14, 14, 3)).astype(np.float32)
    conv = model.layers[0]
    before = model.predict(x, verbose=0)
    assert dispatch.prepare("conv2d", "forward", x.shape, x.dtype, conv.get_weights()[0].shape,
                            conv.strides, conv.padding, conv.dilation_rate, 1, "zeros",
                            "channels_last", True) is not None
    kernel, bias = conv.get_weights()
    conv.set_weights([kernel * 0.5, bias + 0.25])           # written into the same arrays
    after = model.predict(x, verbose=0)
    assert not np.allclose(before, after)
    reference = ck.ops.conv2d(x, kernel * 0.5, bias + 0.25)
    np.testing.assert_allclose(conv.forward(x), np.maximum(reference, 0), rtol=1e-5, atol=1e-6)


def test_checks_still_run_for_a_new_input_shape():
    model = _convnet()
    model.predict(np.zeros((1, 14, 14, 3), np.float32), verbose=0)
    with pytest.raises(ShapeError, match="expected 3 input channels, got 1"):
        model.layers[0].forward(np.zeros((1, 14, 14, 1), np.float32))
    with pytest.raises(ShapeError, match="channels"):
        model.predict(np.zeros((1, 14, 14, 4), np.float32), verbose=0)
    dense = model.layers[-1]
    with pytest.raises(ShapeError, match="input features"):
        dense.forward(np.zeros((1, 7), np.float32))


def test_the_switch_is_asked_on_every_call(monkeypatch):
    model = _convnet()
    x = np.random.default_rng(1).standard_normal((1, 14, 14, 3)).astype(np.float32)
    fast = model.predict(x, verbose=0)
    monkeypatch.setenv("CONVKIT_ACCEL", "0")
    assert not dispatch.allowed()
    assert dispatch.prepare("max_pool2d", "forward", (1, 12, 12, 32), np.dtype(np.float32),
                            (2, 2), (2, 2), "valid", (1, 1), False, "channels_last") is None
    np.testing.assert_allclose(model.predict(x, verbose=0), fast, rtol=1e-6, atol=1e-7)
    monkeypatch.setenv("CONVKIT_ACCEL", "1")
    assert dispatch.allowed() == backend.available()


def test_prepare_refuses_what_it_does_not_cover():
    assert dispatch.prepare("conv2d", "forward", (1, 8, 8, 3), np.dtype(np.float32),
                            (3, 3, 3, 4), [1, 1], "valid", (1, 1), 1, "zeros",
                            "channels_last", False) is None          # unhashable: no memo
    assert dispatch.prepare("conv2d", "forward", (1, 3, 8, 8), np.dtype(np.float32),
                            (3, 3, 3, 4), (1, 1), "valid", (1, 1), 1, "zeros",
                            "channels_first", False) is None
    assert dispatch.prepare("conv2d", "forward", (1, 2, 2, 3), np.dtype(np.float32),
                            (3, 3, 3, 4), (1, 1), "valid", (1, 1), 1, "zeros",
                            "channels_last", False) is None          # window too large


def test_one_batch_predict_never_returns_the_callers_array():
    model = ck.Sequential([L.Input((4,)), L.Activation("linear")])
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    out = model.predict(x, verbose=0)
    np.testing.assert_array_equal(out, x)
    out[...] = -1
    assert x[0, 1] == 1.0
    reshaped = ck.Sequential([L.Input((2, 2)), L.Reshape((4,))]).predict(
        x.reshape(2, 2, 2), verbose=0)
    assert not np.may_share_memory(reshaped, x)


def test_one_batch_predict_splits_like_the_loop(monkeypatch):
    from convkit.models import training
    monkeypatch.setattr(training, "INFERENCE_BLOCK_BYTES", 4096)
    monkeypatch.setattr(training, "CHAIN_BLOCK_BYTES", 4096)
    model = _convnet()
    x = np.random.default_rng(2).standard_normal((6, 14, 14, 3)).astype(np.float32)
    assert model._inference_rows(32) < 6                      # the loop's parts, not one pass
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               np.concatenate([model(x[i:i + 1]) for i in range(6)]),
                               rtol=1e-6, atol=1e-7)


def test_tiny_threaded_product_calls_its_epilogue_once():
    calls = []
    a = np.ones((2, 3), np.float32)
    b = np.ones((3, 4), np.float32)
    out = threads.matmul(a, b, epilogue=lambda rows: calls.append(rows.shape))
    np.testing.assert_array_equal(out, np.full((2, 4), 3.0, np.float32))
    assert calls == [(2, 4)]


def test_switch_read_from_the_environment_each_time(monkeypatch):
    monkeypatch.setenv("CONVKIT_ACCEL", "off")
    assert backend._disabled_by_env()
    monkeypatch.setenv("CONVKIT_ACCEL", "1")
    monkeypatch.setenv("CONVKIT_BACKEND", "NumPy ")
    assert backend._disabled_by_env()
    monkeypatch.delenv("CONVKIT_BACKEND")
    monkeypatch.delenv("CONVKIT_ACCEL")
    assert not backend._disabled_by_env()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_prepared_inference_other_convolutions(monkeypatch, dtype):
    """Depthwise, dilated, strided and 1x1 convolutions, reflect padding (no prepared form)
    and float64 models: the prepared door gives the usual path's numbers."""
    ck.set_seed(5)
    d = {"dtype": dtype}
    model = ck.Sequential([
        L.Input((15, 13, 4)),
        L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu", **d),
        L.Conv2D(16, 3, dilation_rate=2, activation="relu", **d),
        L.Conv2D(32, 1, activation="relu", **d),
        L.Conv2D(16, 3, strides=2, padding="same", **d),
        L.Conv2D(8, 3, padding="same", padding_mode="reflect", **d),
        L.MaxPooling2D(3, strides=2, padding="same", **d),
        L.GlobalAveragePooling2D(**d), L.Dense(3, **d)])
    x = np.random.default_rng(4).standard_normal((2, 15, 13, 4)).astype(dtype)
    fast = model.predict(x, verbose=0)
    usual = _usual(monkeypatch, lambda: model.predict(x, verbose=0))
    assert fast.dtype == np.dtype(dtype)
    np.testing.assert_allclose(fast, usual, rtol=1e-6, atol=1e-7)
