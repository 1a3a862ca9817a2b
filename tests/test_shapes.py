import pytest

from convkit.errors import ShapeError
from convkit.shapes import (axis_output_size, conv_output_shape, conv_param_count,
                            dense_param_count, normalize_padding, padding_repr,
                            pool_output_shape, same_pads, to_pair, window_geometry)


def test_course_formula_valid_and_padded():
    # floor((n + 2p - f) / s) + 1
    assert axis_output_size(6, 3) == 4
    assert axis_output_size(6, 3, 1, 1, 1, 1) == 6
    assert axis_output_size(7, 3, 2) == 3
    assert axis_output_size(28, 5) == 24


@pytest.mark.parametrize("n,k,s,expected", [
    (5, 2, 2, (0, 1)),      # odd extra pad goes after (bottom/right)
    (5, 3, 1, (1, 1)),
    (4, 3, 2, (0, 1)),
    (6, 3, 2, (0, 1)),
    (7, 7, 1, (3, 3)),
    (8, 4, 1, (1, 2)),
    (3, 1, 1, (0, 0)),
    (10, 3, 5, (0, 0)),     # total pad would be negative -> 0
])
def test_same_pads_tensorflow_rule(n, k, s, expected):
    assert same_pads(n, k, s) == expected


def test_same_with_dilation():
    # effective kernel 5 -> total 4
    assert same_pads(10, 3, 1, 2) == (2, 2)
    assert window_geometry((10, 10), 3, 1, "same", 2).out_hw == (10, 10)


