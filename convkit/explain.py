"""Explain a model layer by layer: the arithmetic behind every number of ``summary()``.

For each layer :func:`explain_model` reports the output shape, the padding actually applied,
the output-size formula with the numbers filled in, the parameter count broken down, the
multiply-accumulates (MACs) per sample, the receptive field and cumulative stride ("jump") of
the layer's output pixels, and a warning where the last window stops short of the input::

    conv2d (Conv2D)                                   -> (None, 24, 24, 32)
      padding      valid: top 0, bottom 0, left 0, right 0
      height/width floor((28 + 0 + 0 - 5) / 1) + 1 = 24
      params       5*5*1*32 + 32 = 832
      MACs         24*24 * 5*5*1*32 = 460,800
      receptive    5x5 input pixels, jump 1x1

The arithmetic itself lives in :mod:`convkit.shapes`; this module only calls it and writes
the numbers into formulas. :func:`explain_conv` and :func:`explain_pool` do the same for a
single window without a model (the ``convkit shape`` command).

Everything returned is JSON-serialisable (plain dicts, lists, ints, floats and strings).
"""
from __future__ import annotations

import math
import re
import textwrap
from fractions import Fraction

from . import shapes
from .errors import ConvkitError

__all__ = ["explain_model", "explain_totals", "explanation_dict", "format_explanation",
           "print_explanation", "explain_conv", "explain_pool", "format_window"]

# Layers whose output pixel sees the whole input.
_GLOBAL_LAYERS = ("Dense", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
                  "GlobalAveragePooling1D", "GlobalMaxPooling1D")
_CONV_LAYERS = ("Conv2D", "DepthwiseConv2D")
_POOL_LAYERS = ("MaxPooling2D", "AveragePooling2D")
# Sliding windows along the steps of (batch, steps, channels), run on the height-1 view.
_STEPS_WINDOWS = ("Conv1D", "MaxPooling1D", "AveragePooling1D")
# Layers after which an output position is no longer a pixel of the input grid.
_REGRID_LAYERS = ("Flatten", "Reshape", "Permute", "Lambda")


# ------------------------------------------------------------------------------ single window
def _as_hw(size, name: str, where: str) -> tuple[int, int]:
    return shapes.to_pair(tuple(size) if isinstance(size, list) else size, name, where)


