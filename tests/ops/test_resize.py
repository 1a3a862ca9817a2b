"""resize2d and crop2d: hand cases, a naive per-pixel loop over random sizes, float64 finite
differences and PyTorch's ``interpolate`` (Keras 3: in tests/layers/test_resampling.py)."""
import math

import numpy as np
import pytest

from convkit.errors import ShapeError
from convkit.ops.resize import crop2d, crop2d_backward, resize2d, resize2d_backward
from tests.gradcheck import check_vjp


def resize_loop(x, size, interpolation):
    """Pixel by pixel from the definitions: nearest takes the cell holding the output
    centre; bilinear mixes the four cells around it (positions clamped to the image)."""
    n, h, w, c = x.shape
    out = np.zeros((n, *size, c))
    for i in range(size[0]):
        for j in range(size[1]):
            if interpolation == "nearest":
                out[:, i, j] = x[:, math.floor((i + 0.5) * h / size[0]),
                                 math.floor((j + 0.5) * w / size[1])]
                continue
            ci = min(max((i + 0.5) * h / size[0] - 0.5, 0), h - 1)
            cj = min(max((j + 0.5) * w / size[1] - 0.5, 0), w - 1)
            i0, j0 = math.floor(ci), math.floor(cj)
            i1, j1 = min(i0 + 1, h - 1), min(j0 + 1, w - 1)
            fi, fj = ci - i0, cj - j0
            out[:, i, j] = ((1 - fi) * (1 - fj) * x[:, i0, j0] + (1 - fi) * fj * x[:, i0, j1]
                            + fi * (1 - fj) * x[:, i1, j0] + fi * fj * x[:, i1, j1])
    return out


def test_hand_cases():
    x = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    np.testing.assert_array_equal(resize2d(x, 4, "nearest")[0, :, :, 0],
                                  [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
    # bilinear 2 -> 4: positions 0, 0.25, 0.75, 1 along each axis
    row = resize2d(x, (1, 4))[0, 0, :, 0]        # height 2 -> 1: position 0.5, the mean
    np.testing.assert_allclose(row, [2.0, 2.25, 2.75, 3.0])   # between 2 and 3
    # downsampling 4 -> 2 with nearest keeps cells 1 and 3
    y = resize2d(np.arange(4.0).reshape(1, 1, 4, 1), (1, 2), "nearest")
    np.testing.assert_array_equal(y.ravel(), [1, 3])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_matches_the_loop(seed, interpolation):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, *rng.integers(1, 7, 2), 3))
    size = tuple(int(v) for v in rng.integers(1, 13, 2))
    np.testing.assert_allclose(resize2d(x, size, interpolation),
                               resize_loop(x, size, interpolation), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("size, data_format", [((8, 6), "channels_last"),
                                               ((3, 7), "channels_first"), ((2, 2), None)])
def test_gradients(rng, interpolation, size, data_format):
    x = rng.standard_normal((2, 4, 3, 3))
    kwargs = {"data_format": data_format or "channels_last"}
    check_vjp(lambda a: resize2d(a, size, interpolation, **kwargs),
              lambda g, a: [resize2d_backward(g, a, size, interpolation, **kwargs)], [x], rng)


def test_crop_and_its_gradient(rng):
    x = rng.standard_normal((2, 6, 5, 3))
    cropping = ((1, 2), (0, 3))
    np.testing.assert_array_equal(crop2d(x, cropping), x[:, 1:4, 0:2])
    np.testing.assert_array_equal(crop2d(x.transpose(0, 3, 1, 2), cropping, "channels_first"),
                                  x[:, 1:4, 0:2].transpose(0, 3, 1, 2))
    check_vjp(lambda a: crop2d(a, cropping), lambda g, a: [crop2d_backward(g, cropping)],
              [x], rng)


def test_errors(rng):
    x = rng.standard_normal((1, 4, 4, 2))
    with pytest.raises(ShapeError, match="interpolation must be one of nearest, bilinear"):
        resize2d(x, 8, "bicubic")
    with pytest.raises(ShapeError, match="dy has shape"):
        resize2d_backward(np.ones((1, 4, 4, 2)), x, 8)
    with pytest.raises(ShapeError, match=r"cropping .* leaves nothing of the 4x4 images"):
        crop2d(x, ((2, 2), (0, 0)))


def test_bilinear_against_torch(rng, torch):
    x = rng.standard_normal((2, 5, 6, 3))
    expected = torch.nn.functional.interpolate(
        torch.tensor(x).permute(0, 3, 1, 2), size=(11, 8), mode="bilinear",
        align_corners=False).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(resize2d(x, (11, 8)), expected, rtol=1e-12, atol=1e-12)
