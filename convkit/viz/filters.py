"""Pictures of kernels: a layer's learned filters, and the classic filter bank at work."""
from __future__ import annotations

import numpy as np

from ..errors import ConvkitError, ShapeError
from . import _mpl
from ._images import load_image, to_gray

__all__ = ["plot_filters", "plot_filter_gallery", "layer_kernel"]


def layer_kernel(layer_or_model) -> tuple[np.ndarray, str]:
    """``(kernel, name)``: the ``(kh, kw, in, filters)`` kernel of a conv layer, of the first
    conv layer of a model, or an array given directly."""
    if isinstance(layer_or_model, np.ndarray):
        kernel, name = layer_or_model, "kernel"
    else:
        layer = layer_or_model
        if hasattr(layer_or_model, "layers"):
            layer = next((lay for lay in layer_or_model.layers
                          if any(w.name.endswith("kernel") and np.ndim(w.value) == 4
                                 for w in getattr(lay, "weights", []))), None)
            if layer is None:
                raise ConvkitError("plot_filters: the model has no convolution layer")
        kernels = [w.value for w in getattr(layer, "weights", [])
                   if w.name.endswith("kernel") and np.ndim(w.value) == 4]
        if not kernels:
            raise ConvkitError(f"plot_filters: layer {getattr(layer, 'name', layer)!r} has no "
                               f"4-D convolution kernel (is it built?)")
        kernel, name = kernels[0], layer.name
    if kernel.ndim != 4:
        raise ShapeError(f"plot_filters: expected a (kh, kw, in_channels, filters) kernel, "
                         f"got shape {kernel.shape}")
    return np.asarray(kernel), name


def plot_filters(layer, path=None, in_channel: int | None = None, rgb: bool | None = None,
                 cols: int | None = None, max_filters: int = 64):
    """Draw a convolution layer's kernels ``(kh, kw, in, filters)`` as a grid, one panel per
    filter (the first ``max_filters``), each labelled ``"filter f"``.

    With 3 input channels (a first layer on colour images) each filter is shown as a colour
    patch, ``0.5 + w / (2 max|w|)`` per filter, so mid-grey is a zero weight (``rgb=False``
    turns that off). Otherwise the panels show input channel ``in_channel`` (default 0) on one
    shared blue-white-red scale centred on zero, with a colorbar. ``layer`` may also be a
    model (its first conv layer) or a kernel array. Returns the Figure; writes ``path``.
    """
    kernel, name = layer_kernel(layer)
    kh, kw, in_channels, filters = kernel.shape
    rgb = (in_channels == 3 and in_channel is None) if rgb is None else bool(rgb)
    if rgb and in_channels != 3:
        raise ShapeError(f"plot_filters: rgb=True needs 3 input channels, kernel has "
                         f"{in_channels} (shape {kernel.shape})")
    channel = 0 if in_channel is None else int(in_channel)
    if not rgb and not 0 <= channel < in_channels:
        raise ShapeError(f"plot_filters: in_channel={channel} is out of range for "
                         f"{in_channels} input channels")
    shown = min(filters, max_filters)
    rows, ncols = _mpl.grid_shape(shown, cols)
    fig = _mpl.new_figure(1.1 * ncols + (0.9 if not rgb else 0.3), 1.15 * rows + 0.9)
    limit = float(np.abs(kernel).max()) or 1.0
    artist = None
    for f in range(shown):
        ax = fig.add_subplot(rows, ncols, f + 1)
        if rgb:
            patch = kernel[:, :, :, f]
            scale = float(np.abs(patch).max()) or 1.0
            ax.imshow(0.5 + patch / (2 * scale), interpolation="nearest")
        else:
            artist = ax.imshow(kernel[:, :, channel, f], cmap="RdBu_r", vmin=-limit,
                               vmax=limit, interpolation="nearest")
        ax.set_title(f"filter {f}", fontsize=8)
        ax.set_label(f"filter {f}")
        _mpl.hide_ticks(ax)
    if artist is not None:
        fig.colorbar(artist, ax=fig.axes, shrink=0.8, label="weight (red +, blue -)")
    more = f", first {shown} of {filters}" if shown < filters else ""
    if rgb:
        how = "shown in colour: mid-grey = 0, bright = positive weights (each filter scaled)"
    else:
        how = (f"input channel {channel} of {in_channels}" if in_channels > 1
               else "one input channel") + ", white = 0"
    fig.suptitle(f"Filters of {name!r}: {filters} kernels of {kh}x{kw}x{in_channels}{more}\n"
                 f"{how}", fontsize=10)
    return _mpl.finish(fig, path)


def kernel_bank_takes_size(kernel_bank, name: str) -> bool:
    """Whether filter ``name`` of :mod:`convkit.filters` can be made at another size."""
    try:
        kernel_bank.get(name, 5)
    except ConvkitError:
        return False
    return True


