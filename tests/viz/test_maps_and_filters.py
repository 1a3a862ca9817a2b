import numpy as np
import pytest

from convkit.errors import ConvkitError, ShapeError
from convkit.viz import (layer_output, plot_feature_maps, plot_filter_gallery, plot_filters,
                         seed_example_figure, seed_example_maps)

from .helpers import check_png, panel, panel_array

layers = pytest.importorskip("convkit.layers")
models = pytest.importorskip("convkit.models")


@pytest.fixture
def small_model():
    from convkit.random import set_seed
    set_seed(3)
    return models.Sequential([
        layers.Input((12, 12, 1)),
        layers.Conv2D(6, 3, activation="relu", name="conv_a"),
        layers.MaxPooling2D(2, name="pool_a"),
        layers.Conv2D(5, 3, padding="same", name="conv_b"),
        layers.Flatten(name="flatten"),
        layers.Dense(3, activation="softmax", name="dense"),
    ])


def test_feature_maps_of_a_layer_match_its_output(tmp_path, rng):
    conv = layers.Conv2D(4, 3, activation="relu", name="lonely")
    image = rng.random((10, 11, 3), dtype=np.float32)
    path = tmp_path / "maps.png"
    fig = plot_feature_maps(conv, image, path=path)
    check_png(path, fig)
    expected = conv(image[None])
    for c in range(4):
        np.testing.assert_allclose(panel_array(fig, f"channel {c}"), expected[0, :, :, c])
    np.testing.assert_allclose(panel_array(fig, "input"), image)     # RGB in [0, 1] as is
    assert "'lonely'" in fig._suptitle.get_text()


def test_feature_maps_run_a_sequential_model_up_to_the_layer(small_model, rng):
    image = rng.random((12, 12, 1), dtype=np.float32)
    fig = plot_feature_maps(small_model, image, layer="conv_b", shared_scale=True,
                            show_input=False)
    x = image[None]
    for name in ("conv_a", "pool_a", "conv_b"):
        x = small_model.get_layer(name)(x)
    for c in range(5):
        np.testing.assert_allclose(panel_array(fig, f"channel {c}"), x[0, :, :, c], rtol=1e-6)
    limits = {panel(fig, f"channel {c}").images[0].get_clim() for c in range(5)}
    assert limits == {(float(x.min()), float(x.max()))}          # one shared scale
    assert not [ax for ax in fig.axes if ax.get_label() == "input"]


def test_feature_maps_default_to_the_first_conv_layer(small_model, rng):
    image = rng.random((12, 12), dtype=np.float32)                  # (H, W) is accepted
    fig = plot_feature_maps(small_model, image)
    expected = small_model.get_layer("conv_a")(image[None, :, :, None])
    np.testing.assert_allclose(panel_array(fig, "channel 5"), expected[0, :, :, 5])


def test_layer_output_on_a_functional_model(rng):
    inp = layers.Input((8, 8, 2))
    a = layers.Conv2D(3, 3, name="fa")(inp)
    b = layers.Conv2D(2, 3, name="fb")(a)
    model = models.Model(inp, b)
    x = rng.random((1, 8, 8, 2), dtype=np.float32)
    np.testing.assert_allclose(layer_output(model, x, "fa"), model.get_layer("fa")(x),
                               rtol=1e-6)


def test_feature_maps_errors(small_model, rng):
    image = rng.random((12, 12, 1), dtype=np.float32)
    with pytest.raises(ConvkitError, match="no layer 'nope'"):
        plot_feature_maps(small_model, image, layer="nope")
    with pytest.raises(ShapeError, match="4-D"):
        plot_feature_maps(small_model, image, layer="dense")
    with pytest.raises(ShapeError, match="image"):
        plot_feature_maps(small_model, np.zeros((2, 3, 4, 5, 6)))


