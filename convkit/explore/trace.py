"""One image through a model, layer by layer, as the explorer page draws it.

:class:`Explorer` wraps a built Sequential or functional model with one channels_last image
input. It gives

- :meth:`Explorer.model_json`: the layers with their explain cards (from
  :func:`convkit.explain.explain_model`), their windows, and the receptive-field maps;
- :meth:`Explorer.run`: the model's own activations for one image (every layer called in
  inference mode, exactly as ``predict`` does);
- :meth:`Explorer.trace_json`: those activations as pictures (each channel quantised to
  bytes with its value range), Dense outputs as bars and the softmax arithmetic;
- :meth:`Explorer.cell_json`: the numbers behind one output cell of a convolution or
  pooling layer: its input patch, the kernel per input channel, the products, their sum,
  the bias, the pre-activation and the activation, next to the value the model computed.

Levels number the feature maps: level 0 is the input, level ``i`` the output of the ``i``-th
layer of ``model.layers`` (an ``InputLayer`` aside); each level records the levels it reads
(``parents``: the one before it in a Sequential model, the graph's edges in a functional one).

Receptive fields are linear maps: output cell ``o`` of level ``L`` reads rows
``o*jump + lo .. o*jump + hi`` of an earlier level ``j`` (clipped to the map). Through a
window layer with stride ``s``, pad ``before`` and effective kernel ``k_eff``::

    jump' = jump * s,  lo' = lo * s - before,  hi' = hi * s - before + k_eff - 1

The page draws that box clipped to each map: the receptive field of :mod:`convkit.shapes`
(the size ``summary --explain`` prints), which spans the holes a dilated kernel skips.

Example: MNIST convnet, level 2 (13x13 after the first pool), row 0 reads rows 0..1 of the
26x26 conv output and rows 0..3 of the 28x28 input: ``jump = 2, lo = 0, hi = 3``.
"""
from __future__ import annotations

import base64

import numpy as np

from .. import explain
from ..errors import ConvkitError
from ..ops.padding import pad_nhwc

__all__ = ["Explorer", "Trace", "encode_maps"]

_WINDOW_KINDS = explain._CONV_LAYERS + explain._POOL_LAYERS
#: Layers that keep every pixel where it is (a receptive field passes through unchanged).
_PIXELWISE = ("Activation", "ReLU", "LeakyReLU", "PReLU", "Dropout", "BatchNormalization",
              "LayerNormalization", "GaussianNoise", "SpatialDropout2D", "Rescaling",
              "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation",
              "RandomContrast")
#: Vectors up to this long (class scores) are drawn as bars with their values; longer ones
#: (Flatten, hidden Dense layers) as a strip of colours with their range.
_BARS_UP_TO = 32


def _class_names(obj) -> list[str]:
    return [cls.__name__ for cls in type(obj).__mro__]


def encode_maps(maps: np.ndarray, value_range=None) -> dict:
    """Quantise ``(H, W, C)`` feature maps to one byte per value, channel by channel.

    Each channel spans its own range, or ``value_range=(lo, hi)`` for all. Returns ``{"height", "width", "channels", "lo", "hi", "data"}``: ``data`` is base64 of
    ``C*H*W`` bytes in channel-major order, byte ``q`` meaning ``lo + q/255*(hi - lo)`` of
    that channel (all 0 where ``lo == hi``).

    >>> encode_maps(np.array([[[0.0], [2.0]]]))["data"]
    'AP8='
    """
    maps = np.asarray(maps, dtype=np.float32)
    h, w, c = maps.shape
    if value_range is None:
        lo = maps.min(axis=(0, 1))                               # (C,)
        hi = maps.max(axis=(0, 1))                               # (C,)
    else:
        lo = np.full(c, value_range[0], np.float32)
        hi = np.full(c, value_range[1], np.float32)
        maps = np.clip(maps, lo, hi)
    span = np.where(hi > lo, hi - lo, 1.0).astype(np.float32)
    scaled = (maps - lo) * (255.0 / span)                        # (H, W, C) in 0..255
    quantised = np.rint(scaled).astype(np.uint8).transpose(2, 0, 1)   # (C, H, W)
    return {"height": int(h), "width": int(w), "channels": int(c),
            "lo": [float(v) for v in lo], "hi": [float(v) for v in hi],
            "data": base64.b64encode(np.ascontiguousarray(quantised).tobytes()).decode("ascii")}


