"""The seed example: two photographs through a Conv2D layer with two hand-made line filters.

A Conv2D with 2 filters of 7x7 over the 3 colour channels, 'same' padding and ReLU, whose
first filter is a vertical white line and second a horizontal one (every input channel gets
the same 7x7 kernel). The first feature map lights up along vertical structures, the second
along horizontal ones.
"""
from __future__ import annotations

import numpy as np

from . import _mpl
from ._images import display_image, load_image

__all__ = ["seed_example_layer", "seed_example_maps", "seed_example_figure"]

FILTER_TITLES = ("vertical line filter", "horizontal line filter")


def seed_example_layer(in_channels: int = 3, size: int = 7):
    """``Conv2D(2, size, padding="same", activation="relu")`` built for ``in_channels`` with
    kernel ``filters.stack([vertical_line(size), horizontal_line(size)], in_channels)``
    ``(size, size, in_channels, 2)`` and zero bias."""
    from .. import filters
    from ..layers import Conv2D
    layer = Conv2D(2, size, padding="same", activation="relu", name="seed_conv")
    layer.build((None, None, None, in_channels))
    kernel = filters.stack([filters.vertical_line(size), filters.horizontal_line(size)],
                           in_channels=in_channels)
    layer.set_weights([kernel.astype(layer.dtype), np.zeros(2, dtype=layer.dtype)])
    return layer


def seed_example_maps(images=None):
    """``(images, maps)``: the images ``(N, H, W, 3)`` (default: the two bundled photographs)
    and their feature maps ``(N, H, W, 2)`` through :func:`seed_example_layer`."""
    if images is None:
        from ..data import load_sample_images
        images = load_sample_images()
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    layer = seed_example_layer(images.shape[-1])
    # One photograph at a time keeps the im2col matrix (H*W, 7*7*3) at a few hundred MB at most.
    maps = np.concatenate([layer(images[i:i + 1]) for i in range(len(images))])  # (N, H, W, 2)
    return images, maps


def seed_example_figure(path=None, images=None):
    """Draw the seed example: each photograph, then its two feature maps (grey scale, black =
    0). Panels are labelled ``"image i"`` and ``"image i, map c"``. ``images`` (an
    ``(N, H, W, 3)`` array or a list of image arguments) replaces the bundled photographs.
    Returns the Figure; writes a PNG to ``path`` if given."""
    if images is not None and not isinstance(images, np.ndarray):
        images = np.stack([load_image(img, "seed_example_figure") for img in images])
    images, maps = seed_example_maps(images)
    n, h, w = images.shape[:3]
    panel = 2.4
    fig = _mpl.new_figure(panel * 3 + 0.8, (panel * h / w + 0.45) * n + 0.8)
    for i in range(n):
        ax = fig.add_subplot(n, 3, 3 * i + 1)
        shown, cmap = display_image(images[i])
        ax.imshow(shown, cmap=cmap)
        ax.set_title(f"input {i}: {h}x{w}x{images.shape[3]}", fontsize=9)
        ax.set_label(f"image {i}")
        _mpl.hide_ticks(ax)
        top = float(maps[i].max()) or 1.0      # both maps of a photograph on one scale
        for c in range(2):
            ax = fig.add_subplot(n, 3, 3 * i + 2 + c)
            artist = ax.imshow(maps[i, :, :, c], cmap="gray", vmin=0, vmax=top)
            ax.set_title(f"feature map {c}: {FILTER_TITLES[c]}", fontsize=9)
            ax.set_label(f"image {i}, map {c}")
            _mpl.hide_ticks(ax)
        fig.colorbar(artist, ax=fig.axes[-2:], shrink=0.85, label="activation")
    fig.suptitle("Conv2D(filters=2, kernel_size=7, padding='same', activation='relu')\n"
                 "filter 0 = vertical white line, filter 1 = horizontal white line "
                 "(summed over R, G, B)", fontsize=10)
    return _mpl.finish(fig, path)
