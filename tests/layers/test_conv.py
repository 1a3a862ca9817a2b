import numpy as np
import pytest

import convkit as ck
from convkit.errors import ConvkitError, ShapeError
from convkit.layers import Conv2D, DepthwiseConv2D
from tests.layers.helpers import check_layer_gradients


# ----------------------------------------------------------------------------- shapes and counts
@pytest.mark.parametrize("kwargs, input_shape, out_shape, params", [
    ({"filters": 5, "kernel_size": 4}, (None, 10, 10, 3), (None, 7, 7, 5), 245),
    ({"filters": 32, "kernel_size": 3}, (None, 28, 28, 1), (None, 26, 26, 32), 320),
    ({"filters": 64, "kernel_size": 3}, (None, 13, 13, 32), (None, 11, 11, 64), 18496),
    ({"filters": 8, "kernel_size": 3, "use_bias": False}, (None, 9, 9, 4), (None, 7, 7, 8), 288),
    ({"filters": 6, "kernel_size": 3, "groups": 2}, (None, 9, 9, 4), (None, 7, 7, 6), 114),
    ({"filters": 4, "kernel_size": 3, "strides": 2, "padding": "SAME"}, (None, 7, 8, 2),
     (None, 4, 4, 4), 76),
    ({"filters": 4, "kernel_size": 3, "dilation_rate": 2}, (None, 9, 9, 1), (None, 5, 5, 4), 40),
    ({"filters": 4, "kernel_size": (3, 1), "padding": ((1, 2), (0, 3))}, (None, 5, 5, 1),
     (None, 6, 8, 4), 16),
    ({"filters": 3, "kernel_size": 3, "data_format": "channels_first"}, (None, 2, 6, 7),
     (None, 3, 4, 5), 57),
    ({"filters": 2, "kernel_size": 7, "padding": "same"}, (None, 427, 640, 3),
     (None, 427, 640, 2), 296),
    ({"filters": 2, "kernel_size": 3}, (None, None, None, 3), (None, None, None, 2), 56),
])
def test_conv2d_output_shape_and_params(kwargs, input_shape, out_shape, params):
    layer = Conv2D(**kwargs)
    layer.build(input_shape)
    assert layer.output_shape == out_shape
    assert layer.compute_output_shape(input_shape) == out_shape
    assert layer.count_params() == params
    channels_axis = 1 if kwargs.get("data_format") == "channels_first" else 3
    kh, kw = ck.shapes.to_pair(kwargs["kernel_size"], "k")
    groups = kwargs.get("groups", 1)
    assert layer.get_weights()[0].shape == (kh, kw, input_shape[channels_axis] // groups,
                                            kwargs["filters"])


def test_seed_example_from_the_course_notes():
    layer = Conv2D(filters=2, kernel_size=7, strides=1, padding="SAME", activation="relu",
                   input_shape=(427, 640, 3))
    assert layer.padding == "same" and layer.activation.name == "relu"
    layer.build((None, 427, 640, 3))
    assert layer.output_shape == (None, 427, 640, 2)


@pytest.mark.parametrize("kwargs, input_shape, out_shape, params", [
    ({"kernel_size": 3}, (None, 8, 8, 4), (None, 6, 6, 4), 40),
    ({"kernel_size": 3, "depth_multiplier": 2}, (None, 8, 8, 4), (None, 6, 6, 8), 80),
    ({"kernel_size": 5, "strides": 2, "padding": "same", "use_bias": False}, (None, 9, 9, 3),
     (None, 5, 5, 3), 75),
    ({"kernel_size": 3, "data_format": "channels_first", "depth_multiplier": 3},
     (None, 2, 5, 5), (None, 6, 3, 3), 2 * 9 * 3 + 6),
])
def test_depthwise_output_shape_and_params(kwargs, input_shape, out_shape, params):
    layer = DepthwiseConv2D(**kwargs)
    layer.build(input_shape)
    assert layer.output_shape == out_shape
    assert layer.count_params() == params


