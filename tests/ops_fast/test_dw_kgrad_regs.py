"""The depthwise 3x3 kernel gradient with its sums in registers (``_dw_kgrad3x3``): a hand
computed case, the naive reference over geometries and channel counts that split between
it and the general loop, the generated module against its generator, and the SLP switch."""
import numpy as np
import pytest

from convkit.fast import kernels as accel
from convkit.fast.kernels import depthwise
from convkit.fast._generated.dw_kgrad3x3 import LANES
from convkit.shapes import window_geometry
from tests.ops_fast._generated import assert_current
from tests.ops_fast import _naive

pytestmark = pytest.mark.usefixtures("need_accel")


def test_generated_module_is_current():
    assert_current("gen_dw_kgrad", "dw_kgrad3x3")


def test_hand_computed_counts():
    # ones in, ones back, 'same' 3x3 over 4x4: each tap's gradient counts the output pixels
    # whose window puts that tap inside the image -- 16 in the middle, 12 on an edge, 9 at a
    # corner -- for every one of the 16 channels
    geo = window_geometry((4, 4), 3, 1, "same")
    x = np.ones((1, 4, 4, LANES), np.float32)
    dy = np.ones((1, 4, 4, LANES), np.float32)
    assert depthwise._register_part(x.shape, geo, 1, np.float32) == (1, 3, LANES)
    _, dk, db = accel.depthwise_conv2d_backward(dy, x, np.ones((3, 3, 1, LANES)), geo)
    expected = np.array([[9, 12, 9], [12, 16, 12], [9, 12, 9]], np.float32)
    np.testing.assert_array_equal(dk[:, :, 0, :], np.repeat(expected[..., None], LANES, 2))
    np.testing.assert_array_equal(db, np.full(LANES, 16, np.float32))


# (N, H, W, strides, padding, dilation)
GEOMETRIES = [
    (2, 9, 11, 1, "same", 1),
    (3, 8, 7, 1, "valid", 1),
    (2, 11, 12, 2, ((1, 1), (2, 0)), (2, 1)),
    (1, 10, 13, (1, 2), ((0, 2), (1, 1)), 2),
    (2, 7, 5, 1, "same", (1, 3)),       # no column has all three kernel columns inside
]


@pytest.mark.parametrize("channels", [LANES, 3 * LANES + 5])
@pytest.mark.parametrize("case", GEOMETRIES)
def test_matches_naive(case, channels, rng):
    n, h, w, strides, padding, dilation = case
    geo = window_geometry((h, w), 3, strides, padding, dilation)
    x = rng.standard_normal((n, h, w, channels)).astype(np.float32)
    k = rng.standard_normal((3, 3, 1, channels)).astype(np.float32)
    dy = rng.standard_normal((n, *geo.out_hw, channels)).astype(np.float32)
    dx, dk, db = accel.depthwise_conv2d_backward(dy, x, k, geo, 1)
    win = _naive.windows(x.astype(np.float64), geo)            # (N, Ho, Wo, kh, kw, C)
    dk_ref = np.einsum("nhwabc,nhwc->abc", win, dy.astype(np.float64))
    scale = np.abs(dk_ref).max()
    np.testing.assert_allclose(dk[:, :, 0, :], dk_ref, rtol=0, atol=2e-6 * scale)
    np.testing.assert_allclose(db, dy.astype(np.float64).sum(axis=(0, 1, 2)), rtol=1e-5,
                               atol=1e-4)
    # the float64 call takes the general loop only: the two agree
    _, dk64, _ = accel.depthwise_conv2d_backward(dy.astype(np.float64), x.astype(np.float64),
                                                 k.astype(np.float64), geo, 1)
    np.testing.assert_allclose(dk, dk64, rtol=0, atol=2e-6 * scale)


def test_register_part_bounds():
    # the columns it takes are exactly those whose three taps are inside the input
    for w, sw, dw, left in [(12, 1, 1, 1), (12, 2, 1, 2), (13, 2, 2, 0), (5, 1, 3, 1)]:
        geo = window_geometry((6, w), 3, (1, sw), ((1, 1), (left, 1)), (1, dw))
        ow_a, ow_b, c_split = depthwise._register_part((1, 6, w, 2 * LANES), geo, 1, np.float32)
        inside = [ow for ow in range(geo.out_hw[1])
                  if ow * sw - left >= 0 and ow * sw - left + 2 * dw < w]
        if inside:
            assert (ow_a, ow_b, c_split) == (inside[0], inside[-1] + 1, 2 * LANES)
        else:
            assert (ow_a, ow_b, c_split) == (0, 0, 0)
    geo = window_geometry((6, 12), 3, 1, "same")
    assert depthwise._register_part((1, 6, 12, LANES - 1), geo, 1, np.float32) == (0, 0, 0)
    assert depthwise._register_part((1, 6, 12, LANES), geo, 2, np.float32) == (0, 0, 0)
    assert depthwise._register_part((1, 6, 12, LANES), geo, 1, np.float64) == (0, 0, 0)


def _two_sum(a):
    return a[0] + a[1]


def test_slp_switch_is_restored():
    from numba.core import config

    from convkit.fast.runtime.backend import _compile_with_slp, jit
    before = config.SLP_VECTORIZE
    seen = []
    dispatcher = jit(_two_sum, "test", slp=True)
    assert dispatcher.compile.__name__ == "compile_with_slp"
    assert dispatcher(np.arange(3.0)) == 1.0
    assert config.SLP_VECTORIZE == before

    class Fake:
        def compile(self, sig):
            seen.append(config.SLP_VECTORIZE)
            raise RuntimeError("compile failed")
    fake = _compile_with_slp(Fake())
    with pytest.raises(RuntimeError):
        fake.compile(())
    assert seen == [1] and config.SLP_VECTORIZE == before
