"""Pictures that explain a network: feature maps, filters, the classic filter bank, the border
effect and training curves.

Matplotlib is imported only when a picture is drawn (the Agg backend where there is no
display). Every function returns a ``matplotlib.figure.Figure`` and, given ``path=``, writes
it as a PNG atomically.

    import convkit as ck
    ck.viz.plot_border_effect(5, 3, compare=["same"], path="border.png")
"""
from __future__ import annotations

from .border import plot_border_effect, usage_counts
from .curves import plot_history, read_history
from .featuremaps import layer_output, plot_feature_maps
from .filters import layer_kernel, plot_filter_gallery, plot_filters
from .seed import seed_example_figure, seed_example_layer, seed_example_maps

__all__ = ["plot_feature_maps", "layer_output", "plot_filters", "layer_kernel",
           "plot_filter_gallery", "plot_border_effect", "usage_counts", "plot_history",
           "read_history", "seed_example_figure", "seed_example_layer", "seed_example_maps"]
