"""The border effect: how often a sliding window reads each input pixel.

With a 3x3 kernel, stride 1 and 'valid' padding, a corner pixel is read by one window and a
pixel in the middle by nine: borders count less. 'same' padding adds zero rows and columns so
border pixels are read more often (and the output keeps the input's size).
"""
from __future__ import annotations

import numpy as np

from .. import shapes
from ..ops.windows import scatter_windows
from . import _mpl

__all__ = ["usage_counts", "plot_border_effect"]

_ANNOTATE_UP_TO = 16      # write the counts into cells when the padded grid is this small


def usage_counts(input_size, kernel_size, strides=1, padding="valid", dilation_rate=1,
                 include_padding: bool = False):
    """How many windows read each input pixel, an int array ``(H, W)``.

    Computed with the adjoint of the windowing op: scatter a window gradient of ones back onto
    the (padded) input, one strided slice per kernel offset. With ``include_padding=True``
    returns ``(counts over the padded grid, geometry)`` instead, padding cells included.

    >>> usage_counts(4, 3)
    array([[1, 2, 2, 1],
           [2, 4, 4, 2],
           [2, 4, 4, 2],
           [1, 2, 2, 1]])
    """
    in_hw = shapes.to_pair(tuple(input_size) if isinstance(input_size, list) else input_size,
                           "input_size", "usage_counts")
    geometry = shapes.window_geometry(in_hw, kernel_size, strides, padding, dilation_rate,
                                      where="usage_counts")
    (top, bottom), (left, right) = geometry.pads
    padded_shape = (1, in_hw[0] + top + bottom + geometry.extra[0],
                    in_hw[1] + left + right + geometry.extra[1], 1)
    ones = np.ones((1, geometry.out_hw[0], geometry.out_hw[1], 1), dtype=np.int64)
    counts = scatter_windows(lambda a, b: ones, geometry, padded_shape, np.int64)[0, :, :, 0]
    if include_padding:
        return counts, geometry                                   # (H_padded, W_padded)
    return counts[top:top + in_hw[0], left:left + in_hw[1]]      # (H, W)


def _draw(ax, counts, geometry, vmax, cmap):
    from matplotlib.patches import Rectangle
    (top, _), (left, _) = geometry.pads
    h, w = geometry.in_hw
    inside = np.zeros(counts.shape, dtype=bool)
    inside[top:top + h, left:left + w] = True
    shown = np.ma.masked_array(counts, mask=~inside)
    colours = cmap.with_extremes(bad="#e6e6e6")
    artist = ax.imshow(shown, cmap=colours, vmin=0, vmax=vmax, interpolation="nearest")
    if not inside.all():
        ax.add_patch(Rectangle((left - 0.5, top - 0.5), w, h, fill=False, linewidth=2.0,
                               edgecolor="black"))
    if max(counts.shape) <= _ANNOTATE_UP_TO:
        size = 11 if max(counts.shape) <= 8 else 8
        for (i, j), value in np.ndenumerate(counts):
            if inside[i, j]:
                colour = "red" if value == 0 else ("white" if value > 0.6 * vmax else "black")
                ax.text(j, i, str(value), ha="center", va="center", fontsize=size,
                        color=colour, fontweight="bold" if value == 0 else "normal")
            else:
                ax.text(j, i, str(value), ha="center", va="center", fontsize=size - 2,
                        color="#777777", style="italic")
    ax.set_xticks(np.arange(counts.shape[1]) - 0.5, minor=True)
    ax.set_yticks(np.arange(counts.shape[0]) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=0.6)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    return artist


def plot_border_effect(input_size, kernel_size, strides=1, padding="valid", path=None,
                       dilation_rate=1, compare=None):
    """A heat map of how many windows read each input pixel (the border effect).

    Each cell of the ``input_size`` grid shows its count (written in when the grid is small);
    padding cells are grey with their counts in italics, the real input is framed, and input
    pixels that no window reads (stride leftovers) are marked with a red 0. ``compare`` is a
    list of further paddings drawn side by side on the same colour scale, e.g.
    ``plot_border_effect(5, 3, compare=["same"])``. Returns the Figure; writes ``path``.
    """
    paddings = [padding] + list(compare or [])
    panels = [usage_counts(input_size, kernel_size, strides, p, dilation_rate,
                           include_padding=True) for p in paddings]
    vmax = max(int(counts.max()) for counts, _ in panels) or 1
    width = sum(max(counts.shape[1], 4) * 0.42 + 0.6 for counts, _ in panels) + 1.0
    height = max(max(counts.shape[0], 4) * 0.42 for counts, _ in panels) + 1.4
    fig = _mpl.new_figure(max(width, 4.5), height)
    mpl = _mpl.matplotlib()
    cmap = mpl.colormaps["YlOrRd"]
    artist = None
    for index, (padding_arg, (counts, geometry)) in enumerate(zip(paddings, panels)):
        ax = fig.add_subplot(1, len(panels), index + 1)
        artist = _draw(ax, counts, geometry, vmax, cmap)
        ax.set_label(f"counts {index}")
        (top, bottom), (left, right) = geometry.pads
        inside = counts[top:top + geometry.in_hw[0], left:left + geometry.in_hw[1]]
        mode = padding_arg if isinstance(padding_arg, str) else f"padding {padding_arg}"
        ax.set_title(f"{mode}: {geometry.in_hw[0]}x{geometry.in_hw[1]} input -> "
                     f"{geometry.out_hw[0]}x{geometry.out_hw[1]} output\n"
                     f"corner read {inside[0, 0]}x, centre {inside.max()}x"
                     + (", red 0 = never read" if (inside == 0).any() else ""), fontsize=9)
    from matplotlib.ticker import MaxNLocator
    fig.colorbar(artist, ax=fig.axes, shrink=0.8, label="windows reading the pixel",
                 ticks=MaxNLocator(integer=True))
    kh, kw = shapes.to_pair(kernel_size, "kernel_size", "plot_border_effect")
    sh, sw = shapes.to_pair(strides, "strides", "plot_border_effect")
    note = "grey cells = zero padding" if any(
        any(sum(g.pads, ())) for _, g in panels) else "borders are read less often"
    fig.suptitle(f"How often each pixel is used by a {kh}x{kw} window, stride "
                 f"{sh if sh == sw else (sh, sw)} ({note})", fontsize=10)
    return _mpl.finish(fig, path)