# ----------------------------------------------------------------------------- forward = op
@pytest.mark.parametrize("kwargs", [
    {"strides": 1, "padding": "valid"},
    {"strides": 2, "padding": "same", "dilation_rate": 1},
    {"strides": (1, 2), "padding": ((2, 0), (1, 1)), "dilation_rate": 2},
    {"padding": "same", "padding_mode": "reflect"},
    {"groups": 2},
    {"data_format": "channels_first"},
])
def test_conv2d_forward_equals_op(rng, kwargs):
    layer = Conv2D(4, 3, activation="tanh", **kwargs)
    x = rng.standard_normal((2, 4, 9, 8) if kwargs.get("data_format") else (2, 9, 8, 4))
    x = x.astype(np.float32)
    y = layer(x)
    kernel, bias = layer.get_weights()
    op_kwargs = {k: v for k, v in kwargs.items()}
    expected = np.tanh(ck.ops.conv2d(x, kernel, bias, **op_kwargs))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    assert y.dtype == np.float32


def test_depthwise_forward_matches_per_channel_convolutions(rng):
    layer = DepthwiseConv2D(3, depth_multiplier=2, padding="same")
    x = rng.standard_normal((2, 6, 7, 3)).astype(np.float32)
    y = layer(x)
    kernel, bias = layer.get_weights()                   # (3, 3, 3, 2), (6,)
    for c in range(3):
        for m in range(2):
            single = ck.ops.conv2d(x[..., c:c + 1], kernel[:, :, c:c + 1, m:m + 1],
                                   bias[c * 2 + m:c * 2 + m + 1], padding="same")
            np.testing.assert_allclose(y[..., c * 2 + m], single[..., 0], rtol=1e-5, atol=1e-6)


def test_the_vertical_line_filter_finds_a_vertical_stripe():
    images = np.zeros((1, 20, 30, 3), dtype=np.float32)
    images[:, :, 14:16, :] = 1.0                          # a vertical stripe, 2 columns wide
    conv = Conv2D(filters=2, kernel_size=7, padding="same", activation="relu")
    conv.build((None, 20, 30, 3))
    conv.set_weights([ck.filters.stack([ck.filters.vertical_line(7),
                                        ck.filters.horizontal_line(7)], in_channels=3),
                      np.zeros(2)])
    maps = conv(images)
    assert maps.shape == (1, 20, 30, 2)
    vertical, horizontal = maps[0, 10, :, 0], maps[0, 10, :, 1]
    assert vertical[14] == pytest.approx(7 * 3)          # 7 rows of the stripe, 3 channels
    assert horizontal[14] == pytest.approx(2 * 3)        # only the 2 stripe columns
    assert vertical[2] == 0 and vertical.argmax() in (14, 15)
    assert vertical.max() > 3 * horizontal.max()


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("kwargs", [
    {"activation": "tanh"},
    {"strides": 2, "padding": "same", "activation": "sigmoid"},
    {"dilation_rate": 2, "padding": 1, "groups": 2},
    {"padding": "same", "padding_mode": "circular", "use_bias": False},
    {"data_format": "channels_first", "strides": (2, 1)},
])
def test_conv2d_gradients(rng, kwargs):
    layer = Conv2D(4, 3, dtype="float64", **kwargs)
    shape = (2, 4, 7, 6) if kwargs.get("data_format") else (2, 7, 6, 4)
    checked = check_layer_gradients(layer, rng.standard_normal(shape), rng)
    assert checked == (["kernel"] if kwargs.get("use_bias") is False else ["kernel", "bias"])


def test_conv2d_skip_activation_gives_the_pre_activation_gradient(rng):
    ck.set_floatx("float64")
    layer = Conv2D(3, 2, activation="softmax")
    check_layer_gradients(layer, rng.standard_normal((2, 5, 5, 2)), rng, skip_activation=True)


