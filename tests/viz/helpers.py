"""Shared checks for the pictures: a PNG of the right size that is not blank, and the
arrays drawn in labelled panels."""
import numpy as np


def check_png(path, fig):
    from PIL import Image
    assert path.exists() and path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = fig.get_size_inches() * fig.dpi
        assert abs(image.size[0] - width) < 1 and abs(image.size[1] - height) < 1
        pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    assert pixels.std() > 0, "the picture is blank"
    return pixels


def panel(fig, label):
    """The axes labelled ``label`` (exactly one)."""
    every = list(fig.axes) + [child for ax in fig.axes for child in ax.child_axes]  # insets too
    found = [ax for ax in every if ax.get_label() == label]
    assert len(found) == 1, f"expected one panel {label!r}, found {len(found)}"
    return found[0]


def panel_array(fig, label):
    return panel(fig, label).images[0].get_array()   # masked where matplotlib masked it
