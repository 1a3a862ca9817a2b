"""The 1-D family on (batch, steps, channels): hand cases, naive loops over random shapes,
float64 gradients, Keras 3 parity, config and archive round trips."""
import numpy as np
import pytest

from convkit.errors import ConvkitError, ShapeError
from convkit.layers import (AveragePooling1D, Conv1D, GlobalAveragePooling1D,
                            GlobalMaxPooling1D, MaxPooling1D, UpSampling1D)
from tests.layers.helpers import check_config_and_archive, check_layer_gradients
from tests.layers.keras_parity import check_keras_parity, keras_layers


def conv1d_loop(x, kernel, bias, stride, padding, dilation, groups=1):
    """Output step t: sum over taps a of the padded input at t*s + a*d times kernel[a],
    one group of channels at a time."""
    k, per_group, filters = kernel.shape
    span = dilation * (k - 1) + 1
    n, steps, _ = x.shape
    if padding == "causal":
        before, after = span - 1, 0
    elif padding == "same":
        out = -(-steps // stride)
        total = max((out - 1) * stride + span - steps, 0)
        before, after = total // 2, total - total // 2
    else:
        before = after = 0
    padded = np.pad(x, ((0, 0), (before, after), (0, 0)))
    out = (padded.shape[1] - span) // stride + 1
    f_g = filters // groups
    y = np.zeros((n, out, filters))
    for t in range(out):
        for a in range(k):
            cell = padded[:, t * stride + a * dilation]                  # (N, C_in)
            for g in range(groups):
                inputs = cell[:, g * per_group:(g + 1) * per_group]         # (N, C_g)
                y[:, t, g * f_g:(g + 1) * f_g] += inputs @ kernel[a, :, g * f_g:(g + 1) * f_g]
    return y + bias


def pool1d_loop(x, size, stride, padding, reduce):
    n, steps, c = x.shape
    if padding == "same":
        out = -(-steps // stride)
        before = max((out - 1) * stride + size - steps, 0) // 2
    else:
        out, before = (steps - size) // stride + 1, 0
    y = np.zeros((n, out, c))
    for t in range(out):
        start = t * stride - before
        y[:, t] = reduce(x[:, max(start, 0):start + size], axis=1)
    return y


# ----------------------------------------------------------------------------- Conv1D
@pytest.mark.parametrize("kwargs, input_shape, out_shape, params", [
    ({"filters": 16, "kernel_size": 5, "padding": "causal", "dilation_rate": 2},
     (None, 100, 8), (None, 100, 16), 656),
    ({"filters": 4, "kernel_size": 3, "strides": 2}, (None, 10, 3), (None, 4, 4), 40),
    ({"filters": 6, "kernel_size": (3,), "groups": 3, "padding": "same"}, (None, 7, 3),
     (None, 7, 6), 24),
    ({"filters": 2, "kernel_size": 3, "data_format": "channels_first"}, (None, 3, 9),
     (None, 2, 7), 20),
    ({"filters": 2, "kernel_size": 3}, (None, None, 3), (None, None, 2), 20),
])
def test_conv1d_shapes_and_params(kwargs, input_shape, out_shape, params):
    layer = Conv1D(**kwargs)
    layer.build(input_shape)
    assert layer.output_shape == out_shape and layer.count_params() == params
    assert layer.get_weights()[0].shape == (layer.kernel_size,
                                            input_shape[2 if not kwargs.get("data_format")
                                                        else 1] // layer.groups,
                                            kwargs["filters"])


def test_conv1d_hand_case_causal():
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 4, 1)
    layer = Conv1D(1, 2, padding="causal", use_bias=False)
    layer.build((None, 4, 1))
    layer.set_weights([np.array([10.0, 1.0]).reshape(2, 1, 1)])
    # y[t] = 10 * x[t-1] + x[t], x[-1] = 0
    np.testing.assert_array_equal(layer(x).ravel(), [1, 12, 23, 34])


@pytest.mark.parametrize("seed", range(4))
def test_conv1d_matches_the_loop(seed):
    rng = np.random.default_rng(seed)
    padding = ["valid", "same", "causal", "same"][seed]
    stride, dilation = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    groups = 1 + seed % 2
    layer = Conv1D(4, int(rng.integers(1, 4)), strides=stride, padding=padding,
                   dilation_rate=dilation, groups=groups, dtype="float64",
                   bias_initializer="random_normal")
    x = rng.standard_normal((2, int(rng.integers(6, 10)), 4))
    y = layer(x)
    kernel, bias = layer.get_weights()
    np.testing.assert_allclose(y, conv1d_loop(x, kernel, bias, stride, padding, dilation,
                                              groups), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kwargs", [{"padding": "causal", "activation": "tanh"},
                                    {"strides": 2, "padding": "same", "groups": 2},
                                    {"data_format": "channels_first", "dilation_rate": 2}])
def test_conv1d_gradients(rng, kwargs):
    layer = Conv1D(4, 3, dtype="float64", **kwargs)
    x = rng.standard_normal((2, 4, 9) if kwargs.get("data_format") else (2, 9, 4))
    assert check_layer_gradients(layer, x, rng) == ["kernel", "bias"]


@pytest.mark.parametrize("kwargs", [
    {"kernel_size": 3, "padding": "causal", "dilation_rate": 2, "activation": "relu"},
    {"kernel_size": 2, "strides": 2, "padding": "same", "groups": 2},
    {"kernel_size": 3, "data_format": "channels_first"},
])
def test_conv1d_keras_parity(rng, kwargs):
    layers = keras_layers()
    x = rng.standard_normal((2, 4, 9) if kwargs.get("data_format") else (2, 9, 4))
    layer = Conv1D(4, dtype="float64", bias_initializer="random_normal", **kwargs)
    check_keras_parity(layer, lambda dtype: layers.Conv1D(4, dtype=dtype, **kwargs), x, rng)


