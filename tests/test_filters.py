import numpy as np
import pytest

import convkit as ck
from convkit import filters
from convkit.errors import ConvkitError, ShapeError


def test_three_by_three_forms():
    np.testing.assert_array_equal(filters.vertical_line(), [[0, 1, 0]] * 3)
    np.testing.assert_array_equal(filters.horizontal_line(), [[0, 0, 0], [1, 1, 1], [0, 0, 0]])
    np.testing.assert_array_equal(filters.identity(), [[0, 0, 0], [0, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(filters.sobel_x(), [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    np.testing.assert_array_equal(filters.sobel_y(), filters.sobel_x().T)
    np.testing.assert_array_equal(filters.prewitt_y(), filters.prewitt_x().T)


@pytest.mark.parametrize("size", [1, 3, 5, 7])
def test_line_filters_any_odd_size(size):
    v, h = filters.vertical_line(size), filters.horizontal_line(size)
    assert v.shape == (size, size) and v.dtype == np.float32
    assert v.sum() == size and np.all(v[:, size // 2] == 1)
    np.testing.assert_array_equal(h, v.T)


@pytest.mark.parametrize("name, total", [
    ("box_blur", 1.0), ("gaussian_blur", 1.0), ("sharpen", 1.0), ("emboss", 1.0),
    ("laplacian", 0.0), ("sobel_x", 0.0), ("sobel_y", 0.0), ("prewitt_x", 0.0),
    ("prewitt_y", 0.0), ("identity", 1.0),
])
def test_sums(name, total):
    kernel = filters.get(name)
    assert kernel.dtype == np.float32 and kernel.ndim == 2
    assert kernel.sum() == pytest.approx(total, abs=1e-6)


def test_box_and_gaussian_blur():
    np.testing.assert_allclose(filters.box_blur(5), np.full((5, 5), 1 / 25))
    g = filters.gaussian_blur(5)
    assert g.shape == (5, 5) and g.argmax() == 12
    np.testing.assert_allclose(g, g.T)
    np.testing.assert_allclose(g, g[::-1, ::-1])
    wide, narrow = filters.gaussian_blur(7, sigma=3.0), filters.gaussian_blur(7, sigma=0.5)
    assert wide[3, 3] < narrow[3, 3]
    # exp(-1/2) ratio between the centre and a neighbour at sigma=1
    g1 = filters.gaussian_blur(3, sigma=1.0)
    assert g1[1, 0] / g1[1, 1] == pytest.approx(np.exp(-0.5), rel=1e-6)


def test_bank_get_and_names():
    assert "sobel_x" in filters.names() and "vertical_line" in filters.names()
    for name in filters.names():
        assert filters.get(name).shape == (3, 3) or name == "gaussian_blur"
    assert filters.get("Vertical-Line", 5).shape == (5, 5)
    assert filters.get("sobel_x", 3).shape == (3, 3)
    with pytest.raises(ConvkitError, match="sobel_x is a fixed 3x3 kernel"):
        filters.get("sobel_x", 5)
    with pytest.raises(ConvkitError, match="unknown filter 'blurry'.*box_blur"):
        filters.get("blurry")
    with pytest.raises(ConvkitError, match="size must be an odd int"):
        filters.vertical_line(4)


def test_stack():
    kernel = filters.stack([filters.vertical_line(7), filters.horizontal_line(7)], in_channels=3)
    assert kernel.shape == (7, 7, 3, 2) and kernel.dtype == np.float32
    for c in range(3):
        np.testing.assert_array_equal(kernel[:, :, c, 0], filters.vertical_line(7))
        np.testing.assert_array_equal(kernel[:, :, c, 1], filters.horizontal_line(7))
    assert filters.stack([filters.sobel_x()]).shape == (3, 3, 1, 1)
    with pytest.raises(ShapeError, match=r"kernel 0 is \(3, 3\), kernel 1 is \(5, 5\)"):
        filters.stack([filters.sobel_x(), filters.box_blur(5)])
    with pytest.raises(ShapeError, match=r"kernel 0 must be 2-D, got shape \(3, 3, 1\)"):
        filters.stack([np.zeros((3, 3, 1))])


def test_filters_in_a_conv_layer():
    """A sharp vertical step: Sobel x responds, Sobel y does not; blur keeps the mean."""
    image = np.zeros((1, 12, 12, 1), np.float32)
    image[:, :, 6:, :] = 1.0
    conv = ck.layers.Conv2D(3, 3, padding="valid", use_bias=False)
    conv.build((None, 12, 12, 1))
    conv.set_weights([filters.stack([filters.sobel_x(), filters.sobel_y(),
                                     filters.box_blur()])])
    maps = conv(image)[0]
    assert maps[5, 4, 0] == pytest.approx(4.0)        # window over columns 5..7 straddles the step
    assert np.abs(maps[..., 1]).max() == 0
    assert maps[..., 2].mean() == pytest.approx(image[0, 1:-1, 1:-1, 0].mean(), abs=0.1)