def _axis_formula(n, k, s, d, before, after, out, mode, ceil_mode) -> str:
    """The output-size formula along one axis with the numbers filled in."""
    if mode == "same":
        return f"ceil({n} / {s}) = {out}"
    k_eff = d * (k - 1) + 1
    kernel = f"{k_eff}" if d == 1 else f"({d}*({k} - 1) + 1)"
    rounding = "ceil" if ceil_mode else "floor"
    text = f"{rounding}(({n} + {before} + {after} - {kernel}) / {s}) + 1"
    if ceil_mode and -(-(n + before + after - k_eff) // s) + 1 != out:
        text += " - 1 (the last window would start in the right padding)"
    return f"{text} = {out}"


def _same_pad_formula(n, k, s, d, before, after, out) -> str:
    k_eff = d * (k - 1) + 1
    return (f"max(({out} - 1)*{s} + {k_eff} - {n}, 0) = {before + after} "
            f"-> {before} before, {after} after")


def _dropped_input(geometry) -> tuple[int, int]:
    """Rows (bottom) and columns (right) of the real input that no window reads."""
    return tuple(max(geometry.dropped[axis] - geometry.pads[axis][1] - geometry.extra[axis], 0)
                 for axis in range(2))


def _window_info(geometry, where: str, ceil_mode: bool = False, steps: bool = False) -> dict:
    """Padding, formulas and dropped-input warnings of one resolved window. ``steps=True``
    describes a 1-D layer run on its height-1 view: only the width axis, named ``steps``."""
    (top, bottom), (left, right) = geometry.pads
    mode = geometry.padding if isinstance(geometry.padding, str) else "explicit"
    formulas, pad_formulas = {}, {}
    axes = ((1, "steps"),) if steps else tuple(enumerate(("height", "width")))
    for axis, axis_name in axes:
        args = (geometry.in_hw[axis], geometry.kernel[axis], geometry.strides[axis],
                geometry.dilation[axis], geometry.pads[axis][0], geometry.pads[axis][1],
                geometry.out_hw[axis])
        formulas[axis_name] = _axis_formula(*args, mode, ceil_mode)
        if mode == "same":
            pad_formulas[axis_name] = _same_pad_formula(*args)
    rows, cols = _dropped_input(geometry)
    warnings = []
    if rows or cols:
        parts, reasons = [], []
        sides = ((cols, "step", "end", 1),) if steps else \
            ((rows, "row", "bottom", 0), (cols, "column", "right", 1))
        for count, what, side, axis in sides:
            if count:
                (before, after), n = geometry.pads[axis], geometry.in_hw[axis]
                k_eff, s = geometry.effective_kernel[axis], geometry.strides[axis]
                parts.append(f"{count} input {what}{'s' if count > 1 else ''} at the {side}")
                reason = f"({n} + {before} + {after} - {k_eff}) % {s} = {(n + before + after - k_eff) % s}"
                if reason not in reasons:
                    reasons.append(reason)
        warnings.append(f"{where}: the windows never read " + " and ".join(parts) +
                        f" because {' and '.join(reasons)}; pad the input or pick sizes "
                        f"that fit the stride")
    gap_axes = ((1, "steps"),) if steps else tuple(enumerate(("rows", "columns")))
    gaps = [(geometry.strides[axis], geometry.effective_kernel[axis], axis_name)
            for axis, axis_name in gap_axes
            if geometry.strides[axis] > geometry.effective_kernel[axis]]
    if len(gaps) == 2 and gaps[0][:2] == gaps[1][:2]:
        gaps = [(gaps[0][0], gaps[0][1], "rows and columns")]
    for s, k_eff, what in gaps:
        warnings.append(f"{where}: the stride {s} is larger than the {k_eff}-pixel window, "
                        f"so {s - k_eff} of every {s} input {what} are skipped")
    return {
        "padding_mode": mode,
        "pads": {"top": top, "bottom": bottom, "left": left, "right": right},
        "ceil_mode_extra": {"bottom": geometry.extra[0], "right": geometry.extra[1]},
        "formulas": formulas,
        "pad_formulas": pad_formulas,
        "dropped_input": {"rows": rows, "cols": cols},
        "warnings": warnings,
    }


def explain_conv(input_size, kernel_size, strides=1, padding="valid", dilation_rate=1) -> dict:
    """Explain the output size of a 2-D convolution without building a layer.

    ``input_size`` is ``n`` or ``(h, w)``; the other arguments are as for
    :func:`convkit.ops.conv2d`. Returns a JSON-serialisable dict with ``input``, ``kernel``,
    ``strides``, ``dilation``, ``output`` (each ``[h, w]``), ``pads``, per-axis ``formulas``,
    ``dropped_input`` and ``warnings``.

    >>> explain_conv(28, 5)["formulas"]["height"]
    'floor((28 + 0 + 0 - 5) / 1) + 1 = 24'
    >>> explain_conv(28, 3, strides=2, padding="same")["formulas"]["width"]
    'ceil(28 / 2) = 14'
    """
    in_hw = _as_hw(input_size, "input_size", "explain_conv")
    geometry = shapes.window_geometry(in_hw, kernel_size, strides, padding, dilation_rate,
                                      where="explain_conv")
    return _standalone(geometry, "conv", "explain_conv")


def explain_pool(input_size, pool_size=2, strides=None, padding="valid", ceil_mode=False,
                 kind: str = "max") -> dict:
    """Explain the output size of 2-D pooling (``strides=None`` means ``pool_size``).

    ``kind`` is ``"max"`` (padding counts as -inf) or ``"avg"`` (padding is left out of the
    average). ``ceil_mode=True`` rounds up as PyTorch does. Same keys as :func:`explain_conv`.

    >>> explain_pool(26, 2)["output"]
    [13, 13]
    """
    if kind not in ("max", "avg"):
        raise ConvkitError(f"explain_pool: kind must be 'max' or 'avg', got {kind!r}")
    in_hw = _as_hw(input_size, "input_size", "explain_pool")
    geometry = shapes.window_geometry(in_hw, pool_size, pool_size if strides is None else strides,
                                      padding, 1, ceil_mode, where="explain_pool",
                                      max_pad_half_window=True)
    return _standalone(geometry, f"{kind} pool", "explain_pool", bool(ceil_mode))


def _standalone(geometry, kind: str, where: str, ceil_mode: bool = False) -> dict:
    info = _window_info(geometry, where, ceil_mode)
    field = shapes.receptive_field_after(shapes.ReceptiveField(), geometry)
    return {
        "kind": kind,
        "input": list(geometry.in_hw),
        "kernel": list(geometry.kernel),
        "effective_kernel": list(geometry.effective_kernel),
        "strides": list(geometry.strides),
        "dilation": list(geometry.dilation),
        "output": list(geometry.out_hw),
        "receptive_field": list(field.size),
        "jump": list(field.jump),
        **info,
    }


def format_window(info: dict) -> str:
    """Text form of :func:`explain_conv` / :func:`explain_pool` results (for the CLI)."""
    h, w = info["input"]
    oh, ow = info["output"]
    kh, kw = info["kernel"]
    lines = [f"{info['kind']}: input {h}x{w}, kernel {kh}x{kw}, strides "
             f"{info['strides'][0]}x{info['strides'][1]}, dilation "
             f"{info['dilation'][0]}x{info['dilation'][1]} -> output {oh}x{ow}"]
    pads = info["pads"]
    lines.append(f"  {'padding':<13} {info['padding_mode']}: top {pads['top']}, bottom "
                 f"{pads['bottom']}, left {pads['left']}, right {pads['right']}")
    extra = info["ceil_mode_extra"]
    if extra["bottom"] or extra["right"]:
        lines.append(f"  {'ceil_mode':<13} extra bottom {extra['bottom']}, right {extra['right']} "
                     f"(never counted as input)")
    lines += _formula_lines(info["formulas"], "  ")
    if info["pad_formulas"]:
        lines += _formula_lines(info["pad_formulas"], "  ", prefix="pad ")
    for text in info["warnings"]:
        lines += _labelled("warning", text)
    return "\n".join(lines)


#: Text lines longer than this (warnings, long padding descriptions) wrap, continuing under
#: the value column.
TEXT_WIDTH = 96


def _labelled(label: str, text: str, indent: str = "  ") -> list[str]:
    """``"  label         text"``, wrapped at :data:`TEXT_WIDTH` with continuation lines
    aligned under the text."""
    head = f"{indent}{label:<13} "
    # a formula such as "(15 + 1 + 0 - 5) % 2 = 1" stays on one line
    glue = "\x00"
    protected = re.sub(r"\([^()]*\)(?: % \d+ = \d+)?",
                       lambda match: match.group(0).replace(" ", glue), text)
    lines = textwrap.wrap(protected, width=TEXT_WIDTH, initial_indent=head,
                          subsequent_indent=" " * len(head), break_long_words=False,
                          break_on_hyphens=False) or [head.rstrip()]
    return [line.replace(glue, " ") for line in lines]


def _formula_lines(formulas: dict, indent: str, prefix: str = "") -> list[str]:
    if not formulas:
        return []
    if "steps" in formulas:
        return [f"{indent}{prefix + 'steps':<13} {formulas['steps']}"]
    if formulas["height"] == formulas["width"]:
        return [f"{indent}{prefix + 'height/width':<13} {formulas['height']}"]
    return [f"{indent}{prefix + 'height':<13} {formulas['height']}",
            f"{indent}{prefix + 'width':<13} {formulas['width']}"]


# ------------------------------------------------------------------------------ whole models
def _class_names(layer) -> list[str]:
    return [cls.__name__ for cls in type(layer).__mro__]


def _kind(layer) -> str:
    for name in _class_names(layer):
        if name in _CONV_LAYERS or name in _POOL_LAYERS or name in _GLOBAL_LAYERS:
            return name
    return type(layer).__name__


def _spatial(shape, data_format: str):
    """``(hw, channels)`` of a 4-D batch-first shape."""
    if data_format == "channels_first":
        return (shape[2], shape[3]), shape[1]
    return (shape[1], shape[2]), shape[3]


def _product_text(shape) -> str:
    return "*".join(str(int(v)) for v in shape) if len(shape) else "1"


def _prod(values) -> int:
    return int(math.prod(int(v) for v in values))


def _geometry_of(layer, kind: str):
    cfg = layer.get_config()
    data_format = cfg.get("data_format") or "channels_last"
    hw, _ = _spatial(layer.input_shape, data_format)
    ceil_mode = False
    if kind in _CONV_LAYERS or kind == "SeparableConv2D":
        geometry = shapes.window_geometry(hw, cfg["kernel_size"], cfg.get("strides", 1),
                                          cfg.get("padding", "valid"),
                                          cfg.get("dilation_rate", 1), where=layer.name)
    else:
        pool = cfg.get("pool_size", 2)
        strides = cfg.get("strides")
        ceil_mode = bool(cfg.get("ceil_mode", False))
        geometry = shapes.window_geometry(hw, pool, pool if strides is None else strides,
                                          cfg.get("padding", "valid"),
                                          cfg.get("dilation_rate", 1), ceil_mode,
                                          where=layer.name, max_pad_half_window=True)
    return geometry, ceil_mode, data_format


def _shape_list(shape):
    if shape is None:
        return None
    if isinstance(shape, list) and shape and isinstance(shape[0], (tuple, list)):
        return [_shape_list(s) for s in shape]
    return [None if v is None else int(v) for v in shape]


def _first_shape(shape):
    if isinstance(shape, list) and shape and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def _itemsize(layer) -> int:
    import numpy as np
    return int(np.dtype(getattr(layer, "dtype", None) or "float32").itemsize)


def explain_model(model) -> list[dict]:
    """One JSON-serialisable dict per layer of a built model (in ``model.layers`` order).

    Keys: ``name``, ``class``, ``input_shape``, ``output_shape`` (batch ``None``),
    ``padding`` (``{"top", "bottom", "left", "right"}`` or ``None``), ``padding_mode``
    (``"valid"``, ``"same"`` or ``"explicit"``), ``padding_fill`` (what padded cells hold:
    the conv's ``padding_mode`` such as ``"zeros"`` or ``"reflect"``, ``"-inf"`` for max
    pooling, ``"excluded"`` or ``"zeros"`` for average pooling),
    ``formulas`` (``{"height", "width"}`` output-size formulas or ``None``), ``pad_formulas``,
    ``params``, ``trainable_params``, ``params_formula`` (e.g. ``"5*5*1*32 + 32 = 832"``),
    ``macs`` and ``macs_formula`` (multiply-accumulates per sample: conv
    ``out_h*out_w*kh*kw*(in/groups)*filters``, transposed conv ``in_h*in_w*kh*kw*filters*in``,
    separable ``out_h*out_w*(kh*kw*C*dm + C*dm*filters)``, Conv1D ``out_steps*k*(in/groups)
    *filters``, dense ``in*units``), ``receptive_field`` and ``jump`` (``[h, w]`` in input
    pixels, of the layer's output pixels; ``jump`` is ``None`` where every output sees the
    whole input; both ``None`` past Flatten, Reshape, Permute or Lambda, with the reason in
    ``receptive_note``), ``receptive_unit`` (``"steps"`` when the network reads sequences
    ``(batch, steps, channels)``, followed as height-1 images ``[1, steps]``),
    ``weight_bytes``, ``activation_elements`` and ``activation_bytes`` (of the output, per
    sample), and ``warnings``. 1-D windows give ``formulas`` and ``pad_formulas`` as
    ``{"steps"}`` and ``padding`` as ``{"before", "after"}``.

    The receptive field is followed along the layers (for a functional model along its
    graph, taking the largest field where branches merge); a layer that mixes every
    position (Dense after Flatten, global pooling, Softmax or LayerNormalization over a
    spatial axis) sees the whole input. A transposed convolution, UpSampling or Resizing
    makes the grid finer (``jump`` a fraction); a field size then rounds up, the most
    input pixels one output can read.
    """
    layers = [layer for layer in getattr(model, "layers", [model])]
    if not layers:
        raise ConvkitError("explain_model: the model has no layers")
    unbuilt = [layer.name for layer in layers if not getattr(layer, "built", False)
               or layer.output_shape is None]
    if unbuilt:
        raise ConvkitError(f"explain_model: layer(s) {', '.join(unbuilt)} are not built; give "
                           f"the model an Input (or input_shape=) or run it on data first")
    first_in = _first_shape(layers[0].input_shape if layers[0].input_shape is not None
                            else layers[0].output_shape)
    whole, steps = None, len(first_in) == 3
    if len(first_in) == 4:
        # (height, width) of the network input, in the layout its image layers use
        hw, _ = _spatial(first_in, _input_data_format(layers))
        whole = (int(hw[0]), int(hw[1]))
    elif steps and first_in[1 if _input_data_format(layers) == "channels_last" else 2]:
        # a sequence (batch, steps, channels) is followed as the height-1 image (1, steps)
        whole = (1, int(first_in[1 if _input_data_format(layers) == "channels_last" else 2]))
    parents = _parent_layers(model, layers)
    fields: dict[int, shapes.ReceptiveField | None] = {}
    field = shapes.ReceptiveField()
    rows = []
    for layer in layers:
        if parents is not None:
            field = _merge_fields([fields[id(p)] for p in parents.get(id(layer), [])
                                   if id(p) in fields])
        rows.append(_explain_layer(layer, field, whole, steps))
        field = rows[-1].pop("_field")
        fields[id(layer)] = field
    return rows


def _input_data_format(layers) -> str:
    """The layout of the network's image input: the ``data_format`` of the first layer that
    has one (``"channels_last"`` when none does)."""
    for layer in layers:
        data_format = getattr(layer, "data_format", None)
        if data_format in ("channels_last", "channels_first"):
            return data_format
    return "channels_last"


def _parent_layers(model, layers):
    """``{id(layer): [layers it reads from]}`` for a functional model, ``None`` for a chain.

    Walks back from ``model.outputs`` through each symbolic tensor's ``inputs``."""
    if "Sequential" in _class_names(model) or not hasattr(model, "outputs"):
        return None
    parents, stack, seen = {}, list(model.outputs), set()
    while stack:
        tensor = stack.pop()
        if id(tensor) in seen or tensor.layer is None:
            continue
        seen.add(id(tensor))
        parents[id(tensor.layer)] = [t.layer for t in tensor.inputs if t.layer is not None]
        stack.extend(tensor.inputs)
    return parents


def _merge_fields(fields):
    """The field seen by a layer reading several feature maps: the largest of them
    (``None``, not defined, when one of them is)."""
    if not fields:
        return shapes.ReceptiveField()
    if any(f is None for f in fields):
        return None
    return shapes.ReceptiveField(
        tuple(max(f.size[axis] for f in fields) for axis in range(2)),
        tuple(max(f.jump[axis] for f in fields) for axis in range(2)),
        fields[0].start)


def _padding_fill(layer, kind: str) -> str:
    """What the padded cells hold: the conv's ``padding_mode`` (``"zeros"``, ``"reflect"``,
    ...), ``"-inf"`` for max pooling, ``"excluded"`` / ``"zeros"`` for average pooling
    without / with ``count_include_pad``."""
    cfg = layer.get_config()
    if kind in _CONV_LAYERS:
        return str(cfg.get("padding_mode", "zeros"))
    if kind == "MaxPooling2D":
        return "-inf"
    return "zeros" if cfg.get("count_include_pad") else "excluded"


_FILL_TEXT = {"reflect": "reflect: mirrored, the edge pixel not repeated",
              "replicate": "replicate: the edge pixels repeated",
              "circular": "circular: wrapped around from the other side",
              "-inf": "-inf: a padded cell is never the maximum",
              "excluded": "padded cells left out of the average",
              "cropped": "cells cropped from the full output (the convolution it is the "
                         "adjoint of pads there)"}


def _padding_text(row) -> str:
    """``"same: top 1, bottom 1, left 1, right 1"`` plus, when something is padded with other
    than plain zeros, what the padded cells hold."""
    p = row["padding"]
    if "before" in p:
        text = f"{row['padding_mode']}: before {p['before']}, after {p['after']}"
    else:
        text = (f"{row['padding_mode']}: top {p['top']}, bottom {p['bottom']}, "
                f"left {p['left']}, right {p['right']}")
    fill = row.get("padding_fill")
    if not any(p.values()) or fill in (None, "constant"):
        return text
    if fill == "zeros":
        if row["class"] in ("AveragePooling2D", "AveragePooling1D"):
            return text + "; zeros counted in the average (count_include_pad)"
        return text
    return text + "; " + _FILL_TEXT.get(fill, fill)


def _explain_layer(layer, field, whole, steps: bool = False) -> dict:
    kind = _kind(layer)
    in_shape = layer.input_shape
    out_shape = _first_shape(layer.output_shape)
    weights = list(getattr(layer, "weights", []))
    params = sum(int(w.value.size) for w in weights)
    trainable = sum(int(w.value.size) for w in weights
                    if w.trainable and getattr(layer, "trainable", True))
    params_formula = (" + ".join(_product_text(w.value.shape) for w in weights) + f" = {params:,}"
                      if weights else "0")
    row = {
        "name": layer.name, "class": type(layer).__name__,
        "input_shape": _shape_list(in_shape), "output_shape": _shape_list(out_shape),
        "padding": None, "padding_mode": None, "padding_fill": None, "formulas": None,
        "pad_formulas": None,
        "params": params, "trainable_params": trainable, "params_formula": params_formula,
        "macs": 0, "macs_formula": None,
        "weight_bytes": sum(int(w.value.nbytes) for w in weights),
        "activation_elements": _prod(out_shape[1:]),
        "activation_bytes": _prod(out_shape[1:]) * _itemsize(layer),
        "receptive_note": None, "warnings": [],
    }
    handler = _LAYER_HANDLERS.get(kind)
    if handler is not None:
        field = handler(layer, row, weights, field)
    elif kind in _CONV_LAYERS or kind in _POOL_LAYERS:
        geometry, ceil_mode, data_format = _geometry_of(layer, kind)
        info = _window_info(geometry, layer.name, ceil_mode)
        row.update(padding=info["pads"], padding_mode=info["padding_mode"],
                   padding_fill=_padding_fill(layer, kind),
                   formulas=info["formulas"], pad_formulas=info["pad_formulas"] or None,
                   warnings=info["warnings"])
        if kind in _CONV_LAYERS:
            kernel = next((w.value for w in weights if w.name.endswith("kernel")), None)
            if kernel is not None:
                out_hw, _ = _spatial(out_shape, data_format)
                per_pixel = int(kernel.size)   # kh*kw*(in/groups)*filters
                row["macs"] = _prod(out_hw) * per_pixel
                row["macs_formula"] = (f"{out_hw[0]}*{out_hw[1]} * {_product_text(kernel.shape)}"
                                       f" = {row['macs']:,}")
        field = shapes.receptive_field_after(field, geometry)
    elif kind == "ZeroPadding2D":
        (top, bottom), (left, right) = layer.get_config()["padding"]
        row.update(padding={"top": int(top), "bottom": int(bottom), "left": int(left),
                            "right": int(right)},
                   padding_mode="explicit", padding_fill="zeros")
    elif kind == "Dense":
        kernel = next((w.value for w in weights if w.name.endswith("kernel")), None)
        if kernel is not None:
            positions = _prod(_first_shape(in_shape)[1:-1])   # 1 after Flatten
            row["macs"] = positions * int(kernel.size)
            prefix = f"{positions} * " if positions != 1 else ""
            row["macs_formula"] = f"{prefix}{_product_text(kernel.shape)} = {row['macs']:,}"
    elif kind in _REGRID_LAYERS and field is not None:
        field = None
        row["receptive_note"] = (
            "not known past Lambda (an arbitrary function)" if kind == "Lambda" else
            f"not defined past {kind}: its outputs are no longer pixels of the input grid")
    sees_everything = whole is not None and (
        (kind in _GLOBAL_LAYERS and (kind != "Dense" or len(_first_shape(in_shape)) == 2))
        or _mixes_positions(layer, kind))
    if sees_everything:
        field = shapes.ReceptiveField(whole, whole, (0.0, 0.0) if field is None else field.start)
        row["receptive_note"] = None
    if field is None:
        row["receptive_field"] = row["jump"] = None
        row["receptive_note"] = row["receptive_note"] or "not defined (see the layers above)"
    else:
        # past a finer grid (transposed conv, upsampling) the size may be fractional: one
        # output reads at most that size rounded up (at least rounded down), by its phase
        row["receptive_field"] = [math.ceil(v - 1e-9) for v in field.size]
        row["jump"] = None if sees_everything else [_exact(v) for v in field.jump]
    row["receptive_unit"] = "steps" if steps else "pixels"
    row["_field"] = field
    return row


def _exact(value):
    """An int when ``value`` is whole, else the float (jumps become fractions past a
    transposed convolution or an upsampling)."""
    return int(value) if float(value).is_integer() else float(value)


def _mixes_positions(layer, kind: str) -> bool:
    """Softmax or LayerNormalization over a spatial axis: every output reads every position."""
    if kind not in ("Softmax", "LayerNormalization"):
        return False
    rank = len(_first_shape(layer.input_shape))
    axes = getattr(layer, "axis", -1)
    axes = axes if isinstance(axes, (list, tuple)) else [axes]
    return any(0 < (a % rank) < rank - 1 for a in axes)


# ------------------------------------------------------------------------------ other layers
# Each handler fills ``row`` (formulas, padding, params formula, MACs, warnings) for one kind
# and returns the receptive field of the layer's output given ``field``, the field of its
# input (``None``: not defined).

def _data_format(layer) -> str:
    return getattr(layer, "data_format", None) or "channels_last"


def _maybe(field, step, *args):
    return None if field is None else step(field, *args)


def _transpose_formula(n, k_eff, s, mode, output_padding, crops, out) -> str:
    """Keras's output-size rule of a transposed convolution along one axis, numbers in."""
    if mode == "valid" and output_padding is None:
        return f"({n} - 1)*{s} + max({k_eff}, {s}) = {out}"
    if mode == "same" and output_padding is None:
        return f"{n}*{s} = {out}"
    if mode in ("valid", "same"):
        pad = 0 if mode == "valid" else k_eff // 2
        return f"({n} - 1)*{s} + {k_eff} - 2*{pad} + {output_padding} = {out}"
    before, after = crops[0], crops[1] + (output_padding or 0)
    return f"({n} - 1)*{s} + {k_eff} - {before} - {after} + {output_padding or 0} = {out}"


def _conv_transpose(layer, row, weights, field):
    cfg = layer.get_config()
    hw, _ = _spatial(layer.input_shape, _data_format(layer))
    geometry = shapes.transpose_geometry(hw, cfg["kernel_size"], cfg.get("strides", 1),
                                         cfg.get("padding", "valid"), cfg.get("output_padding"),
                                         cfg.get("dilation_rate", 1), where=layer.name)
    mode = shapes.normalize_padding(cfg.get("padding", "valid"), layer.name)
    output_padding = cfg.get("output_padding")
    formulas, pad_formulas = {}, {}
    for axis, name in enumerate(("height", "width")):
        n, s = geometry.in_hw[axis], geometry.strides[axis]
        k_eff = geometry.dilation[axis] * (geometry.kernel[axis] - 1) + 1
        before, after = geometry.crops[axis]
        formulas[name] = _transpose_formula(
            n, k_eff, s, mode if isinstance(mode, str) else "explicit",
            None if output_padding is None else output_padding[axis], geometry.crops[axis],
            geometry.out_hw[axis])
        after_text = f"{after} after" if after >= 0 else f"{-after} added after"
        pad_formulas[name] = (f"full ({n} - 1)*{s} + {k_eff} = {(n - 1) * s + k_eff}, cropped "
                              f"{before} before, {after_text}")
    (top, bottom), (left, right) = geometry.crops
    row.update(padding={"top": top, "bottom": bottom, "left": left, "right": right},
               padding_mode=mode if isinstance(mode, str) else "explicit",
               padding_fill="cropped", formulas=formulas, pad_formulas=pad_formulas)
    kernel = _weight(weights, "kernel")
    if kernel is not None:
        # every input pixel scatters the whole kernel: in_h*in_w*kh*kw*filters*in_channels
        row["macs"] = _prod(hw) * int(kernel.size)
        row["macs_formula"] = (f"{hw[0]}*{hw[1]} * {_product_text(kernel.shape)}"
                               f" = {row['macs']:,}")
    return _maybe(field, shapes.receptive_field_after_transpose, geometry)


def _weight(weights, suffix: str):
    return next((w.value for w in weights if w.name.endswith(suffix)), None)


def _separable(layer, row, weights, field):
    geometry, _, data_format = _geometry_of(layer, "SeparableConv2D")
    info = _window_info(geometry, layer.name)
    row.update(padding=info["pads"], padding_mode=info["padding_mode"],
               padding_fill=str(layer.get_config().get("padding_mode", "zeros")),
               formulas=info["formulas"], pad_formulas=info["pad_formulas"] or None,
               warnings=info["warnings"])
    depthwise = _weight(weights, "depthwise_kernel")
    pointwise = _weight(weights, "pointwise_kernel")
    if depthwise is not None and pointwise is not None:
        kh, kw, channels, multiplier = (int(v) for v in depthwise.shape)
        filters = int(pointwise.shape[-1])
        bias = _weight(weights, "bias")
        bias_text = f" + {filters}" if bias is not None else ""
        row["params_formula"] = (f"{kh}*{kw}*{channels}*{multiplier} + {channels}*{multiplier}"
                                 f"*{filters}{bias_text} = {row['params']:,}")
        (oh, ow), _ = _spatial(_first_shape(layer.output_shape), data_format)
        row["macs"] = oh * ow * (int(depthwise.size) + int(pointwise.size))
        row["macs_formula"] = (f"{oh}*{ow} * ({kh}*{kw}*{channels}*{multiplier} + "
                               f"{channels}*{multiplier}*{filters}) = {row['macs']:,}")
    return _maybe(field, shapes.receptive_field_after, geometry)


def _resample(layer, row, weights, field):
    """UpSampling2D, Resizing: each axis scaled (Resizing may crop or pad to the aspect
    ratio first)."""
    cfg = layer.get_config()
    (hw, _), (out_hw, _) = (_spatial(layer.input_shape, _data_format(layer)),
                            _spatial(_first_shape(layer.output_shape), _data_format(layer)))
    framing = ((0, 0), (0, 0))
    if cfg.get("crop_to_aspect_ratio"):
        framing = shapes.aspect_crop(hw, out_hw)
    elif cfg.get("pad_to_aspect_ratio"):
        framing = tuple((-a, -b) for a, b in shapes.aspect_pad(hw, out_hw))
    formulas = {}
    for axis, name in enumerate(("height", "width")):
        n, out = hw[axis], out_hw[axis]
        if "size" in cfg:
            formulas[name] = f"{n}*{cfg['size'][axis]} = {out}"
            continue
        before, after = framing[axis]
        framed = n - before - after
        if before > 0 or after > 0:
            text = f"{n} - {before} - {after} = {framed} (centred crop to the aspect ratio), "
        elif before < 0 or after < 0:
            text = f"{n} + {-before} + {-after} = {framed} (padded to the aspect ratio), "
        else:
            text = ""
        formulas[name] = f"{text}resized {framed} -> {out} (given)"
    row["formulas"] = formulas
    if field is None:
        return None
    field = shapes.receptive_field_after_crop(field, (framing[0][0], framing[1][0]))
    framed_hw = tuple(n - b - a for n, (b, a) in zip(hw, framing))
    return shapes.receptive_field_after_resize(field, framed_hw, out_hw,
                                               cfg.get("interpolation", "nearest"))


def _crop(layer, row, weights, field):
    """Cropping2D; RandomCrop at inference (the centred window)."""
    (hw, _), (out_hw, _) = (_spatial(layer.input_shape, _data_format(layer)),
                            _spatial(_first_shape(layer.output_shape), _data_format(layer)))
    if row["class"] == "Cropping2D":
        crops = tuple(tuple(int(c) for c in pair) for pair in layer.get_config()["cropping"])
        row["formulas"] = {name: f"{hw[axis]} - {crops[axis][0]} - {crops[axis][1]} = "
                                 f"{out_hw[axis]}"
                           for axis, name in enumerate(("height", "width"))}
    else:
        crops = tuple(((n - o) // 2, n - o - (n - o) // 2) for n, o in zip(hw, out_hw))
        row["formulas"] = {name: f"{hw[axis]} -> {out_hw[axis]} (centred window at inference,"
                                 f" from {crops[axis][0]})"
                           for axis, name in enumerate(("height", "width"))}
    return _maybe(field, shapes.receptive_field_after_crop, (crops[0][0], crops[1][0]))


def _steps_of(shape, data_format: str) -> int:
    return int(shape[1] if data_format == "channels_last" else shape[2])


def _steps_window(layer, row, weights, field):
    """Conv1D, MaxPooling1D, AveragePooling1D: the 2-D window on the height-1 view."""
    cfg = layer.get_config()
    data_format = _data_format(layer)
    n = _steps_of(_first_shape(layer.input_shape), data_format)
    is_conv = "Conv1D" in _class_names(layer)
    k = int(cfg["kernel_size"][0] if is_conv else cfg["pool_size"][0])
    s = int(cfg["strides"][0])
    d = int(cfg.get("dilation_rate", [1])[0]) if is_conv else 1
    padding = cfg.get("padding", "valid")
    geometry = shapes.window_geometry((1, n), (1, k), (1, s),
                                      shapes.steps_padding(padding, k, d, layer.name), (1, d),
                                      where=layer.name)
    info = _window_info(geometry, layer.name, steps=True)
    before, after = geometry.pads[1]
    mode = padding if isinstance(padding, str) else "explicit"
    if is_conv:
        fill = str(cfg.get("padding_mode", "zeros"))
    else:
        fill = "-inf" if "Max" in row["class"] else "excluded"
    row.update(padding={"before": before, "after": after}, padding_mode=mode,
               padding_fill=fill, formulas=info["formulas"],
               pad_formulas=info["pad_formulas"] or None, warnings=info["warnings"])
    kernel = _weight(weights, "kernel") if is_conv else None
    if kernel is not None:
        out = geometry.out_hw[1]
        row["macs"] = out * int(kernel.size)           # steps_out * k*(in/groups)*filters
        row["macs_formula"] = f"{out} * {_product_text(kernel.shape)} = {row['macs']:,}"
    return _maybe(field, shapes.receptive_field_after, geometry)


def _upsample_steps(layer, row, weights, field):
    data_format = _data_format(layer)
    n = _steps_of(_first_shape(layer.input_shape), data_format)
    out = _steps_of(_first_shape(layer.output_shape), data_format)
    row["formulas"] = {"steps": f"{n}*{layer.get_config()['size']} = {out}"}
    return _maybe(field, shapes.receptive_field_after_resize, (1, n), (1, out), "nearest")


_LAYER_HANDLERS = {
    "Conv2DTranspose": _conv_transpose, "SeparableConv2D": _separable,
    "UpSampling2D": _resample, "Resizing": _resample,
    "Cropping2D": _crop, "RandomCrop": _crop,
    "Conv1D": _steps_window, "MaxPooling1D": _steps_window, "AveragePooling1D": _steps_window,
    "UpSampling1D": _upsample_steps,
}


def explain_totals(rows: list[dict]) -> dict:
    """Totals of :func:`explain_model` rows: ``params``, ``trainable_params``,
    ``non_trainable_params``, ``macs``, ``weight_bytes``, ``activation_elements`` and
    ``activation_bytes`` (per sample, every layer output plus the input)."""
    first_in = rows[0]["input_shape"] or rows[0]["output_shape"]
    if first_in and isinstance(first_in[0], list):
        first_in = first_in[0]
    input_elements = _prod(first_in[1:])
    item = rows[0]["activation_bytes"] // max(rows[0]["activation_elements"], 1)
    params = sum(r["params"] for r in rows)
    trainable = sum(r["trainable_params"] for r in rows)
    # An InputLayer's output is the input itself, already counted.
    elements = input_elements + sum(r["activation_elements"] for r in rows
                                    if r["class"] != "InputLayer")
    return {
        "params": params, "trainable_params": trainable,
        "non_trainable_params": params - trainable,
        "macs": sum(r["macs"] for r in rows),
        "weight_bytes": sum(r["weight_bytes"] for r in rows),
        "input_elements": input_elements,
        "activation_elements": elements,
        "activation_bytes": elements * item,
    }


def explanation_dict(model) -> dict:
    """``{"layers": explain_model(model), "totals": explain_totals(...)}`` for JSON output."""
    rows = explain_model(model)
    return {"layers": rows, "totals": explain_totals(rows)}


def _bytes_text(n: int) -> str:
    for unit, size in (("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n:,} bytes ({n / size:.2f} {unit})"
    return f"{n:,} bytes"


def _shape_text(shape) -> str:
    return "(" + ", ".join("None" if v is None else str(v) for v in shape) + \
        ("," if len(shape) == 1 else "") + ")"


def _number_text(value) -> str:
    """``2``, ``1/2``, ``2.5``: a jump or field size as a short exact number."""
    if float(value).is_integer():
        return str(int(value))
    fraction = Fraction(value).limit_denominator(1000)
    return f"{fraction.numerator}/{fraction.denominator}" if fraction.denominator <= 16 \
        else f"{value:.3g}"


def _receptive_text(row) -> str:
    rf, jump = row["receptive_field"], row["jump"]
    if rf is None:
        return row.get("receptive_note") or "not defined"
    if row.get("receptive_unit") == "steps":
        if jump is None:
            return f"the whole {_number_text(rf[1])}-step input"
        up_to = "" if float(jump[1]).is_integer() else "up to "
        return f"{up_to}{_number_text(rf[1])} input steps, jump {_number_text(jump[1])}"
    size = f"{_number_text(rf[0])}x{_number_text(rf[1])}"
    if jump is None:
        return f"the whole {size} input"
    up_to = "" if all(float(j).is_integer() for j in jump) else "up to "
    return (f"{up_to}{size} input pixels, jump {_number_text(jump[0])}x"
            f"{_number_text(jump[1])}")


def format_explanation(rows: list[dict]) -> str:
    """The text form of :func:`explain_model` rows, ending with the totals."""
    lines = []
    for row in rows:
        lines.append(f"{row['name']} ({row['class']})".ljust(48) +
                     f" -> {_shape_text(row['output_shape'])}")
        if row["padding"] is not None:
            lines += _labelled("padding", _padding_text(row))
        if row["pad_formulas"]:
            lines += _formula_lines(row["pad_formulas"], "  ", prefix="pad ")
        if row["formulas"]:
            lines += _formula_lines(row["formulas"], "  ")
        if row["params"]:
            extra = ""
            if row["trainable_params"] != row["params"]:
                extra = f" ({row['params'] - row['trainable_params']:,} non-trainable)"
            lines.append(f"  {'params':<13} {row['params_formula']}{extra}")
        if row["macs_formula"]:
            lines.append(f"  {'MACs':<13} {row['macs_formula']}")
        lines += _labelled("receptive", _receptive_text(row))
        for text in row["warnings"]:
            lines += _labelled("warning", text)
    totals = explain_totals(rows)
    lines += [
        "",
        f"Total params: {totals['params']:,} (trainable {totals['trainable_params']:,}, "
        f"non-trainable {totals['non_trainable_params']:,})",
        f"Multiply-accumulates per sample: {totals['macs']:,}",
        f"Weights in memory: {_bytes_text(totals['weight_bytes'])}",
        f"Activations per sample (input + every layer output): "
        f"{totals['activation_elements']:,} values, {_bytes_text(totals['activation_bytes'])}",
    ]
    return "\n".join(lines)


def print_explanation(model, print_fn=None) -> None:
    """Print :func:`format_explanation` of ``model``: ``print_fn`` (``print`` by default)
    receives the whole text at once, as ``summary``'s does. ``model.summary(explain=True)``
    calls this."""
    print_fn = print if print_fn is None else print_fn
    print_fn(format_explanation(explain_model(model)))
