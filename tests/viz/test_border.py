import numpy as np
import pytest

from convkit.viz import plot_border_effect, usage_counts

from .helpers import check_png, panel_array


def test_counts_3x3_valid_hand_computed():
    # The corner pixel is read by 1 window, an edge pixel by 2 or 3, the centre by 9.
    expected = np.array([[1, 2, 3, 2, 1],
                         [2, 4, 6, 4, 2],
                         [3, 6, 9, 6, 3],
                         [2, 4, 6, 4, 2],
                         [1, 2, 3, 2, 1]])
    np.testing.assert_array_equal(usage_counts(5, 3), expected)


def test_counts_same_padding_and_padded_grid():
    counts = usage_counts(4, 3, padding="same")
    np.testing.assert_array_equal(counts, [[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6],
                                           [4, 6, 6, 4]])
    padded, geometry = usage_counts(4, 3, padding="same", include_padding=True)
    assert padded.shape == (6, 6) and geometry.pads == ((1, 1), (1, 1))
    assert padded[0, 0] == 1 and padded.sum() == 4 * 4 * 9     # 16 windows of 9 cells


def test_stride_leftovers_are_never_read():
    counts = usage_counts(6, 3, strides=2)
    # windows start at rows 0 and 2: row 5 and column 5 are never read
    assert counts[5].sum() == 0 and counts[:, 5].sum() == 0
    np.testing.assert_array_equal(counts[0], [1, 1, 2, 1, 1, 0])


def test_counts_equal_conv_backward_of_ones(rng):
    from convkit.ops import conv2d_backward
    for size, kernel, stride, padding, dilation in [((7, 9), 3, 2, "same", 1),
                                                    ((8, 8), (2, 3), (1, 2), "valid", 2),
                                                    ((6, 5), 3, 1, ((0, 2), (1, 0)), 1)]:
        counts = usage_counts(size, kernel, stride, padding, dilation)
        x = rng.standard_normal((1, *size, 1))
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        from convkit import shapes
        out = shapes.window_geometry(size, kernel, stride, padding, dilation).out_hw
        dx, _, _ = conv2d_backward(np.ones((1, *out, 1)), x, np.ones((kh, kw, 1, 1)),
                                   strides=stride, padding=padding, dilation_rate=dilation)
        np.testing.assert_array_equal(counts, dx[0, :, :, 0])


def test_plot_border_effect_panels_and_png(tmp_path):
    path = tmp_path / "sub" / "border.png"
    fig = plot_border_effect(5, 3, compare=["same"], path=path)
    check_png(path, fig)
    valid = panel_array(fig, "counts 0")
    np.testing.assert_array_equal(valid, usage_counts(5, 3))
    same = panel_array(fig, "counts 1")
    assert same.shape == (7, 7)
    assert same.mask[0, 0] and not same.mask[1, 1]           # padding cells are masked grey
    np.testing.assert_array_equal(same.data[1:-1, 1:-1], usage_counts(5, 3, padding="same"))
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts.count("9") == 1 and texts.count("1") == 4   # small grids are annotated


def test_bad_border_arguments_raise():
    from convkit.errors import ShapeError
    with pytest.raises(ShapeError, match="usage_counts"):
        usage_counts(2, 3)
