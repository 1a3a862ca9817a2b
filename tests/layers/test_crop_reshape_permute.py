import numpy as np
import pytest

from convkit.errors import ShapeError
from convkit.layers import Cropping2D, Permute, Reshape
from tests.layers.helpers import check_config_and_archive, check_layer_gradients
from tests.layers.keras_parity import check_keras_parity, keras_layers


def crop_loop(x, cropping, data_format):
    """Keep the cells whose row and column lie inside the crop, one at a time."""
    (top, bottom), (left, right) = cropping
    if data_format == "channels_first":
        x = x.transpose(0, 2, 3, 1)
    n, h, w, c = x.shape
    out = np.zeros((n, h - top - bottom, w - left - right, c))
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            out[:, i, j] = x[:, i + top, j + left]
    return out.transpose(0, 3, 1, 2) if data_format == "channels_first" else out


# ----------------------------------------------------------------------------- Cropping2D
@pytest.mark.parametrize("cropping, input_shape, out_shape", [
    (((2, 2), (4, 4)), (None, 28, 28, 3), (None, 24, 20, 3)),
    (1, (None, 5, 6, 2), (None, 3, 4, 2)),
    ((0, 2), (None, 5, 6, 2), (None, 5, 2, 2)),
    (((1, 0), (0, 3)), (None, None, 6, 2), (None, None, 3, 2)),
])
def test_cropping_shapes(cropping, input_shape, out_shape):
    layer = Cropping2D(cropping)
    layer.build(input_shape)
    assert layer.output_shape == out_shape and layer.count_params() == 0


def test_cropping_hand_case():
    x = np.arange(16.0).reshape(1, 4, 4, 1)
    y = Cropping2D(((1, 2), (0, 1)))(x)
    np.testing.assert_array_equal(y[0, :, :, 0], [[4, 5, 6]])


@pytest.mark.parametrize("seed", range(3))
def test_cropping_loop_gradients_and_keras(seed):
    layers = keras_layers()
    rng = np.random.default_rng(seed)
    data_format = ["channels_last", "channels_first"][seed % 2]
    cropping = tuple(tuple(int(v) for v in rng.integers(0, 3, 2)) for _ in range(2))
    x = rng.standard_normal((2, *rng.integers(5, 8, 3)))
    layer = Cropping2D(cropping, data_format=data_format)
    np.testing.assert_array_equal(layer(x), crop_loop(x, cropping, data_format))
    check_layer_gradients(Cropping2D(cropping, data_format=data_format), x, rng)
    check_keras_parity(layer, lambda dtype: layers.Cropping2D(
        cropping, data_format=data_format, dtype=dtype), x, rng)


# ----------------------------------------------------------------------------- Reshape
@pytest.mark.parametrize("target, input_shape, out_shape", [
    ((7, 7, -1), (None, 196), (None, 7, 7, 4)),
    ((-1,), (None, 2, 3, 4), (None, 24)),
    ((3, 8), (None, 2, 3, 4), (None, 3, 8)),
    ((4, -1), (None, None, 4), (None, 4, None)),
])
def test_reshape_shapes(target, input_shape, out_shape):
    assert Reshape(target).compute_output_shape(input_shape) == out_shape


def test_reshape_values_gradients_and_keras(rng):
    layers = keras_layers()
    x = rng.standard_normal((3, 4, 6))
    layer = Reshape((2, -1, 3))
    np.testing.assert_array_equal(layer(x), x.reshape(3, 2, 4, 3))
    check_layer_gradients(Reshape((2, -1, 3)), x, rng)
    check_keras_parity(layer, lambda dtype: layers.Reshape((2, -1, 3), dtype=dtype), x, rng)


# ----------------------------------------------------------------------------- Permute
def test_permute_values_gradients_and_keras(rng):
    layers = keras_layers()
    x = rng.standard_normal((2, 3, 4, 5))
    layer = Permute((3, 1, 2))
    assert layer.compute_output_shape((None, 3, 4, 5)) == (None, 5, 3, 4)
    y = layer(x)
    assert y[1, 4, 2, 3] == x[1, 2, 3, 4]
    check_layer_gradients(Permute((3, 1, 2)), x, rng)
    check_keras_parity(layer, lambda dtype: layers.Permute((3, 1, 2), dtype=dtype), x, rng)


# ----------------------------------------------------------------------------- common
@pytest.mark.parametrize("make, input_shape", [
    (lambda: Cropping2D(((1, 0), (2, 1))), (5, 6, 2)),
    (lambda: Reshape((3, -1)), (5, 6, 2)),
    (lambda: Permute((2, 3, 1)), (5, 6, 2)),
])
def test_config_and_archive(rng, tmp_path, make, input_shape):
    check_config_and_archive(make(), input_shape, rng, tmp_path)


def test_keras_config_keys():
    layers = keras_layers()
    for ours, theirs in [(Cropping2D(1), layers.Cropping2D(1)),
                         (Reshape((2, -1)), layers.Reshape((2, -1))),
                         (Permute((2, 1)), layers.Permute((2, 1)))]:
        assert set(theirs.get_config()) <= set(ours.get_config()), type(ours).__name__


def test_errors(rng):
    with pytest.raises(ShapeError, match="Cropping2D: cropping must be"):
        Cropping2D("same")
    with pytest.raises(ShapeError, match=r"leaves nothing of the input \(input shape \(2, 4"):
        Cropping2D(2)(rng.standard_normal((2, 4, 6, 1)))
    with pytest.raises(ShapeError, match="at most one -1"):
        Reshape((-1, -1))
    with pytest.raises(ShapeError, match=r"cannot reshape a sample of shape \(2, 3\) \(6 values\)"):
        Reshape((4,))(rng.standard_normal((1, 2, 3)))
    with pytest.raises(ShapeError, match="dims must be a permutation of 1..n"):
        Permute((0, 1))
    with pytest.raises(ShapeError, match="need an input of rank 3"):
        Permute((2, 1))(rng.standard_normal((1, 2, 3, 4)))