@pytest.mark.parametrize("kwargs", [
    {"depth_multiplier": 2, "activation": "tanh"},
    {"strides": 2, "padding": "same"},
    {"depth_multiplier": 3, "data_format": "channels_first", "dilation_rate": 2},
])
def test_depthwise_gradients(rng, kwargs):
    layer = DepthwiseConv2D(3, dtype="float64", **kwargs)
    shape = (2, 3, 8, 7) if kwargs.get("data_format") else (2, 8, 7, 3)
    assert check_layer_gradients(layer, rng.standard_normal(shape), rng) == ["kernel", "bias"]


def test_frozen_layer_has_no_weight_gradients(rng):
    layer = Conv2D(2, 3, trainable=False)
    y = layer(rng.standard_normal((1, 5, 5, 1)).astype(np.float32))
    dx = layer.backward(np.ones_like(y))
    assert dx.shape == (1, 5, 5, 1)
    assert layer.grads == [None, None]
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 2


# ----------------------------------------------------------------------------- dtypes
def test_dtypes(rng):
    layer = Conv2D(2, 3)
    assert layer.dtype == "float32"
    x32 = rng.standard_normal((1, 5, 5, 1)).astype(np.float32)
    assert layer(x32).dtype == np.float32
    y64 = layer(x32.astype(np.float64))
    assert y64.dtype == np.float64
    assert layer.backward(np.ones_like(y64)).dtype == np.float64
    assert layer.grads[0].dtype == np.float32             # gradients in the weight dtype
    ck.set_floatx("float64")
    assert Conv2D(2, 3).dtype == "float64"


# ----------------------------------------------------------------------------- errors
def test_channel_mismatch_after_build():
    layer = Conv2D(4, 3)
    layer(np.zeros((8, 28, 28, 3), np.float32))
    with pytest.raises(ShapeError, match=r"Conv2D: expected 3 input channels, got 1 "
                                         r"\(input shape \(8, 28, 28, 1\)\)"):
        layer(np.zeros((8, 28, 28, 1), np.float32))
    with pytest.raises(ShapeError, match="expected 3 input channels, got 1"):
        layer(ck.layers.Input((28, 28, 1)))


def test_wrong_rank():
    with pytest.raises(ShapeError, match=r"Conv2D.*4-D.*\(28, 28\)"):
        Conv2D(4, 3).build((28, 28))
    with pytest.raises(ShapeError, match=r"Conv2D.*4-D.*got shape \(28, 28, 1\)"):
        Conv2D(4, 3)(np.zeros((28, 28, 1)))


def test_kernel_bigger_than_input():
    with pytest.raises(ShapeError, match=r"Conv2D: output size would be .*input 4x4.*"
                                         r"kernel_size=\(5, 5\)"):
        Conv2D(4, 5).build((None, 4, 4, 1))
    layer = Conv2D(4, 5)
    with pytest.raises(ShapeError, match="layer 'conv"):
        layer(np.zeros((1, 4, 4, 1)))
    assert layer.weights == []                             # nothing half-built


def test_groups_must_divide():
    with pytest.raises(ConvkitError, match="filters=5 is not divisible by groups=2"):
        Conv2D(5, 3, groups=2)
    with pytest.raises(ShapeError, match=r"input channels 3 are not divisible by groups=2 "
                                         r"\(input shape \(None, 8, 8, 3\)\)"):
        Conv2D(4, 3, groups=2).build((None, 8, 8, 3))


