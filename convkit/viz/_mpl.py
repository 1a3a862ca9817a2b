"""Matplotlib plumbing shared by the pictures: lazy import, figures, atomic PNG writes.

Matplotlib is imported only when a picture is drawn. Figures are made with
``matplotlib.figure.Figure`` directly (not through ``pyplot``), so drawing many pictures keeps
no global state; a returned figure shows itself in Jupyter and saves with ``fig.savefig``.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from ..errors import ConvkitError

DPI = 100


def matplotlib():
    """Import matplotlib, choosing the non-interactive Agg backend where there is no display."""
    try:
        import matplotlib as mpl
    except ImportError:  # pragma: no cover - depends on the installation
        raise ConvkitError("convkit.viz needs matplotlib: pip install 'convkit[viz]'") from None
    headless = sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if headless and "MPLBACKEND" not in os.environ and "matplotlib.pyplot" not in sys.modules:
        mpl.use("Agg")
    return mpl


def new_figure(width: float, height: float):
    """A ``Figure`` of ``width`` x ``height`` inches with constrained layout."""
    matplotlib()
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save(fig, path) -> None:
    """Write ``fig`` as a PNG to ``path`` atomically (old file untouched on failure)."""
    if path is None:
        return
    from ..io.archive import atomic_writer
    directory = os.path.dirname(os.fspath(path))
    if directory:
        os.makedirs(directory, exist_ok=True)
    with atomic_writer(path, "wb") as handle:
        handle.write(png_bytes(fig))


def finish(fig, path=None):
    """Wrap every title so it fits the figure (:func:`fit_titles`), then write ``path`` if
    given (:func:`save`). Returns ``fig``."""
    fit_titles(fig)
    save(fig, path)
    return fig


def fit_titles(fig, margin_px: float = 4.0) -> None:
    """Re-wrap the figure's title and the panels' titles that would stick out of the figure
    (a one- or two-panel figure is narrower than a long title), so no title is clipped.

    Each line is wrapped at word boundaries to as many characters as its measured width
    allows; a single word longer than the figure is left as it is."""
    import textwrap
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()
    width = fig.bbox.width - 2 * margin_px
    titles = [fig._suptitle] if fig._suptitle is not None else []
    titles += [ax.title for ax in fig.axes if ax.get_title()]
    for title in titles:
        for _ in range(6):
            extent = title.get_window_extent(renderer)
            if extent.width <= width:
                break
            text = title.get_text()
            longest = max(len(line) for line in text.split("\n"))
            columns = max(int(longest * width / extent.width) - 1, 8)
            title.set_text("\n".join(textwrap.fill(line, columns, break_on_hyphens=False)
                                      if len(line) > columns
                                      else line for line in text.split("\n")))


def png_bytes(fig) -> bytes:
    """The figure as compact PNG bytes: RGB without the (opaque) alpha channel, and a
    palette image when the picture has at most 256 colours -- both lossless."""
    import io
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        return buffer.getvalue()
    buffer.seek(0)
    with Image.open(buffer) as image:
        picture = image.convert("RGB")
    pixels = np.asarray(picture)                                        # (H, W, 3) uint8
    colours, index = np.unique(pixels.reshape(-1, 3), axis=0, return_inverse=True)
    if len(colours) <= 256:                                             # an exact palette
        picture = Image.fromarray(index.reshape(pixels.shape[:2]).astype(np.uint8), mode="P")
        picture.putpalette(colours.astype(np.uint8).ravel().tolist())
    out = io.BytesIO()
    picture.save(out, format="PNG", optimize=True)
    return out.getvalue()


def hide_ticks(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def grid_shape(count: int, cols: int | None = None) -> tuple[int, int]:
    """``(rows, cols)`` of a near-square grid holding ``count`` panels."""
    if cols is None:
        cols = int(-(-(count * 1.6) ** 0.5 // 1))   # a little wider than tall
    cols = max(1, min(int(cols), count))
    return -(-count // cols), cols
