import numpy as np
import pytest

from convkit.errors import ShapeError
from convkit.ops import pad2d, pad2d_backward
from tests.gradcheck import check_vjp

MODES = ["zeros", "constant", "reflect", "replicate", "circular"]
NUMPY_MODE = {"zeros": "constant", "constant": "constant", "reflect": "reflect",
              "replicate": "edge", "circular": "wrap"}


def test_modes_by_hand():
    row = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 4, 1)
    pads = ((0, 0), (2, 2))
    got = {mode: pad2d(row, pads, mode)[0, 0, :, 0] for mode in MODES}
    assert np.array_equal(got["zeros"], [0, 0, 1, 2, 3, 4, 0, 0])
    assert np.array_equal(got["reflect"], [3, 2, 1, 2, 3, 4, 3, 2])
    assert np.array_equal(got["replicate"], [1, 1, 1, 2, 3, 4, 4, 4])
    assert np.array_equal(got["circular"], [3, 4, 1, 2, 3, 4, 1, 2])
    assert np.array_equal(pad2d(row, pads, "constant", value=-np.inf)[0, 0, :2, 0], [-np.inf] * 2)


def test_backward_by_hand():
    ones = np.ones((1, 1, 8, 1))
    pads = ((0, 0), (2, 2))
    assert np.array_equal(pad2d_backward(ones, pads, "zeros")[0, 0, :, 0], [1, 1, 1, 1])
    assert np.array_equal(pad2d_backward(ones, pads, "reflect")[0, 0, :, 0], [1, 3, 3, 1])
    assert np.array_equal(pad2d_backward(ones, pads, "replicate")[0, 0, :, 0], [3, 1, 1, 3])
    assert np.array_equal(pad2d_backward(ones, pads, "circular")[0, 0, :, 0], [2, 2, 2, 2])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pads", [1, (2, 1), ((0, 2), (3, 1)), ((2, 0), (0, 0))])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_matches_numpy_pad_and_gradients(rng, mode, pads, data_format):
    x = rng.standard_normal((2, 4, 5, 3))
    if data_format == "channels_first":
        x = x.transpose(0, 3, 1, 2)
    y = pad2d(x, pads, mode, data_format)
    full = ((pads, pads), (pads, pads)) if isinstance(pads, int) else (
        ((pads[0],) * 2, (pads[1],) * 2) if isinstance(pads[0], int) else pads)
    spatial = [(0, 0), full[0], full[1], (0, 0)]
    if data_format == "channels_first":
        spatial = [(0, 0), (0, 0), full[0], full[1]]
    np.testing.assert_array_equal(y, np.pad(x, spatial, NUMPY_MODE[mode]))
    check_vjp(lambda x_: pad2d(x_, pads, mode, data_format),
              lambda g, x_: (pad2d_backward(g, pads, mode, data_format),), [x], rng)


@pytest.mark.torch
@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
def test_matches_torch(torch, rng, mode):
    x = rng.standard_normal((2, 3, 5, 6))                         # NCHW
    pads = ((1, 3), (2, 0))
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.pad(xt, (2, 0, 1, 3), mode=mode)
    dy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(dy))
    np.testing.assert_array_equal(pad2d(x, pads, mode, "channels_first"), yt.detach().numpy())
    np.testing.assert_allclose(pad2d_backward(dy, pads, mode, "channels_first"),
                               xt.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_and_no_aliasing(dtype):
    x = np.ones((1, 3, 3, 1), dtype=dtype)
    for mode in MODES:
        assert pad2d(x, 1, mode).dtype == dtype
        assert pad2d_backward(np.ones((1, 5, 5, 1), dtype=dtype), 1, mode).dtype == dtype
    y = pad2d(x, 0)
    y[...] = 5                                    # a zero pad still returns a new array
    assert x[0, 0, 0, 0] == 1


def test_padded_arrays_are_c_contiguous():
    # the compiled kernels reshape the padded input of a convolution: a strided result
    # (NumPy's fancy indexing on a middle axis gives one) would not compile
    x = np.arange(2 * 4 * 5 * 3, dtype=np.float32).reshape(2, 4, 5, 3)
    for mode in MODES:
        assert pad2d(x, ((1, 2), (2, 1)), mode).flags.c_contiguous, mode


def test_errors():
    def check(parts, fn, *args, **kwargs):
        with pytest.raises(ShapeError) as info:
            fn(*args, **kwargs)
        for part in parts:
            assert part in str(info.value), str(info.value)

    x = np.zeros((1, 3, 3, 1))
    check(["pad2d", "(3, 3)"], pad2d, np.zeros((3, 3)), 1)
    check(["pad2d", "reflect", "(1, 3, 3, 1)"], pad2d, x, 3, "reflect")
    check(["pad2d", "circular", "(1, 3, 3, 1)"], pad2d, x, 4, "circular")
    check(["pad2d", "mirror"], pad2d, x, 1, "mirror")
    check(["pad2d", "same"], pad2d, x, "same")
    check(["pad2d", "negative"], pad2d, x, -1)
    check(["pad2d", "data_format"], pad2d, x, 1, data_format="NHWC")
    check(["pad2d_backward", "(1, 2, 2, 1)"], pad2d_backward, np.zeros((1, 2, 2, 1)), 1)