def test_plot_filters_single_channel(small_model, tmp_path):
    path = tmp_path / "filters.png"
    fig = plot_filters(small_model.get_layer("conv_a"), path=path)
    check_png(path, fig)
    kernel = small_model.get_layer("conv_a").get_weights()[0]           # (3, 3, 1, 6)
    for f in range(6):
        np.testing.assert_array_equal(panel_array(fig, f"filter {f}"), kernel[:, :, 0, f])
    limit = float(np.abs(kernel).max())
    assert panel(fig, "filter 0").images[0].get_clim() == (-limit, limit)   # centred on 0


def test_plot_filters_rgb_first_layer_and_channel_choice():
    conv = layers.Conv2D(4, 5, name="rgb")
    conv.build((None, 16, 16, 3))
    kernel = conv.get_weights()[0]
    fig = plot_filters(conv)
    for f in range(4):
        patch = kernel[:, :, :, f]
        np.testing.assert_allclose(panel_array(fig, f"filter {f}"),
                                   0.5 + patch / (2 * np.abs(patch).max()), rtol=1e-6)
    fig = plot_filters(conv, in_channel=2)
    np.testing.assert_array_equal(panel_array(fig, "filter 3"), kernel[:, :, 2, 3])
    with pytest.raises(ShapeError, match="in_channel"):
        plot_filters(conv, in_channel=3)
    with pytest.raises(ConvkitError, match="no convolution"):
        plot_filters(models.Sequential([layers.Input((4,)), layers.Dense(2)]))


def test_filter_gallery_panels_are_the_convolutions(tmp_path, rng):
    from convkit import filters
    from convkit.ops import conv2d
    image = rng.random((20, 24, 3), dtype=np.float32)
    path = tmp_path / "gallery.png"
    fig = plot_filter_gallery(image, names=["sobel_x", "box_blur"], size=None, path=path)
    check_png(path, fig)
    gray = image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    for name in ("sobel_x", "box_blur"):
        expected = conv2d(gray[None, :, :, None], filters.get(name)[:, :, None, None],
                          padding="same")[0, :, :, 0]
        np.testing.assert_allclose(panel_array(fig, name), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(panel_array(fig, f"{name} kernel"), filters.get(name))
    # an edge detector is drawn on a scale centred on zero
    low, high = panel(fig, "sobel_x").images[0].get_clim()
    assert low == pytest.approx(-high)


def test_filter_gallery_default_bank_with_size(rng):
    from convkit import filters
    image = rng.random((16, 16), dtype=np.float32)
    fig = plot_filter_gallery(image, size=5)
    for name in filters.names():
        panel(fig, name)
    assert panel_array(fig, "box_blur kernel").shape == (5, 5)
    assert panel_array(fig, "sobel_x kernel").shape == (3, 3)      # fixed-size filters stay 3x3
    with pytest.raises(ConvkitError, match="unknown filter"):
        plot_filter_gallery(image, names=["nope"])


def test_seed_example_on_small_images(tmp_path, rng):
    images = rng.random((2, 20, 30, 3), dtype=np.float32)
    path = tmp_path / "seed.png"
    fig = seed_example_figure(path, images=images)
    check_png(path, fig)
    _, maps = seed_example_maps(images)
    # filter 0 sums the 7 pixels of the centre column of each 7x7 window over R, G, B
    padded = np.pad(images.sum(axis=-1), ((0, 0), (3, 3), (3, 3)))
    vertical = sum(padded[:, a:a + 20, 3:3 + 30] for a in range(7))
    horizontal = sum(padded[:, 3:3 + 20, b:b + 30] for b in range(7))
    np.testing.assert_allclose(maps[..., 0], vertical, rtol=1e-5)
    np.testing.assert_allclose(maps[..., 1], horizontal, rtol=1e-5)
    np.testing.assert_allclose(panel_array(fig, "image 1, map 0"), maps[1, :, :, 0])
    np.testing.assert_allclose(panel_array(fig, "image 0"), images[0])
