"""The NumPy path's banded product for convolutions with few filters (``_banded_forward``):
a case by hand, the naive loop reference over random shapes, strides, dilations, paddings
and block sizes (several images a block, rows of one image, a last band running past the
row), the band matrix itself, its rule, and inputs holding inf or NaN, where each output
must see only its own window."""
import numpy as np
import pytest

from convkit.fast import kernels as accel
from convkit.ops import conv as conv_module
from convkit.ops import conv2d
from convkit.ops.conv import conv2d_relu
from convkit.ops.reference import conv2d_ref
from tests.ops._cases import (assert_channels_first_float32_relu,
                             assert_non_finite_stays_in_its_windows)


@pytest.fixture
def spy(monkeypatch):
    """Counts the banded forward's calls, on the NumPy path whatever the test's backend."""
    calls = []
    real = conv_module._banded_forward

    def counting(*args, **kwargs):
        calls.append(args[0].kernel.shape)
        return real(*args, **kwargs)
    monkeypatch.setattr(conv_module, "_banded_forward", counting)
    with accel.use_backend("numpy"):
        yield calls


def test_banded_by_hand(spy):
    # one row of 5 pixels, kernel [1, 2, 3], valid: y[j] = x[j] + 2 x[j+1] + 3 x[j+2]
    x = np.array([1.0, 0.0, 2.0, -1.0, 4.0]).reshape(1, 1, 5, 1)
    k = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)
    y = conv2d(x, k)
    assert y.ravel().tolist() == [1 + 0 + 6, 0 + 4 - 3, 2 - 2 + 12]
    assert spy == [(1, 3, 1, 1)]


def test_band_matrix_places_the_kernel_on_diagonals():
    k = np.arange(1.0, 1 + 2 * 3 * 2 * 3).reshape(2, 3, 2, 3)       # (kh, kw, C, F)
    t = conv_module._band_kernel(k, 4).reshape(2, 6, 2, 4, 3)         # (a, q, c, p, f)
    for p in range(4):
        for q in range(6):
            expected = k[:, q - p] if 0 <= q - p < 3 else 0.0
            np.testing.assert_array_equal(t[:, q, :, p, :], expected)


@pytest.mark.parametrize("w_out, band", [(640, 8), (28, 7), (27, 9), (13, 8), (3, 8)])
def test_band_width_prefers_a_divisor(w_out, band):
    assert conv_module._band_width(w_out) == band


# (input shape, kernel shape, strides, padding, dilation, padding_mode)
CASES = [
    ((2, 9, 16, 3), (7, 7, 3, 2), 1, "same", 1, "zeros"),          # the seed's shape, small
    ((3, 8, 13, 1), (5, 5, 1, 6), 1, "valid", 1, "zeros"),         # 9 outputs: a band of 8 + tail
    ((2, 7, 12, 2), (3, 3, 2, 8), (2, 1), "same", 1, "zeros"),     # strided down the rows
    ((2, 11, 10, 3), (3, 2, 3, 4), 1, ((2, 1), (0, 3)), (2, 1), "zeros"),  # dilated rows, pads
    ((1, 6, 9, 2), (3, 3, 2, 1), 1, 1, 1, "reflect"),
    ((2, 5, 7, 1), (2, 3, 1, 3), 1, ((1, 1), (2, 2)), 1, "circular"),
    ((1, 5, 20, 2), (1, 4, 2, 5), 1, "same", 1, "replicate"),
]


@pytest.mark.parametrize("block_bytes", [1 << 21, 1 << 10, 64])
@pytest.mark.parametrize("case", CASES)
def test_banded_matches_the_loop_reference(rng, monkeypatch, spy, case, block_bytes):
    x_shape, k_shape, strides, padding, dilation, mode = case
    monkeypatch.setattr(conv_module, "BLOCK_BYTES", block_bytes)
    x = rng.standard_normal(x_shape)
    k = rng.standard_normal(k_shape)
    b = rng.standard_normal(k_shape[3])
    kwargs = dict(strides=strides, padding=padding, dilation_rate=dilation, padding_mode=mode)
    y = conv2d(x, k, b, **kwargs)
    np.testing.assert_allclose(y, conv2d_ref(x, k, b, **kwargs), rtol=1e-12, atol=1e-12)
    assert spy, "the banded product did not run"
    assert_channels_first_float32_relu(conv2d_relu, x, k, b, y, 1e-5, **kwargs)


def test_banded_splits_one_image_by_rows(rng, monkeypatch, spy):
    # one image with work enough to split its output rows over two threads
    from convkit.ops import batch_threads
    monkeypatch.setattr(batch_threads, "SPLIT_BYTES", 0)
    monkeypatch.setattr(conv_module, "BLOCK_BYTES", 1 << 12)
    x = rng.standard_normal((1, 40, 35, 3))
    k = rng.standard_normal((5, 5, 3, 2))
    y = conv2d(x, k, padding="same")
    np.testing.assert_allclose(y, conv2d_ref(x, k, padding="same"), rtol=1e-12, atol=1e-12)
    assert len(spy) >= 2


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_a_non_finite_input_stays_in_its_windows(rng, spy, bad):
    # an inf times the band matrix's zeros would turn every output of its band into NaN
    assert_non_finite_stays_in_its_windows(conv2d, conv2d_ref, rng.standard_normal((2, 6, 24, 2)),
                                           (1, 3, 10, 1), bad, rng.standard_normal((3, 3, 2, 2)))
    assert spy


@pytest.mark.parametrize("k_shape, strides, dilation, groups", [
    ((3, 3, 2, 9), 1, 1, 1),         # more filters than BANDED_MAX_FILTERS
    ((3, 1, 2, 2), 1, 1, 1),         # a kernel one pixel wide
    ((3, 3, 2, 2), (1, 2), 1, 1),    # strided along the row
    ((3, 3, 2, 2), 1, (1, 2), 1),    # dilated along the row
    ((3, 3, 1, 2), 1, 1, 2),         # groups
])
def test_banded_rule_leaves_other_convolutions_to_im2col(rng, spy, k_shape, strides, dilation,
                                                          groups):
    x = rng.standard_normal((1, 7, 9, 2))
    k = rng.standard_normal(k_shape)
    kwargs = dict(strides=strides, dilation_rate=dilation, groups=groups)
    y = conv2d(x, k, **kwargs)
    np.testing.assert_allclose(y, conv2d_ref(x, k, **kwargs), rtol=1e-12, atol=1e-12)
    assert spy == []
