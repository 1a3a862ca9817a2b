import numpy as np
import pytest

import convkit as ck
from convkit.errors import ShapeError
from convkit.layers import (AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D,
                            MaxPooling2D)
from tests.layers.helpers import check_layer_gradients


def distinct(rng, shape):
    """Distinct values (no ties for max pooling), float64."""
    return rng.permutation(np.prod(shape)).reshape(shape).astype(np.float64) / 10.0


@pytest.mark.parametrize("cls, kwargs, input_shape, out_shape", [
    (MaxPooling2D, {}, (None, 26, 26, 32), (None, 13, 13, 32)),
    (MaxPooling2D, {"pool_size": 2}, (None, 11, 11, 64), (None, 5, 5, 64)),
    (MaxPooling2D, {"pool_size": 3, "strides": 2, "padding": "same"}, (None, 7, 7, 4),
     (None, 4, 4, 4)),
    (MaxPooling2D, {"pool_size": 3, "strides": 2, "ceil_mode": True}, (None, 8, 8, 4),
     (None, 4, 4, 4)),
    (MaxPooling2D, {"pool_size": 3, "strides": 1, "dilation_rate": 2}, (None, 8, 8, 1),
     (None, 4, 4, 1)),
    (MaxPooling2D, {"pool_size": 3, "strides": 2, "padding": 1}, (None, 8, 8, 1),
     (None, 4, 4, 1)),
    (AveragePooling2D, {"pool_size": (2, 3)}, (None, 8, 9, 2), (None, 4, 3, 2)),
    (AveragePooling2D, {"data_format": "channels_first"}, (None, 3, 8, 6), (None, 3, 4, 3)),
    (GlobalAveragePooling2D, {}, (None, 7, 7, 16), (None, 16)),
    (GlobalMaxPooling2D, {"keepdims": True}, (None, 7, 7, 16), (None, 1, 1, 16)),
    (GlobalMaxPooling2D, {"keepdims": True, "data_format": "channels_first"}, (None, 16, 7, 7),
     (None, 16, 1, 1)),
])
def test_output_shapes_and_no_params(cls, kwargs, input_shape, out_shape):
    layer = cls(**kwargs)
    layer.build(input_shape)
    assert layer.output_shape == out_shape
    assert layer.count_params() == 0 and layer.get_weights() == []


def test_strides_default_to_pool_size():
    assert MaxPooling2D(3).strides == (3, 3)
    assert AveragePooling2D((2, 3), strides=1).strides == (1, 1)


@pytest.mark.parametrize("kwargs", [
    {}, {"pool_size": 3, "strides": 2, "padding": "same"},
    {"pool_size": 3, "strides": 2, "ceil_mode": True, "padding": 1},
    {"pool_size": 2, "strides": 1, "dilation_rate": 2},
    {"data_format": "channels_first"},
])
def test_max_pooling_forward_and_gradients(rng, kwargs):
    layer = MaxPooling2D(**kwargs)
    x = distinct(rng, (2, 3, 7, 8) if kwargs.get("data_format") else (2, 7, 8, 3))
    y = layer(x)
    op_kwargs = dict(kwargs)
    expected = ck.ops.max_pool2d(x, op_kwargs.pop("pool_size", 2), op_kwargs.pop("strides", None),
                                 op_kwargs.pop("padding", "valid"), **op_kwargs)
    np.testing.assert_array_equal(y, expected)
    check_layer_gradients(layer, x, rng)


@pytest.mark.parametrize("kwargs", [
    {}, {"pool_size": 3, "strides": 2, "padding": "same"},
    {"pool_size": 3, "strides": 2, "padding": 1, "count_include_pad": True},
    {"pool_size": 3, "strides": 2, "ceil_mode": True},
])
def test_average_pooling_forward_and_gradients(rng, kwargs):
    layer = AveragePooling2D(**kwargs)
    x = rng.standard_normal((2, 7, 8, 3))
    y = layer(x)
    op_kwargs = dict(kwargs)
    expected = ck.ops.avg_pool2d(x, op_kwargs.pop("pool_size", 2), op_kwargs.pop("strides", None),
                                 op_kwargs.pop("padding", "valid"), **op_kwargs)
    np.testing.assert_allclose(y, expected)
    check_layer_gradients(layer, x, rng)


def test_same_average_pooling_ignores_padding():
    x = np.arange(9.0).reshape(1, 3, 3, 1)
    y = AveragePooling2D(2, padding="same")(x)
    np.testing.assert_allclose(y[0, :, :, 0], [[2.0, 3.5], [6.5, 8.0]])
    y = AveragePooling2D(3, strides=1, padding=1, count_include_pad=True)(x)
    assert y[0, 0, 0, 0] == pytest.approx((0 + 1 + 3 + 4) / 9)


@pytest.mark.parametrize("cls", [GlobalAveragePooling2D, GlobalMaxPooling2D])
@pytest.mark.parametrize("kwargs", [{}, {"keepdims": True},
                                    {"data_format": "channels_first", "keepdims": True}])
def test_global_pooling(rng, cls, kwargs):
    x = distinct(rng, (2, 5, 6, 3))
    layer = cls(**kwargs)
    y = layer(x)
    axes = (2, 3) if kwargs.get("data_format") else (1, 2)
    reduce = np.mean if cls is GlobalAveragePooling2D else np.max
    np.testing.assert_allclose(y, reduce(x, axis=axes, keepdims=kwargs.get("keepdims", False)))
    check_layer_gradients(layer, x, rng)


def test_pooling_errors():
    with pytest.raises(ShapeError, match=r"MaxPooling2D: output size would be 0x0 for input 1x1"):
        MaxPooling2D(2).build((None, 1, 1, 3))
    with pytest.raises(ShapeError, match=r"MaxPooling2D.*4-D.*\(None, 8, 3\)"):
        MaxPooling2D(2).build((None, 8, 3))
    with pytest.raises(ShapeError, match="more than half the pool window"):
        MaxPooling2D(2, padding=2)
    with pytest.raises(ShapeError, match="AveragePooling2D: padding must be"):
        AveragePooling2D(2, padding="full")
    layer = GlobalAveragePooling2D()
    layer(np.zeros((1, 4, 4, 3)))
    with pytest.raises(ShapeError, match=r"expected 3 input channels, got 2"):
        layer(np.zeros((1, 4, 4, 2)))


@pytest.mark.torch
def test_pooling_against_torch(rng, torch):
    x = rng.standard_normal((2, 9, 9, 3)).astype(np.float32)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    y = MaxPooling2D(3, strides=2, padding=1, ceil_mode=True)(x)
    expected = torch.nn.functional.max_pool2d(xt, 3, 2, 1, ceil_mode=True).numpy()
    np.testing.assert_allclose(y, expected.transpose(0, 2, 3, 1), rtol=1e-6)
    y = AveragePooling2D(3, strides=2, padding=1, count_include_pad=True)(x)
    expected = torch.nn.functional.avg_pool2d(xt, 3, 2, 1, count_include_pad=True).numpy()
    np.testing.assert_allclose(y, expected.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-6)