# ----------------------------------------------------------------------------- pools
@pytest.mark.parametrize("cls, reduce", [(MaxPooling1D, np.max), (AveragePooling1D, np.mean)])
@pytest.mark.parametrize("seed", range(3))
def test_pooling_matches_the_loop_and_gradients(cls, reduce, seed):
    rng = np.random.default_rng(seed)
    size, stride = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    padding = ["valid", "same"][seed % 2]
    x = rng.permutation(2 * 9 * 3).reshape(2, 9, 3) / 7.0        # distinct: no ties in max
    layer = cls(size, strides=stride, padding=padding)
    np.testing.assert_allclose(layer(x), pool1d_loop(x, size, stride, padding, reduce),
                               rtol=1e-12)
    check_layer_gradients(cls(size, strides=stride, padding=padding), x, rng)


def test_pooling_hand_cases():
    x = np.array([1.0, 5.0, 2.0, 4.0, 3.0]).reshape(1, 5, 1)
    np.testing.assert_array_equal(MaxPooling1D(2)(x).ravel(), [5, 4])
    np.testing.assert_array_equal(AveragePooling1D(2, padding="same")(x).ravel(), [3, 3, 3])
    np.testing.assert_array_equal(GlobalMaxPooling1D()(x).ravel(), [5])
    np.testing.assert_array_equal(GlobalAveragePooling1D(keepdims=True)(x), [[[3.0]]])
    np.testing.assert_array_equal(UpSampling1D(2)(x[:, :2]).ravel(), [1, 1, 5, 5])


@pytest.mark.parametrize("cls, kwargs", [
    (MaxPooling1D, {"pool_size": 3, "strides": 2, "padding": "same"}),
    (AveragePooling1D, {"pool_size": 2, "padding": "same"}),
    (AveragePooling1D, {"pool_size": 3, "strides": 1, "data_format": "channels_first"}),
    (GlobalAveragePooling1D, {}),
    (GlobalMaxPooling1D, {"keepdims": True}),
    (GlobalAveragePooling1D, {"data_format": "channels_first", "keepdims": True}),
    (UpSampling1D, {"size": 3}),
])
def test_keras_parity_and_gradients(rng, cls, kwargs):
    layers = keras_layers()
    x = rng.permutation(2 * 7 * 3).reshape(2, 7, 3) / 5.0
    if kwargs.get("data_format") == "channels_first":
        x = x.transpose(0, 2, 1)
    check_layer_gradients(cls(**kwargs), x, rng)
    layer = cls(**kwargs)
    assert layer.compute_output_shape((None,) + x.shape[1:]) == (None,) + layer(x).shape[1:]
    check_keras_parity(layer, lambda dtype: getattr(layers, cls.__name__)(dtype=dtype, **kwargs),
                       x, rng)


# ----------------------------------------------------------------------------- common
@pytest.mark.parametrize("make", [
    lambda: Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu",
                   kernel_regularizer="l2"),
    lambda: Conv1D(4, 2, padding=(1, 0), groups=2),
    lambda: MaxPooling1D(3, strides=1, padding="same"),
    lambda: AveragePooling1D(2),
    lambda: GlobalAveragePooling1D(keepdims=True),
    lambda: GlobalMaxPooling1D(),
    lambda: UpSampling1D(2),
])
def test_config_and_archive(rng, tmp_path, make):
    check_config_and_archive(make(), (8, 4), rng, tmp_path)


def test_keras_config_keys():
    layers = keras_layers()
    extras = {"activity_regularizer", "kernel_constraint", "bias_constraint"}
    for ours, theirs in [(Conv1D(4, 3), layers.Conv1D(4, 3)),
                         (MaxPooling1D(), layers.MaxPooling1D()),
                         (AveragePooling1D(2), layers.AveragePooling1D(2)),
                         (GlobalAveragePooling1D(), layers.GlobalAveragePooling1D()),
                         (GlobalMaxPooling1D(), layers.GlobalMaxPooling1D()),
                         (UpSampling1D(), layers.UpSampling1D())]:
        assert set(theirs.get_config()) - extras <= set(ours.get_config()), type(ours).__name__
        config = theirs.get_config()
        config.pop("dtype")
        for key in extras:
            config.pop(key, None)
        for key in ("kernel_initializer", "bias_initializer"):
            config.pop(key, None)                     # Keras's nested dicts: the loader's job
        rebuilt = type(ours).from_config(config)      # Keras's own config, as it comes
        assert rebuilt.get_config()["name"] == config["name"]


def test_errors(rng):
    with pytest.raises(ShapeError, match="padding must be 'valid', 'same', 'causal'"):
        Conv1D(4, 3, padding="full")
    with pytest.raises(ConvkitError, match="kernel_size must be a positive int or a 1-tuple"):
        Conv1D(4, (3, 3))
    with pytest.raises(ShapeError, match=r"expected a 3-D .*\(batch, steps, channels\)"):
        Conv1D(4, 3)(rng.standard_normal((2, 5, 5, 1)))
    layer = Conv1D(4, 3)
    layer(rng.standard_normal((2, 5, 2)))
    with pytest.raises(ShapeError, match="expected 2 input channels, got 3"):
        layer(rng.standard_normal((2, 5, 3)))
    with pytest.raises(ShapeError, match="output size would be"):
        Conv1D(4, 7)(rng.standard_normal((2, 5, 2)))
    with pytest.raises(ShapeError, match="padding must be 'valid' or 'same'"):
        MaxPooling1D(2, padding="causal")
