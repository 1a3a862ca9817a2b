"""separable_conv2d: a hand case, a per-pixel loop over random shapes and float64 finite
differences for every input."""
import numpy as np
import pytest

from convkit.errors import ShapeError
from convkit.ops.separable import separable_conv2d, separable_conv2d_backward
from convkit.shapes import window_geometry
from tests.gradcheck import check_vjp


def separable_loop(x, depthwise, pointwise, bias, strides, padding, dilation):
    """Each output pixel: per input channel c and multiplier m, the window of channel c
    times kernel m; then those C*dm values mixed by the pointwise matrix."""
    kh, kw, channels, multiplier = depthwise.shape
    geo = window_geometry(x.shape[1:3], (kh, kw), strides, padding, dilation)
    (top, bottom), (left, right) = geo.pads
    padded = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    (sh, sw), (dh, dw) = geo.strides, geo.dilation
    y = np.zeros((x.shape[0], *geo.out_hw, pointwise.shape[3]))
    for i in range(geo.out_hw[0]):
        for j in range(geo.out_hw[1]):
            window = padded[:, i * sh:i * sh + dh * (kh - 1) + 1:dh,
                            j * sw:j * sw + dw * (kw - 1) + 1:dw]      # (N, kh, kw, C)
            mid = np.einsum("nabc,abcm->ncm", window, depthwise).reshape(x.shape[0], -1)
            y[:, i, j] = mid @ pointwise[0, 0] + bias
    return y


def test_hand_case():
    x = np.arange(9.0).reshape(1, 3, 3, 1)
    depthwise = np.stack([np.ones((3, 3)), np.eye(3)], axis=-1)[:, :, None, :]  # (3, 3, 1, 2)
    pointwise = np.array([1.0, 10.0]).reshape(1, 1, 2, 1)
    # sum of all cells 36, trace 0 + 4 + 8 = 12: 36 + 10 * 12
    assert separable_conv2d(x, depthwise, pointwise).item() == 156.0


@pytest.mark.parametrize("seed", range(4))
def test_matches_the_loop(seed):
    rng = np.random.default_rng(seed)
    kwargs = {"strides": int(rng.integers(1, 3)), "padding": ["valid", "same"][seed % 2],
              "dilation_rate": 1 + seed // 3}
    x = rng.standard_normal((2, *rng.integers(5, 9, 2), 3))
    depthwise = rng.standard_normal((3, 2, 3, 1 + seed % 2))
    pointwise = rng.standard_normal((1, 1, depthwise.shape[2] * depthwise.shape[3], 4))
    bias = rng.standard_normal(4)
    np.testing.assert_allclose(
        separable_conv2d(x, depthwise, pointwise, bias, **kwargs),
        separable_loop(x, depthwise, pointwise, bias, kwargs["strides"], kwargs["padding"],
                       kwargs["dilation_rate"]), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kwargs", [{"strides": 2, "padding": "same"},
                                    {"dilation_rate": 2, "padding_mode": "reflect",
                                     "padding": 1},
                                    {"data_format": "channels_first"}])
def test_gradients(rng, kwargs):
    x = rng.standard_normal((2, 3, 6, 5) if kwargs.get("data_format") else (2, 6, 5, 3))
    depthwise = rng.standard_normal((3, 3, 3, 2))
    pointwise = rng.standard_normal((1, 1, 6, 4))
    bias = rng.standard_normal(4)

    def backward(g, a, dk, pk, b):
        return separable_conv2d_backward(g, a, dk, pk, **kwargs)
    check_vjp(lambda a, dk, pk, b: separable_conv2d(a, dk, pk, b, **kwargs), backward,
              [x, depthwise, pointwise, bias], rng)


def test_errors(rng):
    with pytest.raises(ShapeError, match=r"pointwise_kernel must have shape \(1, 1, 6, filters\)"):
        separable_conv2d(np.ones((1, 5, 5, 3)), np.ones((3, 3, 3, 2)), np.ones((1, 1, 3, 4)))