def plot_filter_gallery(image, names=None, size: int | None = None, path=None,
                        cols: int | None = None, panel_size: float = 2.6):
    """Run one image through each classic filter of :mod:`convkit.filters` and show the results.

    The image (array, path or ``"sample:china"``) is turned to grey ``(H, W)`` and convolved
    ('same' padding) with each kernel ``filters.get(name, size)`` (for the whole bank,
    ``names=None``, the fixed 3x3 kernels ignore ``size``; an entry of ``names`` may also be
    a ``(name, size)`` pair); every panel, labelled with
    the filter's name, shows the response with its kernel drawn in the corner.

    ``size=None`` scales the filters that take a size to the image, ``2*(min(H, W) // 80) + 1``
    (11 for a 427x640 photograph, at least the filter's default): a 3x3 blur or line on
    a large photograph changes too few pixels to see.

    Responses of edge detectors (kernels summing to zero) are drawn on a scale centred on
    zero, so mid-grey means "no edge"; image-like results (kernels summing to one: identity,
    blurs, sharpen, emboss) on the input's own grey scale, so sharpening shows as crisper
    edges rather than a washed-out stretch; the others (line detectors) stretched between
    their 0.5 and 99.5 percentiles. ``panel_size`` is a panel's width in inches. Returns
    the Figure; writes ``path`` if given.
    """
    from .. import filters as kernel_bank
    from ..ops import conv2d
    where = "plot_filter_gallery"
    gray = to_gray(load_image(image, where)).astype(np.float32)         # (H, W)
    whole_bank = names is None
    names = list(kernel_bank.names() if whole_bank else names)
    if not names:
        raise ConvkitError(f"{where}: names is empty")
    kernels = []
    scaled_size = 2 * (min(gray.shape) // 80) + 1        # for size=None: grows with the image
    for index, entry in enumerate(names):
        name, own_size = (entry, size) if isinstance(entry, str) else tuple(entry)
        if own_size is None and isinstance(entry, str) and scaled_size > 3:
            default = np.asarray(kernel_bank.get(name)).shape[0]
            if kernel_bank_takes_size(kernel_bank, name) and scaled_size > default:
                own_size = scaled_size
        names[index] = name
        try:
            kernels.append(np.asarray(kernel_bank.get(name, own_size), dtype=np.float32))
        except ConvkitError:
            if not whole_bank or own_size is None:
                raise
            # The whole bank at a size: fixed 3x3 kernels (Sobel, ...) keep their own size.
            kernels.append(np.asarray(kernel_bank.get(name), dtype=np.float32))
    input_lo, input_hi = (float(v) for v in np.percentile(gray, [0.5, 99.5]))
    rows, ncols = _mpl.grid_shape(len(names) + 1, cols)
    aspect = gray.shape[0] / gray.shape[1]
    panel = float(panel_size)
    fig = _mpl.new_figure(panel * ncols, (panel * aspect + 0.45) * rows + 0.7)
    ax = fig.add_subplot(rows, ncols, 1)
    ax.imshow(gray, cmap="gray")
    ax.set_title(f"input (grey) {gray.shape[0]}x{gray.shape[1]}", fontsize=9)
    ax.set_label("input")
    _mpl.hide_ticks(ax)
    for index, (name, kernel) in enumerate(zip(names, kernels)):
        if kernel.ndim != 2:
            raise ShapeError(f"{where}: filter {name!r} has shape {kernel.shape}; expected 2-D")
        response = conv2d(gray[None, :, :, None], kernel[:, :, None, None],
                          padding="same")[0, :, :, 0]                    # (H, W)
        ax = fig.add_subplot(rows, ncols, index + 2)
        if abs(float(kernel.sum())) < 1e-6:
            # An edge detector (weights sum to 0): flat regions give 0, shown mid-grey.
            limit = float(np.percentile(np.abs(response), 99.5)) or \
                float(np.abs(response).max()) or 1.0
            ax.imshow(response, cmap="gray", vmin=-limit, vmax=limit)
        elif abs(float(kernel.sum()) - 1.0) < 1e-6:
            # Image-like (weights sum to 1): the input's grey scale, overshoots clipped.
            ax.imshow(response, cmap="gray", vmin=input_lo, vmax=max(input_hi, input_lo + 1e-6))
        else:
            # An image-like result (blur, sharpen, ...): clip the extreme 0.5 % for contrast.
            lo, hi = np.percentile(response, [0.5, 99.5])
            ax.imshow(response, cmap="gray", vmin=float(lo), vmax=float(max(hi, lo + 1e-6)))
        kh, kw = kernel.shape
        ax.set_title(f"{name} ({kh}x{kw})", fontsize=9)
        ax.set_label(name)
        _mpl.hide_ticks(ax)
        inset = ax.inset_axes([0.0, 0.66, 0.34, 0.34])
        k_limit = float(np.abs(kernel).max()) or 1.0
        inset.imshow(kernel, cmap="RdBu_r", vmin=-k_limit, vmax=k_limit,
                     interpolation="nearest")
        inset.set_label(f"{name} kernel")
        _mpl.hide_ticks(inset)
    if len(names) == 1:
        kh, kw = kernels[0].shape
        head = (f"The {names[0]} filter ({kh}x{kw}) on one image: the image convolved with "
                f"the kernel in the corner")
    else:
        head = ("Classic filters on one image: each panel is the image convolved with the "
                "kernel in its corner")
    edges = any(abs(float(k.sum())) < 1e-6 for k in kernels)
    fig.suptitle(f"{head}\n(kernel: red = positive, blue = negative weight"
                 f"{'; edge responses: mid-grey = 0' if edges else ''})", fontsize=10)
    return _mpl.finish(fig, path)
