"""The bad inputs the core issue lists, each through the ops and the layers: a ShapeError /
ConvkitError (ValueError subclasses) naming the function or layer, the argument and the
shapes, never a NumPy traceback from deep inside."""
import numpy as np
import pytest

import convkit as ck
from convkit.errors import ConvkitError, ShapeError

L = ck.layers
X = np.zeros((2, 5, 5, 3), np.float32)
K = np.zeros((3, 3, 3, 2), np.float32)


def _built(layer, shape):
    layer.build(shape)
    return layer


OP_CASES = {
    # name: (call, fragments the message must contain)
    "wrong rank": (lambda: ck.ops.conv2d(np.zeros((5, 5, 3)), K), ["conv2d", "4-D", "(5, 5, 3)"]),
    "wrong kernel rank": (lambda: ck.ops.conv2d(X, np.zeros((3, 3, 3))),
                          ["conv2d", "kernel", "(3, 3, 3)"]),
    "channel mismatch": (lambda: ck.ops.conv2d(np.zeros((2, 5, 5, 2)), K),
                         ["conv2d", "3 input channels", "got 2", "(2, 5, 5, 2)", "(3, 3, 3, 2)"]),
    "kernel larger than padded input": (lambda: ck.ops.conv2d(X, np.zeros((7, 7, 3, 2)), padding=0),
                                        ["conv2d", "kernel_size=(7, 7)", "5x5", "padding=0"]),
    "pool larger than input": (lambda: ck.ops.max_pool2d(X, 6), ["max_pool2d", "(6, 6)", "5x5"]),
    "zero stride": (lambda: ck.ops.conv2d(X, K, strides=0), ["conv2d", "strides", ">= 1"]),
    "negative stride": (lambda: ck.ops.avg_pool2d(X, 2, (1, -2)), ["avg_pool2d", "strides", "-2"]),
    "zero pool size": (lambda: ck.ops.max_pool2d(X, 0), ["max_pool2d", "kernel_size", "0"]),
    "zero dilation": (lambda: ck.ops.conv2d(X, K, dilation_rate=0), ["conv2d", "dilation_rate"]),
    "groups not dividing channels": (lambda: ck.ops.conv2d(X, np.zeros((3, 3, 1, 2)), groups=2),
                                     ["conv2d", "groups=2", "(2, 5, 5, 3)"]),
    "groups not dividing filters": (
        lambda: ck.ops.conv2d(np.zeros((1, 5, 5, 4)), np.zeros((3, 3, 2, 3)), groups=2),
        ["conv2d", "groups=2", "filters", "(3, 3, 2, 3)"]),
    "unknown padding": (lambda: ck.ops.conv2d(X, K, padding="full"), ["conv2d", "padding", "'full'"]),
    "unknown pool padding": (lambda: ck.ops.avg_pool2d(X, 2, padding="causal"),
                             ["avg_pool2d", "padding", "'causal'"]),
    "negative padding": (lambda: ck.ops.conv2d(X, K, padding=-1), ["conv2d", "padding", "-1"]),
    "unknown padding_mode": (lambda: ck.ops.conv2d(X, K, padding=1, padding_mode="mirror"),
                             ["conv2d", "padding_mode", "'mirror'"]),
    "non-numeric input": (lambda: ck.ops.conv2d(np.full((1, 5, 5, 3), "a"), K),
                          ["conv2d", "numeric", "<U1"]),
    "ragged input": (lambda: ck.ops.max_pool2d([[1, 2], [3]], 2), ["max_pool2d"]),
    "empty input": (lambda: ck.ops.conv2d(np.zeros((0, 5, 5, 3)), K),
                    ["conv2d", "empty", "(0, 5, 5, 3)"]),
    "empty pool input": (lambda: ck.ops.avg_pool2d(np.zeros((1, 0, 5, 3)), 2),
                         ["avg_pool2d", "empty", "(1, 0, 5, 3)"]),
    "bias of the wrong shape": (lambda: ck.ops.conv2d(X, K, np.zeros(3)), ["conv2d", "bias", "(3,)"]),
    "dense mismatch": (lambda: ck.ops.dense(np.zeros((2, 3)), np.zeros((4, 2))),
                       ["dense", "(2, 3)", "(4, 2)"]),
    "backward dy shape": (lambda: ck.ops.conv2d_backward(np.zeros((2, 2, 2, 2)), X, K),
                          ["conv2d_backward", "(2, 2, 2, 2)", "(2, 3, 3, 2)"]),
}


