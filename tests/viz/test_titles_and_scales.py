"""Titles that fit their figure, single-filter titles, image-like filters on the input's
scale, filters scaled to large images, and a training-curves legend only with validation."""
import numpy as np
import pytest

from convkit.data import load_sample_images
from convkit.viz import (plot_border_effect, plot_feature_maps, plot_filter_gallery,
                         plot_filters, plot_history)
from convkit.viz._images import to_gray

from .helpers import panel, panel_array

layers = pytest.importorskip("convkit.layers")


def assert_titles_inside(fig, tmp_path):
    """Every title lies inside the saved figure (measured after the final layout)."""
    fig.savefig(tmp_path / "layout.png")
    renderer = fig.canvas.get_renderer()
    titles = [fig._suptitle] + [ax.title for ax in fig.axes if ax.get_title()]
    for title in titles:
        box = title.get_window_extent(renderer)
        assert box.x0 >= -0.5 and box.x1 <= fig.bbox.width + 0.5, title.get_text()
        assert box.y1 <= fig.bbox.height + 0.5, title.get_text()


@pytest.fixture(scope="module")
def china():
    return load_sample_images()[0]                         # (427, 640, 3)


def test_one_and_two_panel_figures_keep_their_titles(tmp_path, china, rng):
    conv = layers.Conv2D(1, 3, name="single")
    figures = [
        plot_filter_gallery(china, names=["sobel_x"]),
        plot_border_effect(5, 3),
        plot_feature_maps(conv, rng.random((8, 8, 1), dtype=np.float32)),
        plot_filters(rng.normal(size=(3, 3, 1, 1)).astype(np.float32)),
        plot_history({"loss": [1.0, 0.5]}, title="a very long title " * 8),
    ]
    for fig in figures:
        assert_titles_inside(fig, tmp_path)


def test_single_filter_title(china):
    fig = plot_filter_gallery(china, names=["sobel_x"])
    title = fig._suptitle.get_text().replace("\n", " ")
    assert title.startswith("The sobel_x filter (3x3) on one image")
    assert "Classic filters" not in title
    fig = plot_filter_gallery(china, names=["sharpen", "sobel_y"])
    assert fig._suptitle.get_text().startswith("Classic filters")


def test_sharpen_on_the_input_scale(china):
    """Sharpen, identity and blur (weights summing to 1) share the input's grey scale, so
    sharpening overshoots clip instead of stretching the picture flat."""
    fig = plot_filter_gallery(china, names=["identity", "sharpen", "box_blur"])
    identity = panel(fig, "identity").images[0].get_clim()
    assert panel(fig, "sharpen").images[0].get_clim() == identity
    assert panel(fig, "box_blur").images[0].get_clim() == identity
    gray = to_gray(china)
    assert identity == pytest.approx(tuple(np.percentile(gray, [0.5, 99.5])), rel=1e-5)
    sharpened = np.asarray(panel_array(fig, "sharpen"))
    assert sharpened.max() > identity[1] and sharpened.min() < identity[0]   # overshoots


def _difference_from_input(fig, name, gray):
    """Mean absolute difference between a panel and the input, both standardised."""
    response = np.asarray(panel_array(fig, name), dtype=np.float64)
    scaled = (response - response.mean()) / response.std()
    return float(np.abs(scaled - (gray - gray.mean()) / gray.std()).mean())


@pytest.mark.parametrize("name", ["gaussian_blur", "box_blur", "vertical_line",
                                  "horizontal_line"])
def test_sized_filters_grow_with_a_large_image(china, name):
    """On the 427x640 photograph the sized filters become 11x11 and change the picture
    well beyond what their 3x3 form does; a small image keeps the default size."""
    gray = to_gray(china).astype(np.float64)
    fig = plot_filter_gallery(china, names=[name])
    assert panel(fig, name).get_title() == f"{name} (11x11)"
    three = plot_filter_gallery(china, names=[(name, 3)])
    assert _difference_from_input(fig, name, gray) > 1.6 * _difference_from_input(three, name,
                                                                                    gray)
    small = plot_filter_gallery(china[:100, :100], names=[name])
    default = "(5x5)" if name == "gaussian_blur" else "(3x3)"
    assert panel(small, name).get_title().endswith(default)


def test_curves_legend_only_with_validation():
    alone = plot_history({"loss": [1.0, 0.5], "accuracy": [0.5, 0.7]})
    assert all(ax.get_legend() is None for ax in alone.axes)
    assert "dashed" not in alone._suptitle.get_text()
    assert panel(alone, "loss").get_title() == "loss (last 0.5)"
    both = plot_history({"loss": [1.0, 0.5], "val_loss": [1.1, 0.6]})
    assert all(ax.get_legend() is not None for ax in both.axes)
    assert "dashed = validation" in both._suptitle.get_text().replace("\n", " ")