def test_same_output_is_ceil_n_over_s():
    for n in range(1, 20):
        for s in (1, 2, 3):
            geo = window_geometry((n, n + 1), 3, s, "SAME")
            assert geo.out_hw == (-(-n // s), -(-(n + 1) // s))


def test_explicit_padding_forms():
    assert normalize_padding(1) == ((1, 1), (1, 1))
    assert normalize_padding((1, 2)) == ((1, 1), (2, 2))
    assert normalize_padding(((0, 1), (2, 3))) == ((0, 1), (2, 3))
    assert normalize_padding("Valid") == "valid"
    geo = window_geometry((5, 5), 3, 1, ((0, 1), (2, 3)))
    assert geo.out_hw == (4, 8)
    assert padding_repr(geo) == "top 0, bottom 1, left 2, right 3"


@pytest.mark.parametrize("bad", ["full", -1, (1, -1), (1, 2, 3), ((1, 2), 3), 1.5, None])
def test_bad_padding_is_a_clear_error(bad):
    with pytest.raises(ShapeError, match="padding"):
        normalize_padding(bad, where="Conv2D")


def test_ceil_mode_pytorch_rule():
    # 5 wide, window 2, stride 2: floor -> 2, ceil -> 3 with one extra right cell
    geo = window_geometry((5, 5), 2, 2, 0, ceil_mode=True)
    assert geo.out_hw == (3, 3) and geo.extra == (1, 1)
    # a window that would start inside the right padding is dropped:
    # n=4, k=2, s=2, pad 1: ceil((4+2-2)/2)+1 = 3, last start 4 >= n + pad_before = 5? no -> 3
    assert axis_output_size(4, 2, 2, 1, 1, 1, ceil_mode=True) == 3
    # n=5, k=3, s=2, pad 1: span 4 -> ceil(4/2)+1 = 3; last start 4 < 6 -> 3
    assert axis_output_size(5, 3, 2, 1, 1, 1, ceil_mode=True) == 3
    # n=6, k=3, s=3, pad 1: span 5 -> ceil(5/3)+1 = 3; last start 6 >= 7? no -> 3
    assert axis_output_size(6, 3, 3, 1, 1, 1, ceil_mode=True) == 3
    # n=2, k=2, s=2, pad 1: span 2 -> 2; last start 2 >= n + before = 3? no -> 2
    assert axis_output_size(2, 2, 2, 1, 1, 1, ceil_mode=True) == 2
    # n=3, k=2, s=2, pad 1: span 3 -> ceil(3/2)+1 = 3; last start 4 >= 4 -> dropped -> 2
    assert axis_output_size(3, 2, 2, 1, 1, 1, ceil_mode=True) == 2


def test_size_zero_quotes_every_argument():
    with pytest.raises(ShapeError) as info:
        window_geometry((3, 4), 5, 2, "valid", 1, where="Conv2D")
    msg = str(info.value)
    for part in ("Conv2D", "3x4", "(5, 5)", "(2, 2)", "'valid'", "dilation_rate=(1, 1)"):
        assert part in msg


@pytest.mark.parametrize("value", [0, -1, (1, 0), "2", 1.0, (1, 2, 3), True])
def test_non_positive_or_non_int_sizes_refused(value):
    with pytest.raises(ShapeError, match="strides"):
        to_pair(value, "strides", "Conv2D")


def test_conv_and_pool_output_shapes_keras_mnist():
    s = conv_output_shape((None, 28, 28, 1), 32, 3)
    assert s == (None, 26, 26, 32)
    s = pool_output_shape(s, 2)
    assert s == (None, 13, 13, 32)
    s = conv_output_shape(s, 64, 3)
    assert s == (None, 11, 11, 64)
    assert pool_output_shape(s, 2) == (None, 5, 5, 64)
    assert conv_output_shape((8, 3, 32, 32), 16, 3, padding="same",
                             data_format="channels_first") == (8, 16, 32, 32)
    assert conv_output_shape((None, 427, 640, 3), 2, 7, padding="same") == (None, 427, 640, 2)


def test_pool_padding_at_most_half_window():
    with pytest.raises(ShapeError, match="half"):
        pool_output_shape((None, 8, 8, 1), 2, padding=2)


def test_param_counts():
    assert conv_param_count(4, 3, 5) == 4 * 4 * 3 * 5 + 5 == 245
    assert conv_param_count(3, 1, 32) == 320
    assert conv_param_count(3, 32, 64) == 18496
    assert conv_param_count(3, 64, 64, groups=64) == 3 * 3 * 1 * 64 + 64
    assert conv_param_count(3, 32, 64, use_bias=False) == 18432
    assert dense_param_count(1600, 10) == 16010


def test_geometry_dropped_rows():
    # 28 wide, k 3, s 2, valid: windows cover 0..26, so one column is dropped
    assert window_geometry((28, 28), 3, 2).dropped == (1, 1)
    assert window_geometry((27, 27), 3, 2).dropped == (0, 0)


def test_geometries_are_remembered_without_loosening_the_checks(monkeypatch):
    from convkit import shapes
    first = window_geometry((56, 56), 3, 2, 1)
    assert window_geometry((56, 56), 3, 2, 1) is first          # remembered
    assert window_geometry([56, 56], [3, 3], [2, 2], 1) == first  # lists: same result
    assert first.inner_out == ((1, 28), (1, 28))
    # values equal to remembered ones but of a refused type are still refused
    window_geometry((28, 28), (3, 1))
    for bad in [dict(kernel_size=(3, True)), dict(kernel_size=3, strides=2.0),
                dict(kernel_size=3, strides=(2, True)), dict(kernel_size=3, dilation_rate=True)]:
        for _ in range(2):
            with pytest.raises(ShapeError):
                window_geometry((28, 28), **bad)
    # errors are not remembered; the memory is bounded
    for _ in range(2):
        with pytest.raises(ShapeError, match="output size would be"):
            window_geometry((2, 2), 5)
    monkeypatch.setattr(shapes, "_GEOMETRIES", {})
    monkeypatch.setattr(shapes, "_GEOMETRIES_MAX", 3)
    for n in range(10, 20):
        window_geometry((n, n), 3)
    assert 1 <= len(shapes._GEOMETRIES) <= 3
