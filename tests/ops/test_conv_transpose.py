"""conv2d_transpose: a hand case, a naive scatter loop over random shapes, float64 finite
differences, PyTorch's ConvTranspose2d, and the sizes of Keras's padding rules."""
import numpy as np
import pytest

from convkit.errors import ShapeError
from convkit.ops.conv_transpose import conv2d_transpose, conv2d_transpose_backward
from convkit.shapes import transpose_geometry
from tests.gradcheck import check_vjp


def conv2d_transpose_loop(x, kernel, bias, strides, crops, out_hw, dilation=(1, 1)):
    """Every input pixel adds kernel * value into the full output at s times its position;
    then the crops are cut (a negative crop at the end leaves cells that only the bias
    reaches)."""
    n, h, w, c_in = x.shape
    kh, kw, filters, _ = kernel.shape
    (sh, sw), (dh, dw) = strides, dilation
    (top, _), (left, _) = crops
    y = np.zeros((n, *out_hw, filters))
    for b in range(n):
        for i in range(h):
            for j in range(w):
                for a in range(kh):
                    for e in range(kw):
                        row, col = i * sh + a * dh - top, j * sw + e * dw - left
                        if 0 <= row < out_hw[0] and 0 <= col < out_hw[1]:
                            y[b, row, col] += kernel[a, e] @ x[b, i, j]   # (F, C_in) @ (C_in,)
    return y + (0 if bias is None else bias)


def test_hand_case_stride_two_same():
    # 1 -> 3x3 kernel written twice apart; "same" crops the last row and column
    x = np.array([[1.0, 2.0]]).reshape(1, 1, 2, 1)
    kernel = np.arange(1.0, 10.0).reshape(3, 3, 1, 1)
    y = conv2d_transpose(x, kernel, strides=2, padding="same")
    assert y.shape == (1, 2, 4, 1)
    # full output is 3 x 5: [1 2 3+2 4 6], [4 5 6+8 10 12], [7 8 9+14 16 18]; keep 2 x 4
    np.testing.assert_array_equal(y[0, :, :, 0], [[1, 2, 5, 4], [4, 5, 14, 10]])


@pytest.mark.parametrize("seed", range(6))
def test_matches_the_loop_over_random_shapes(seed):
    rng = np.random.default_rng(seed)
    kernel_hw = tuple(rng.integers(1, 5, 2))
    strides = tuple(int(s) for s in rng.integers(1, 4, 2))
    dilation = (1, 1) if seed % 3 else tuple(int(d) for d in rng.integers(1, 3, 2))
    if seed % 2:
        padding = ["valid", "same"][seed % 4 // 2]
        output_padding = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(strides, dilation))
    else:
        padding = tuple((int(rng.integers(0, d * (k - 1) // 2 + 1)),) * 2
                        for k, d in zip(kernel_hw, dilation))
        output_padding = None
    x = rng.standard_normal((2, *rng.integers(2, 6, 2), 3))
    kernel = rng.standard_normal((*kernel_hw, 4, 3))
    bias = rng.standard_normal(4)
    geo = transpose_geometry(x.shape[1:3], kernel_hw, strides, padding, output_padding, dilation)
    y = conv2d_transpose(x, kernel, bias, strides=strides, padding=padding,
                         output_padding=output_padding, dilation_rate=dilation)
    expected = conv2d_transpose_loop(x, kernel, bias, strides, geo.crops, geo.out_hw, dilation)
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kwargs", [
    {"strides": 2, "padding": "same"},
    {"strides": (2, 3), "padding": "valid", "output_padding": (1, 2)},
    {"strides": 1, "padding": "same", "dilation_rate": 2},
    {"strides": 3, "padding": ((1, 2), (0, 1)), "output_padding": 1},
    {"strides": 2, "padding": "valid", "data_format": "channels_first"},
])
def test_gradients(rng, kwargs):
    shape = (2, 3, 4, 3) if kwargs.get("data_format") else (2, 4, 3, 3)
    x = rng.standard_normal(shape)
    kernel = rng.standard_normal((3, 2, 5, 3))
    bias = rng.standard_normal(5)
    check_vjp(lambda a, k, b: conv2d_transpose(a, k, b, **kwargs),
              lambda g, a, k, b: conv2d_transpose_backward(g, a, k, **kwargs),
              [x, kernel, bias], rng)


def test_without_input_gradient(rng):
    x, kernel = rng.standard_normal((1, 3, 3, 2)), rng.standard_normal((3, 3, 4, 2))
    dy = rng.standard_normal((1, 6, 6, 4))
    full = conv2d_transpose_backward(dy, x, kernel, strides=2, padding="same")
    dx, dkernel, dbias = conv2d_transpose_backward(dy, x, kernel, strides=2, padding="same",
                                                   input_grad=False)
    assert dx is None
    np.testing.assert_allclose(dkernel, full[1])
    np.testing.assert_allclose(dbias, full[2])


@pytest.mark.parametrize("padding, strides, expected", [
    ("valid", 2, 15), ("same", 2, 14), ("valid", 1, 9), ("same", 1, 7), ("valid", 4, 28),
])
def test_keras_sizes(padding, strides, expected):
    # Keras: valid (n - 1)*s + max(k, s), same n*s, for n = 7, k = 3
    assert transpose_geometry((7, 7), 3, strides, padding).out_hw == (expected, expected)


def test_float32_stays_float32(rng):
    x = rng.standard_normal((1, 3, 3, 2)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 4, 2)).astype(np.float32)
    assert conv2d_transpose(x, kernel, strides=2).dtype == np.float32


def test_errors(rng):
    x, kernel = rng.standard_normal((1, 3, 3, 2)), rng.standard_normal((3, 3, 4, 2))
    with pytest.raises(ShapeError, match=r"expected 2 input channels .*got 5"):
        conv2d_transpose(rng.standard_normal((1, 3, 3, 5)), kernel)
    with pytest.raises(ShapeError, match="output_padding must be smaller than strides"):
        conv2d_transpose(x, kernel, strides=2, output_padding=2)
    with pytest.raises(ShapeError, match="output size would be 0x1"):
        conv2d_transpose(x[:, :1, :1], np.ones((2, 2, 1, 2)), padding="same",
                         output_padding=(0, 1), strides=(1, 2))
    with pytest.raises(ShapeError, match="dy has shape"):
        conv2d_transpose_backward(np.ones((1, 4, 5, 4)), x, kernel)


def test_against_torch(rng, torch):
    for strides, padding, output_padding, dilation in [(2, 1, 1, 1), ((1, 3), (0, 2), (0, 2), 1),
                                                       (1, 2, 0, 2), (3, 0, 2, 1)]:
        x = rng.standard_normal((2, 4, 5, 3))
        kernel = rng.standard_normal((3, 3, 4, 3))
        bias = rng.standard_normal(4)
        expected = torch.nn.functional.conv_transpose2d(
            torch.tensor(x).permute(0, 3, 1, 2), torch.tensor(kernel).permute(3, 2, 0, 1),
            torch.tensor(bias), stride=strides, padding=padding, output_padding=output_padding,
            dilation=dilation).permute(0, 2, 3, 1).numpy()
        y = conv2d_transpose(x, kernel, bias, strides=strides, padding=padding,
                             output_padding=output_padding, dilation_rate=dilation)
        np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)