def _assert_clear_error(call, fragments):
    """``call()`` raises a one-line convkit error (a ValueError) holding every fragment."""
    with pytest.raises(ConvkitError) as info:
        call()
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


@pytest.mark.parametrize("case", sorted(OP_CASES))
def test_ops_reject_bad_input_clearly(case):
    _assert_clear_error(*OP_CASES[case])


LAYER_CASES = {
    "wrong rank": (lambda: L.MaxPooling2D(2)(np.zeros((5, 5, 3))),
                   ["MaxPooling2D", "4-D", "(5, 5, 3)"]),
    "dense wrong rank": (lambda: L.Dense(3)(np.zeros(4)), ["Dense", "rank >= 2"]),
    "channel mismatch with built weights": (
        lambda: _built(L.Conv2D(4, 3), (None, 5, 5, 3))(np.zeros((1, 5, 5, 1))),
        ["Conv2D", "expected 3 input channels, got 1", "(1, 5, 5, 1)"]),
    "depthwise channel mismatch": (
        lambda: _built(L.DepthwiseConv2D(3), (None, 5, 5, 3))(np.zeros((1, 5, 5, 2))),
        ["DepthwiseConv2D", "3 input channels", "(1, 5, 5, 2)"]),
    "dense feature mismatch": (lambda: _built(L.Dense(2), (None, 5))(np.zeros((1, 4))),
                               ["Dense", "5", "(1, 4)"]),
    "batch norm channel mismatch": (
        lambda: _built(L.BatchNormalization(), (None, 4, 4, 3))(np.zeros((1, 4, 4, 2))),
        ["BatchNormalization", "3", "(1, 4, 4, 2)"]),
    "symbolic channel mismatch": (
        lambda: _built(L.Conv2D(4, 3), (None, 5, 5, 3))(L.Input((5, 5, 1))),
        ["Conv2D", "expected 3 input channels, got 1"]),
    "kernel larger than input": (lambda: L.Conv2D(2, 7)(X), ["Conv2D", "kernel_size=(7, 7)", "5x5"]),
    "kernel larger than padded input": (lambda: L.Conv2D(2, 9, padding=1)(X),
                                        ["Conv2D", "(9, 9)", "pads ((1, 1), (1, 1))"]),
    "pool larger than input": (lambda: L.AveragePooling2D(6)(X), ["AveragePooling2D", "(6, 6)"]),
    "kernel larger at build time": (lambda: L.Conv2D(2, 7).build((None, 5, 5, 3)),
                                    ["Conv2D", "(7, 7)"]),
    "zero filters": (lambda: L.Conv2D(0, 3), ["Conv2D", "filters", "0"]),
    "zero kernel size": (lambda: L.Conv2D(2, 0), ["Conv2D", "kernel_size", "0"]),
    "negative kernel size": (lambda: L.Conv2D(2, (3, -1)), ["Conv2D", "kernel_size", "-1"]),
    "zero strides": (lambda: L.Conv2D(2, 3, strides=0), ["Conv2D", "strides", "0"]),
    "zero pool size": (lambda: L.MaxPooling2D(0), ["MaxPooling2D", "pool_size", "0"]),
    "negative pool strides": (lambda: L.MaxPooling2D(2, strides=-1),
                              ["MaxPooling2D", "strides", "-1"]),
    "zero units": (lambda: L.Dense(0), ["Dense", "units", "0"]),
    "zero depth multiplier": (lambda: L.DepthwiseConv2D(3, depth_multiplier=0),
                              ["DepthwiseConv2D", "depth_multiplier"]),
    "non-positive Input shape": (lambda: L.Input((0, 3, 1)), ["shape", "(0, 3, 1)"]),
    "groups not dividing channels": (lambda: L.Conv2D(4, 3, groups=2).build((None, 5, 5, 3)),
                                     ["Conv2D", "groups=2", "(None, 5, 5, 3)"]),
    "groups not dividing filters": (lambda: L.Conv2D(3, 3, groups=2), ["Conv2D", "groups=2"]),
    "unknown padding": (lambda: L.Conv2D(2, 3, padding="full"), ["Conv2D", "padding", "'full'"]),
    "unknown pool padding": (lambda: L.MaxPooling2D(2, padding="causal"),
                             ["MaxPooling2D", "padding", "'causal'"]),
    "unknown padding_mode": (lambda: L.Conv2D(2, 3, padding_mode="mirror"),
                             ["Conv2D", "padding_mode", "'mirror'"]),
    "unknown activation": (lambda: L.Conv2D(2, 3, activation="relux"),
                           ["Conv2D", "activation", "'relux'"]),
    "unknown dense activation": (lambda: L.Dense(2, activation="sigmoidd"),
                                 ["Dense", "'sigmoidd'"]),
    "unknown Activation": (lambda: L.Activation("softmaxx"), ["Activation", "'softmaxx'"]),
    "unknown data_format": (lambda: L.Conv2D(2, 3, data_format="NHWC"),
                            ["data_format", "'NHWC'"]),
    "set_weights wrong shape": (
        lambda: _built(L.Conv2D(2, 3), (None, 5, 5, 3)).set_weights(
            [np.zeros((3, 3, 1, 2)), np.zeros(2)]),
        ["Conv2D", "'kernel'", "(3, 3, 3, 2)", "(3, 3, 1, 2)"]),
    "set_weights wrong count": (
        lambda: _built(L.Dense(2), (None, 3)).set_weights([np.zeros((3, 2))]),
        ["Dense", "expected 2 arrays", "got 1"]),
    "set_weights non-numeric": (
        lambda: _built(L.Dense(2), (None, 3)).set_weights([np.full((3, 2), "x"), np.zeros(2)]),
        ["Dense", "'kernel'", "numeric"]),
    "set_weights before build": (lambda: L.Dense(2).set_weights([np.zeros((3, 2)), np.zeros(2)]),
                                 ["Dense", "before the layer was built"]),
    "non-numeric input": (lambda: L.Dense(2)(np.array([["a", "b"]])), ["Dense", "numeric"]),
    "non-numeric image": (lambda: L.Conv2D(2, 3)(np.full((1, 5, 5, 3), "a")),
                          ["Conv2D", "numeric"]),
    "object input": (lambda: L.Flatten()(np.array([[1, "a"]], dtype=object)),
                     ["Flatten", "numeric"]),
    "empty input": (lambda: L.Conv2D(2, 3)(np.zeros((0, 5, 5, 3))),
                    ["Conv2D", "empty", "(0, 5, 5, 3)"]),
    "empty features": (lambda: L.Dense(2)(np.zeros((3, 0))), ["Dense", "empty", "(3, 0)"]),
    "empty pooling input": (lambda: L.GlobalMaxPooling2D()(np.zeros((0, 4, 4, 2))),
                            ["GlobalMaxPooling2D", "empty"]),
    "backward before forward": (lambda: _built(L.Dense(2), (None, 3)).backward(np.zeros((1, 2))),
                                ["Dense", "backward", "before forward"]),
}


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_layers_reject_bad_input_clearly(case):
    _assert_clear_error(*LAYER_CASES[case])


def test_a_failed_call_leaves_the_layer_usable(rng):
    conv = L.Conv2D(2, 3)
    with pytest.raises(ShapeError):
        conv(np.zeros((1, 5, 5)))                   # wrong rank: nothing is built
    assert not conv.built
    y = conv(rng.standard_normal((1, 5, 5, 3)))
    assert y.shape == (1, 3, 3, 2)
    kernel = conv.get_weights()[0]
    with pytest.raises(ShapeError):
        conv(np.zeros((1, 5, 5, 1)))                # channel mismatch: weights kept
    np.testing.assert_array_equal(conv.get_weights()[0], kernel)


@pytest.mark.parametrize("make", [lambda: L.Dense(3), lambda: L.Flatten(),
                                  lambda: L.BatchNormalization()],
                         ids=["Dense", "Flatten", "BatchNormalization"])
def test_rank_errors_quote_the_real_input_shape(make):
    with pytest.raises(ShapeError) as info:
        make()(np.zeros(4))
    assert "(4,)" in str(info.value)