def _number(value) -> float | None:
    """A JSON number, ``None`` for -inf/nan (padding of max pooling)."""
    value = float(value)
    return value if np.isfinite(value) else None


def _grid(values: np.ndarray) -> list:
    """A 2-D array as nested lists of JSON numbers."""
    return [[_number(v) for v in row] for row in np.asarray(values)]


class Trace:
    """The activations of one image: ``levels[i]`` is level ``i`` as a float32 batch of one
    (``levels[0]`` the input ``(1, H, W, C)``)."""

    def __init__(self, image, levels: list[np.ndarray]):
        self.image = image
        self.levels = levels

    def __repr__(self) -> str:
        return f"Trace({self.image.name!r}, {len(self.levels)} levels)"


class Explorer:
    """The explorer's view of one model (see the module docstring).

    ``model`` is a built Sequential or functional model whose one input is
    ``(None, H, W, C)`` channels_last; ``title`` names it on the page; ``notes`` are shown
    under the title (e.g. "untrained weights"); ``class_names`` label the outputs.
    """

    def __init__(self, model, title: str | None = None, notes=(), class_names=None):
        shape = model.input_shape
        if isinstance(shape, list) or len(shape) != 4 or None in tuple(shape)[1:]:
            raise ConvkitError(f"explore: model {model.name!r} takes inputs of shape "
                               f"{shape}; the explorer needs images (None, height, width, "
                               f"channels) of a fixed size")
        for layer in model.layers:
            if getattr(layer, "data_format", "channels_last") == "channels_first":
                raise ConvkitError(f"explore: layer {layer.name!r} is channels_first; the "
                                   f"explorer draws channels_last models")
        self.model = model
        self.title = title or model.name
        self.notes = list(notes)
        self.class_names = class_names
        self.input_shape = tuple(shape)
        rows = explain.explain_model(model)
        self.totals = explain.explain_totals(rows)
        kept = [(layer, row) for layer, row in zip(model.layers, rows)
                if "InputLayer" not in _class_names(layer)]
        self.layers = [layer for layer, _ in kept]
        self.rows = [row for _, row in kept]
        self.parents = self._parent_levels(model)
        outputs = getattr(model, "outputs", None)
        output_layer = outputs[0].layer if outputs and "Sequential" not in _class_names(model) \
            else self.layers[-1]
        self.output_level = next(level for level, layer in enumerate(self.layers, start=1)
                                 if layer is output_layer)
        self._geometries = {}
        for index, layer in enumerate(self.layers, start=1):
            kind = explain._kind(layer)
            if kind in _WINDOW_KINDS:
                self._geometries[index] = explain._geometry_of(layer, kind)[0]

    def __repr__(self) -> str:
        return f"Explorer({self.title!r}, {len(self.layers)} layers)"

    def _parent_levels(self, model) -> dict[int, list[int]]:
        """``{level: [levels it reads]}``: the previous level in a chain, the graph's edges
        (an ``InputLayer`` being level 0) in a functional model."""
        graph = explain._parent_layers(model, list(model.layers))
        if graph is None:
            return {level: [level - 1] for level in range(1, len(self.layers) + 1)}
        level_of = {id(layer): level for level, layer in enumerate(self.layers, start=1)}
        for layer in model.layers:
            if "InputLayer" in _class_names(layer):
                level_of[id(layer)] = 0
        parents = {}
        for level, layer in enumerate(self.layers, start=1):
            sources = [level_of[id(p)] for p in graph.get(id(layer), []) if id(p) in level_of]
            if not sources or max(sources) >= level:
                raise ConvkitError(f"explore: cannot place layer {layer.name!r} of model "
                                   f"{model.name!r} after the layers it reads")
            parents[level] = sources
        return parents

    # -------------------------------------------------------------- the model, no image
    def _window_json(self, index: int) -> dict | None:
        geometry = self._geometries.get(index)
        if geometry is None:
            return None
        layer = self.layers[index - 1]
        kind = explain._kind(layer)
        return {"op": "conv" if kind in explain._CONV_LAYERS else
                ("max" if kind == "MaxPooling2D" else "avg"),
                "input": list(geometry.in_hw), "kernel": list(geometry.kernel),
                "strides": list(geometry.strides), "dilation": list(geometry.dilation),
                "pads": [list(p) for p in geometry.pads], "extra": list(geometry.extra),
                "padding": geometry.padding if isinstance(geometry.padding, str)
                else [list(p) for p in geometry.padding],
                "ceil_mode": bool(getattr(layer, "ceil_mode", False)),
                "output": list(geometry.out_hw)}

    def _spatial_hw(self, level: int):
        shape = self.input_shape if level == 0 else self.rows[level - 1]["output_shape"]
        return tuple(shape[1:3]) if shape is not None and len(shape) == 4 else None

    def receptive_maps(self, level: int) -> list[dict]:
        """How an output cell of ``level`` maps onto each earlier level (nearest first):
        ``[{"level", "jump", "lo", "hi"}]`` with ``[height, width]`` entries; stops at a
        layer that moves pixels in another way (Flatten, UpSampling, ...)."""
        if self._spatial_hw(level) is None:
            return []
        jump, lo, hi = [1, 1], [0, 0], [0, 0]
        maps = []
        index = level
        while index > 0 and len(self.parents[index]) == 1:     # a merge has no single field
            layer, source = self.layers[index - 1], self.parents[index][0]
            geometry = self._geometries.get(index)
            if geometry is not None:
                for axis in range(2):
                    s, before = geometry.strides[axis], geometry.pads[axis][0]
                    k_eff = geometry.effective_kernel[axis]
                    lo[axis] = lo[axis] * s - before
                    hi[axis] = hi[axis] * s - before + k_eff - 1
                    jump[axis] *= s
            elif explain._kind(layer) in ("ZeroPadding2D", "Cropping2D"):
                # output pixel r is input pixel r - top (padding) or r + top (cropping)
                key, sign = (("padding", -1) if explain._kind(layer) == "ZeroPadding2D"
                             else ("cropping", 1))
                (top, _), (left, _) = layer.get_config()[key]
                lo = [lo[0] + sign * top, lo[1] + sign * left]
                hi = [hi[0] + sign * top, hi[1] + sign * left]
            elif not (any(n in _PIXELWISE for n in _class_names(layer))
                      and self._spatial_hw(source) == self._spatial_hw(index)):
                break
            if self._spatial_hw(source) is None:
                break
            maps.append({"level": source, "jump": list(jump), "lo": list(lo), "hi": list(hi)})
            index = source
        return maps

    def model_json(self) -> dict:
        """Everything about the model the page needs before any image."""
        layers = [{"level": 0, "name": "input", "class": "Input",
                   "output_shape": [None, *self.input_shape[1:]], "explain": None,
                   "window": None, "receptive": []}]
        for index, (layer, row) in enumerate(zip(self.layers, self.rows), start=1):
            layers.append({"level": index, "name": layer.name, "class": row["class"],
                           "output_shape": row["output_shape"], "explain": row,
                           # the card's text; its warnings are shown highlighted beside it
                           "explain_text": explain.format_explanation(
                               [{**row, "warnings": []}]).split("\n\nTotal")[0],
                           "window": self._window_json(index),
                           "parents": self.parents[index],
                           "activation": getattr(getattr(layer, "activation", None), "name",
                                                 None),
                           "receptive": self.receptive_maps(index)})
        return {"title": self.title, "notes": self.notes, "input_shape": list(self.input_shape),
                "layers": layers, "totals": self.totals, "class_names": self.class_names}

    # -------------------------------------------------------------- one image
    def run(self, image) -> Trace:
        """The model's own activations for ``image`` (a :class:`~convkit.explore.images.
        ModelImage` fitted to the input), every layer in inference mode."""
        x = np.asarray(image.pixels, dtype=np.float32)[None]          # (1, H, W, C)
        if x.shape[1:] != self.input_shape[1:]:
            raise ConvkitError(f"explore: image {image.name!r} has shape {x.shape[1:]}, the "
                               f"model takes {self.input_shape[1:]}")
        levels = [x]
        for level, layer in enumerate(self.layers, start=1):
            inputs = [levels[source] for source in self.parents[level]]
            levels.append(np.asarray(layer(inputs[0] if len(inputs) == 1 else inputs,
                                           training=False)))
        return Trace(image, levels)

    def trace_json(self, trace: Trace) -> dict:
        """The activations of ``trace`` as the page draws them."""
        levels = []
        for level, values in enumerate(trace.levels):
            entry = {"level": level, "shape": list(values.shape[1:])}
            if values.ndim == 4:
                # the input as the model sees it, on its 0..1 scale; feature maps stretched
                entry["maps"] = encode_maps(values[0], (0.0, 1.0) if level == 0 else None)
            elif values.ndim == 2 and values.shape[1] <= _BARS_UP_TO:
                entry["values"] = [float(v) for v in values[0]]
                if level > 0:
                    entry.update(self._dense_arithmetic(trace, level))
            elif values.ndim == 2:
                entry["strip"] = encode_maps(values[0][None, :, None])    # (1, units, 1)
            levels.append(entry)
        return {"image": {"name": trace.image.name, "note": trace.image.note,
                          "warnings": trace.image.warnings},
                "levels": levels, "prediction": self._prediction(trace)}

    def _prediction(self, trace: Trace) -> list[dict] | None:
        out = trace.levels[self.output_level]
        if out.ndim != 2:
            return None
        order = np.argsort(-out[0], kind="stable")[:5]
        return [{"index": int(i), "label": self._label(int(i)), "value": float(out[0, i])}
                for i in order]

    def _label(self, index: int) -> str:
        names = self.class_names
        if names and index < len(names) and names[index] != str(index):
            return str(names[index])
        return f"class {index}"

    def _dense_arithmetic(self, trace: Trace, level: int) -> dict:
        """For a Dense layer: its logits ``x @ kernel + bias`` and, after a softmax, each
        step from logits to probabilities, beside the model's own output."""
        from ..ops import dense
        layer = self.layers[level - 1]
        x = trace.levels[self.parents[level][0]]
        if explain._kind(layer) != "Dense" or x.ndim != 2:
            return {}
        weights = {w.name.split("/")[-1]: w.value for w in layer.weights}
        kernel = next(v for k, v in weights.items() if k.endswith("kernel"))
        bias = next((v for k, v in weights.items() if k.endswith("bias")), None)
        logits = dense(x, kernel, bias)[0].astype(np.float64)                 # (units,)
        result = {"logits": [float(v) for v in logits],
                  "activation": layer.activation.name}
        if layer.activation.name == "softmax":
            shifted = logits - logits.max()
            exps = np.exp(shifted)
            result["softmax"] = {"max_logit": float(logits.max()),
                                 "exps": [float(v) for v in exps],
                                 "sum": float(exps.sum()),
                                 "probabilities": [float(v) for v in exps / exps.sum()]}
        return result

    # -------------------------------------------------------------- one cell
    def cell_json(self, trace: Trace, level: int, row: int, col: int, channel: int) -> dict:
        """The arithmetic behind output ``(row, col, channel)`` of the convolution or pooling
        layer producing ``level``, from that layer's real input and weights.

        Conv: ``patch`` and ``kernel`` per input channel (``(kh, kw)`` grids; padded cells
        flagged in ``padded``), ``products``, each channel's ``sums``, the ``sum``, the
        ``bias``, ``pre_activation = sum + bias``, ``activation`` = the layer's activation of
        it, and ``model_value``: what the model computed for that cell. Pooling: the
        window, its max (with ``argmax``) or its average over the counted cells.
        """
        geometry = self._geometries.get(level)
        if geometry is None:
            raise ConvkitError(f"explore: level {level} is not the output of a convolution or "
                               f"pooling layer")
        out = trace.levels[level]
        _, out_h, out_w, out_c = out.shape
        if not (0 <= row < out_h and 0 <= col < out_w and 0 <= channel < out_c):
            raise ConvkitError(f"explore: cell ({row}, {col}, channel {channel}) is outside "
                               f"the {out_h}x{out_w}x{out_c} output of level {level}")
        layer = self.layers[level - 1]
        kind = explain._kind(layer)
        x = trace.levels[self.parents[level][0]]                      # (1, H, W, C)
        (top, bottom), (left, right) = geometry.pads
        pads = ((top, bottom + geometry.extra[0]), (left, right + geometry.extra[1]))
        real = pad_nhwc(np.ones((1, *x.shape[1:3], 1), np.float32), pads)   # 1 = input
        rows, cols = self._window_rows_cols(geometry, row, col)
        inside = real[0][np.ix_(rows, cols)][:, :, 0] > 0              # (kh, kw)
        result = {"level": level, "layer": layer.name, "class": type(layer).__name__,
                  "row": row, "col": col, "channel": channel,
                  "input_rows": [r - top for r in rows], "input_cols": [c - left for c in cols],
                  "padded": (~inside).tolist(),
                  "model_value": float(out[0, row, col, channel])}
        if kind in explain._CONV_LAYERS:
            result.update(self._conv_cell(layer, x, pads, rows, cols, channel))
        else:
            result.update(self._pool_cell(layer, kind, x, pads, rows, cols, channel, inside))
        result["difference"] = abs(result["activation"] - result["model_value"])
        return result

    @staticmethod
    def _window_rows_cols(geometry, row: int, col: int):
        """Padded-input rows and columns read by output ``(row, col)``."""
        (sh, sw), (dh, dw), (kh, kw) = geometry.strides, geometry.dilation, geometry.kernel
        return ([row * sh + i * dh for i in range(kh)], [col * sw + j * dw for j in range(kw)])

    def _conv_cell(self, layer, x, pads, rows, cols, channel) -> dict:
        weights = {w.name.split("/")[-1]: w.value for w in layer.weights}
        kernel = np.asarray(layer._op_kernel(next(v for k, v in weights.items()
                                                  if k.endswith("kernel"))))
        per_group = kernel.shape[2]                                   # (kh, kw, C/groups, F)
        group = channel // (kernel.shape[3] // (x.shape[3] // per_group))
        padded = pad_nhwc(x, pads, layer.padding_mode)                # (1, Hp, Wp, C)
        patch = padded[0][np.ix_(rows, cols)][:, :, group * per_group:(group + 1) * per_group]
        weights_c = kernel[:, :, :, channel]                          # (kh, kw, C/groups)
        products = patch.astype(np.float64) * weights_c.astype(np.float64)
        sums = products.sum(axis=(0, 1))                              # (C/groups,)
        bias = float(weights["bias"][channel]) if layer.use_bias else 0.0
        total = float(sums.sum())
        pre = np.asarray([[[[total + bias]]]], dtype=np.float32)
        activation = float(np.asarray(layer.activation.forward(pre)).ravel()[0])
        return {"op": "conv", "in_channels": [group * per_group + i for i in range(per_group)],
                "patch": [_grid(patch[:, :, i]) for i in range(per_group)],
                "kernel": [_grid(weights_c[:, :, i]) for i in range(per_group)],
                "products": [_grid(products[:, :, i]) for i in range(per_group)],
                "channel_sums": [float(v) for v in sums], "sum": total, "bias": bias,
                "pre_activation": total + bias, "activation_name": layer.activation.name,
                "activation": activation}

    @staticmethod
    def _pool_cell(layer, kind, x, pads, rows, cols, channel, inside) -> dict:
        is_max = kind == "MaxPooling2D"
        padded = pad_nhwc(x[..., channel:channel + 1], pads,
                          value=-np.inf if is_max else 0.0)
        window = padded[0][np.ix_(rows, cols)][:, :, 0].astype(np.float64)   # (kh, kw)
        if is_max:
            flat = int(np.argmax(window))
            return {"op": "max", "window": _grid(window),
                    "argmax": [flat // window.shape[1], flat % window.shape[1]],
                    "activation": float(window.max())}
        counted = window.size if getattr(layer, "count_include_pad", False) else \
            int(inside.sum())
        total = float(window[inside].sum())
        return {"op": "avg", "window": _grid(window), "sum": total, "count": counted,
                "activation": total / counted}

    def argmax_cells(self, trace: Trace) -> list[tuple[int, int, int, int]]:
        """``(level, row, col, channel)`` of the strongest cell of every channel of every
        window layer: the cells an exported page carries the arithmetic of."""
        cells = []
        for level in sorted(self._geometries):
            values = trace.levels[level][0]                           # (H, W, C)
            for channel in range(values.shape[2]):
                flat = int(np.argmax(values[:, :, channel]))
                cells.append((level, flat // values.shape[1], flat % values.shape[1], channel))
        return cells