@pytest.mark.parametrize("kwargs, message", [
    ({"padding": "full"}, "padding must be 'valid', 'same'"),
    ({"padding_mode": "mirror"}, "padding_mode must be one of"),
    ({"activation": "relux"}, "unknown activation 'relux'.*relu"),
    ({"kernel_size": 0}, "kernel_size must be >= 1"),
    ({"strides": (1, 2, 3)}, "strides must be an int or a pair"),
    ({"data_format": "NHWC"}, "data_format must be"),
    ({"kernel_initializer": "glorot"}, "unknown initializer 'glorot'"),
    ({"kernel_regularizer": "l3"}, "unknown regularizer 'l3'"),
    ({"foo": 1}, "unexpected argument"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises((ConvkitError, TypeError), match=message):
        Conv2D(4, **{"kernel_size": 3, **kwargs})


def test_set_weights_checks_count_and_shapes():
    layer = Conv2D(4, 3)
    with pytest.raises(ShapeError, match="before the layer was built"):
        layer.set_weights([np.zeros((3, 3, 1, 4)), np.zeros(4)])
    layer.build((None, 8, 8, 1))
    with pytest.raises(ShapeError, match=r"Conv2D 'conv2d.*expected 2 arrays.*kernel\(3, 3, 1, 4\)"
                                         r".*got 1"):
        layer.set_weights([np.zeros((3, 3, 1, 4))])
    with pytest.raises(ShapeError, match=r"weight 'kernel' must have shape \(3, 3, 1, 4\), "
                                         r"got \(3, 3, 4, 1\)"):
        layer.set_weights([np.zeros((3, 3, 4, 1)), np.zeros(4)])
    before = layer.get_weights()[1]
    with pytest.raises(ShapeError):
        layer.set_weights([np.ones((3, 3, 1, 4)), np.zeros(5)])
    np.testing.assert_array_equal(layer.get_weights()[1], before)   # all-or-nothing


def test_backward_before_forward():
    layer = Conv2D(2, 3)
    layer.build((None, 5, 5, 1))
    with pytest.raises(ConvkitError, match="backward called before forward"):
        layer.backward(np.zeros((1, 3, 3, 2)))


def test_backward_checks_dy_shape(rng):
    layer = Conv2D(2, 3)
    layer(rng.standard_normal((1, 5, 5, 1)))
    with pytest.raises(ShapeError, match=r"dy has shape \(1, 5, 5, 2\), expected .*\(1, 3, 3, 2\)"):
        layer.backward(np.zeros((1, 5, 5, 2)))


# ----------------------------------------------------------------------------- PyTorch
@pytest.mark.torch
@pytest.mark.parametrize("kwargs, torch_padding", [
    ({"strides": 1, "padding": "valid"}, 0),
    ({"strides": 2, "padding": 1, "dilation_rate": 2}, 1),
    ({"groups": 2, "padding": "same"}, 1),
    ({"padding": 1, "padding_mode": "reflect"}, 1),
])
def test_conv2d_against_torch(rng, torch, kwargs, torch_padding):
    layer = Conv2D(4, 3, **kwargs)
    x = rng.standard_normal((2, 9, 9, 4)).astype(np.float32)
    y = layer(x)
    kernel, bias = layer.get_weights()
    mode = kwargs.get("padding_mode", "zeros")
    conv = torch.nn.Conv2d(4, 4, 3, stride=kwargs.get("strides", 1), padding=torch_padding,
                           dilation=kwargs.get("dilation_rate", 1), groups=kwargs.get("groups", 1),
                           padding_mode=mode)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
        conv.bias.copy_(torch.from_numpy(bias))
        expected = conv(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    np.testing.assert_allclose(y, expected.transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-5)


@pytest.mark.torch
def test_depthwise_against_torch(rng, torch):
    layer = DepthwiseConv2D(3, depth_multiplier=2, strides=2, padding="same")
    x = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    y = layer(x)
    kernel, bias = layer.get_weights()                           # (3, 3, 3, 2)
    weight = kernel.reshape(3, 3, 1, 6).transpose(3, 2, 0, 1)    # (6, 1, 3, 3), channel c*2+m
    # 'same' with stride 2 on 8: total pad 1, all at the bottom/right
    xt = torch.nn.functional.pad(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), (0, 1, 0, 1))
    expected = torch.nn.functional.conv2d(xt, torch.from_numpy(weight.copy()),
                                          torch.from_numpy(bias), stride=2, groups=3).numpy()
    np.testing.assert_allclose(y, expected.transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-5)
