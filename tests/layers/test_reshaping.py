import numpy as np
import pytest

import convkit as ck
from convkit.errors import ShapeError
from convkit.layers import Flatten, ZeroPadding2D
from tests.layers.helpers import check_layer_gradients


def test_flatten_shapes_and_order(rng):
    layer = Flatten()
    layer.build((None, 5, 5, 64))
    assert layer.output_shape == (None, 1600) and layer.count_params() == 0
    assert Flatten().compute_output_shape((None, None, 3)) == (None, None)
    x = rng.standard_normal((2, 3, 4, 5))
    np.testing.assert_array_equal(Flatten()(x), x.reshape(2, -1))     # (H, W, C) order


def test_flatten_channels_first_moves_channels_last(rng):
    x = rng.standard_normal((2, 5, 3, 4))                                # (N, C, H, W)
    y = Flatten(data_format="channels_first")(x)
    np.testing.assert_array_equal(y, x.transpose(0, 2, 3, 1).reshape(2, -1))
    check_layer_gradients(Flatten(data_format="channels_first"), x, rng)


def test_flatten_gradients(rng):
    check_layer_gradients(Flatten(), rng.standard_normal((2, 3, 4, 2)), rng)


def test_flatten_errors():
    with pytest.raises(ShapeError, match="Flatten: expected an input with a batch axis"):
        Flatten().build((None,))


@pytest.mark.parametrize("padding, out_hw", [
    (1, (7, 8)), ((2, 0), (9, 6)), (((1, 2), (3, 0)), (8, 9)),
])
def test_zero_padding(rng, padding, out_hw):
    layer = ZeroPadding2D(padding)
    layer.build((None, 5, 6, 2))
    assert layer.output_shape == (None, *out_hw, 2)
    x = rng.standard_normal((2, 5, 6, 2))
    y = layer(x)
    assert y.shape == (2, *out_hw, 2)
    (top, bottom), (left, right) = ck.shapes.normalize_padding(padding)
    np.testing.assert_array_equal(y[:, top:top + 5, left:left + 6], x)
    assert np.count_nonzero(y) == x.size
    check_layer_gradients(ZeroPadding2D(padding), x, rng)


def test_zero_padding_channels_first(rng):
    x = rng.standard_normal((1, 2, 3, 3))
    y = ZeroPadding2D(((0, 1), (2, 0)), data_format="channels_first")(x)
    assert y.shape == (1, 2, 4, 5)
    np.testing.assert_array_equal(y[:, :, :3, 2:], x)


def test_zero_padding_errors():
    with pytest.raises(ShapeError, match="ZeroPadding2D: padding must be an int"):
        ZeroPadding2D("same")
    with pytest.raises(ShapeError, match="ZeroPadding2D: padding must not be negative"):
        ZeroPadding2D(-1)
    with pytest.raises(ShapeError, match=r"ZeroPadding2D.*4-D.*\(None, 5, 5\)"):
        ZeroPadding2D(1).build((None, 5, 5))
