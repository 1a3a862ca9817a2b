"""Feature maps: what each channel of a layer's output looks like for one image."""
from __future__ import annotations

import numpy as np

from ..errors import ConvkitError, ShapeError
from . import _mpl
from ._images import display_image, load_image

__all__ = ["plot_feature_maps", "layer_output"]

_CONV_NAMES = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose")


def _class_names(obj) -> list[str]:
    return [cls.__name__ for cls in type(obj).__mro__]


def _is_model(obj) -> bool:
    return hasattr(obj, "layers") and hasattr(obj, "get_layer")


def _input_data_format(model_or_layer) -> str:
    """The layout the model (or layer) reads images in: the ``data_format`` of the first
    layer that has one."""
    layers = model_or_layer.layers if _is_model(model_or_layer) else [model_or_layer]
    for layer in layers:
        data_format = getattr(layer, "data_format", None)
        if data_format in ("channels_last", "channels_first"):
            return data_format
    return "channels_last"


def _default_layer(model) -> str:
    for layer in model.layers:
        if any(name in _CONV_NAMES for name in _class_names(layer)):
            return layer.name
    raise ConvkitError("plot_feature_maps: the model has no convolution layer; pass layer=")


def layer_output(model, x: np.ndarray, layer: str) -> np.ndarray:
    """Run ``model`` on the batch ``x`` up to and including the layer named ``layer``
    (inference mode) and return that layer's output.

    A Sequential model runs its layers in order and stops there; a functional model is cut
    into a sub-model from its inputs to that layer's output.
    """
    names = [lay.name for lay in model.layers]
    if layer not in names:
        raise ConvkitError(f"plot_feature_maps: the model has no layer {layer!r}; its layers "
                           f"are {', '.join(names)}")
    if "Sequential" in _class_names(model):
        out = x
        for lay in model.layers:
            if "InputLayer" not in _class_names(lay):
                out = lay(out, training=False)
            if lay.name == layer:
                return np.asarray(out)
    from ..models import Model
    target = _output_tensor(model, model.get_layer(layer))
    sub_model = Model(model.inputs if len(model.inputs) > 1 else model.inputs[0], target)
    return np.asarray(sub_model(x, training=False))


def _output_tensor(model, layer):
    """The symbolic tensor ``layer`` produces in a functional ``model`` (walking back from
    the model's outputs)."""
    stack, seen = list(model.outputs), set()
    while stack:
        tensor = stack.pop()
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        if tensor.layer is layer:
            return tensor
        stack.extend(tensor.inputs)
    raise ConvkitError(f"plot_feature_maps: layer {layer.name!r} does not feed the outputs of "
                       f"model {model.name!r}")


def plot_feature_maps(model_or_layer, image, layer: str | None = None, path=None,
                      cols: int | None = None, shared_scale: bool = False,
                      show_input: bool = True, max_channels: int = 64, cmap: str = "viridis"):
    """Draw every channel of a layer's output for one image, with the input beside them.

    ``model_or_layer`` is a layer (run on the image directly) or a model with ``layer`` the
    name of one of its layers (default: the first convolution). ``image`` is ``(H, W)``,
    ``(H, W, C)`` or ``(1, H, W, C)`` matching the model's input (channels last; it is
    transposed for a ``channels_first`` model), a file path or ``"sample:china"``. The output ``(1, H_out, W_out, C_out)`` gives one panel per channel
    (the first ``max_channels``), each panel labelled ``"channel c"``; with
    ``shared_scale=True`` all panels share one colour scale and one colorbar, otherwise each
    is stretched to its own range (printed under it). Returns the Figure; writes a PNG to
    ``path`` if given.

    Example::

        fig = plot_feature_maps(model, x_test[0], layer="conv2d", path="maps.png")
    """
    where = "plot_feature_maps"
    img = load_image(image, where)                              # (H, W, C)
    x = img[None]                                                # (1, H, W, C)
    if _input_data_format(model_or_layer) == "channels_first":
        x = x.transpose(0, 3, 1, 2)                              # (1, C, H, W)
    if _is_model(model_or_layer):
        layer = layer or _default_layer(model_or_layer)
        maps = layer_output(model_or_layer, x, layer)
        title_layer = model_or_layer.get_layer(layer)
    else:
        title_layer = model_or_layer
        maps = np.asarray(model_or_layer(x, training=False))
    if maps.ndim != 4:
        raise ShapeError(f"{where}: layer {title_layer.name!r} gives output shape {maps.shape}; "
                         f"feature maps need a 4-D (1, height, width, channels) output")
    cfg = title_layer.get_config() if hasattr(title_layer, "get_config") else {}
    if cfg.get("data_format") == "channels_first":
        maps = maps.transpose(0, 2, 3, 1)                        # (1, H_out, W_out, C_out)
    channels = maps.shape[3]
    shown = min(channels, max_channels)
    rows, ncols = _mpl.grid_shape(shown, cols)
    input_width = min(rows, 3) if show_input else 0
    fig = _mpl.new_figure(1.25 * (ncols + input_width) + 0.6, 1.35 * rows + 0.8)
    grid = fig.add_gridspec(rows, ncols + (1 if show_input else 0),
                            width_ratios=([input_width] if show_input else []) + [1] * ncols)
    if show_input:
        ax = fig.add_subplot(grid[:, 0])
        shown_img, img_cmap = display_image(img)
        ax.imshow(shown_img, cmap=img_cmap)
        ax.set_title(f"input\n{img.shape[0]}x{img.shape[1]}x{img.shape[2]}", fontsize=10)
        ax.set_label("input")
        _mpl.hide_ticks(ax)
    lo, hi = float(maps[0, :, :, :shown].min()), float(maps[0, :, :, :shown].max())
    image_artist = None
    for c in range(shown):
        ax = fig.add_subplot(grid[c // ncols, c % ncols + (1 if show_input else 0)])
        panel = maps[0, :, :, c]
        if shared_scale:
            image_artist = ax.imshow(panel, cmap=cmap, vmin=lo, vmax=hi)
            ax.set_title(f"channel {c}", fontsize=8)
        else:
            ax.imshow(panel, cmap=cmap)
            low, high = float(panel.min()), float(panel.max())
            span = f"all {low:.2g}" if low == high else f"{low:.2g} .. {high:.2g}"
            ax.set_title(f"channel {c}\n{span}", fontsize=7)
        ax.set_label(f"channel {c}")
        _mpl.hide_ticks(ax)
    if shared_scale and image_artist is not None:
        fig.colorbar(image_artist, ax=fig.axes[1 if show_input else 0:], shrink=0.8,
                     label="activation")
    more = f" (first {shown} of {channels})" if shown < channels else ""
    scale = "one colour scale for all" if shared_scale else \
        "each panel stretched to its own range, dark = low, yellow = high"
    fig.suptitle(f"Feature maps of {title_layer.name!r} ({type(title_layer).__name__}): "
                 f"{channels} channels of {maps.shape[1]}x{maps.shape[2]}{more}\n{scale}",
                 fontsize=11)
    return _mpl.finish(fig, path)
