"""Shape arithmetic for convolution and pooling: the one source of truth.

Ops, layers, summaries and the command line all call these functions, so an
output size is computed in exactly one place.

Per spatial axis, with input size ``n``, kernel ``k``, stride ``s``, dilation
``d`` and pads ``before``/``after``::

    effective kernel  k_eff = d * (k - 1) + 1
    valid             out = floor((n - k_eff) / s) + 1
    same              out = ceil(n / s)
                      total = max((out - 1) * s + k_eff - n, 0)
                      before = total // 2, after = total - before   (extra pad bottom/right)
    explicit          out = floor((n + before + after - k_eff) / s) + 1
    ceil_mode=True    ceil instead of floor, but a window that would start inside the
                      right padding is dropped (PyTorch's rule)

Example: a 28x28 input, 5x5 kernel, stride 1, valid -> floor((28 + 0 - 5) / 1) + 1 = 24.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from numbers import Integral

from .errors import ShapeError

__all__ = [
    "ShapeError", "to_pair", "normalize_padding", "same_pads", "axis_output_size",
    "Geometry", "window_geometry", "conv_output_shape", "pool_output_shape",
    "conv_param_count", "dense_param_count", "padding_repr",
    "ReceptiveField", "receptive_field_after", "receptive_field_stack",
    "TransposeGeometry", "transpose_geometry", "conv_transpose_output_shape", "aspect_crop",
    "aspect_pad",
    "steps_as_image_shape", "image_as_steps_shape", "steps_padding",
]


def _is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def to_pair(value, name: str, where: str = "convkit", minimum: int = 1) -> tuple[int, int]:
    """Turn ``3`` or ``(3, 3)`` into ``(3, 3)``, checking each entry is an int >= ``minimum``."""
    if _is_int(value):
        pair = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        pair = (int(value[0]), int(value[1]))
    else:
        raise ShapeError(f"{where}: {name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ShapeError(f"{where}: {name} must be >= {minimum}, got {value!r}")
    return pair


def normalize_padding(padding, where: str = "convkit"):
    """Normalise a padding argument.

    Returns ``"valid"``, ``"same"`` or explicit pads ``((top, bottom), (left, right))``.
    Accepts the strings case-insensitively, an int ``p``, a pair ``(ph, pw)`` or
    ``((top, bottom), (left, right))``. Negative pads are refused.
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode not in ("valid", "same"):
            raise ShapeError(f"{where}: padding must be 'valid', 'same', an int, (ph, pw) or "
                             f"((top, bottom), (left, right)); got {padding!r}")
        return mode
    if _is_int(padding):
        pads = ((int(padding),) * 2, (int(padding),) * 2)
    elif isinstance(padding, (tuple, list)) and len(padding) == 2:
        if all(_is_int(p) for p in padding):
            pads = ((int(padding[0]),) * 2, (int(padding[1]),) * 2)
        elif all(isinstance(p, (tuple, list)) and len(p) == 2 and all(_is_int(q) for q in p)
                 for p in padding):
            pads = tuple((int(p[0]), int(p[1])) for p in padding)
        else:
            raise ShapeError(f"{where}: padding must be 'valid', 'same', an int, (ph, pw) or "
                             f"((top, bottom), (left, right)); got {padding!r}")
    else:
        raise ShapeError(f"{where}: padding must be 'valid', 'same', an int, (ph, pw) or "
                         f"((top, bottom), (left, right)); got {padding!r}")
    if min(pads[0] + pads[1]) < 0:
        raise ShapeError(f"{where}: padding must not be negative, got {padding!r}")
    return pads


def same_pads(n: int, k: int, s: int = 1, d: int = 1) -> tuple[int, int]:
    """Pads ``(before, after)`` of TensorFlow's 'same' rule: the odd extra pad goes after."""
    out = -(-n // s)
    total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
    return total // 2, total - total // 2


def axis_output_size(n: int, k: int, s: int = 1, d: int = 1, before: int = 0, after: int = 0,
                     ceil_mode: bool = False) -> int:
    """Output size along one axis with explicit pads (may be <= 0; callers check)."""
    span = n + before + after - (d * (k - 1) + 1)
    if span < 0:
        return 0
    if ceil_mode:
        out = -(-span // s) + 1
        # PyTorch: the last window must start inside the input or the left padding.
        if (out - 1) * s >= n + before:
            out -= 1
        return out
    return span // s + 1


@dataclass(frozen=True)
class Geometry:
    """How a sliding window covers a 2-D input.

    ``pads`` are the pads the op applies, ``((top, bottom), (left, right))``.
    ``extra`` is the additional ``(bottom, right)`` padding that ``ceil_mode`` needs so the
    last window fits; it never counts as real input nor as explicit padding.
    """
    in_hw: tuple[int, int]
    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilation: tuple[int, int]
    pads: tuple[tuple[int, int], tuple[int, int]]
    extra: tuple[int, int]
    out_hw: tuple[int, int]
    padding: object = "valid"   # the normalised padding argument ("valid", "same" or pads)

    @property
    def effective_kernel(self) -> tuple[int, int]:
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation))

    @property
    def padded_hw(self) -> tuple[int, int]:
        """Size of the input after every pad, ceil-mode extra included."""
        (t, b), (l, r) = self.pads
        return (self.in_hw[0] + t + b + self.extra[0], self.in_hw[1] + l + r + self.extra[1])

    @cached_property
    def inner_out(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """``((oh0, oh1), (ow0, ow1))``: the output rows ``oh0:oh1`` and columns ``ow0:ow1``
        whose windows lie wholly inside the input, no tap in the padding. Per axis, output
        ``o`` reads input ``o*s - before`` to ``o*s - before + d*(k - 1)``, so
        ``o0 = ceil(before / s)`` and ``o1 = floor((n - d*(k - 1) - 1 + before) / s) + 1``,
        clipped to ``0:out``. 3x3, stride 2, pads 1 on 56 inputs (28 outputs): ``(1, 28)``."""
        spans = []
        for n, eff, s, (before, _), out in zip(self.in_hw, self.effective_kernel,
                                               self.strides, self.pads, self.out_hw):
            first = min(-(-before // s), out)
            last = n - eff + before
            stop = min(last // s + 1, out) if last >= 0 else 0
            spans.append((first, max(stop, first)))
        return tuple(spans)

    @property
    def dropped(self) -> tuple[int, int]:
        """Rows / columns at the bottom / right that no window reaches."""
        ph, pw = self.padded_hw
        kh, kw = self.effective_kernel
        return (ph - ((self.out_hw[0] - 1) * self.strides[0] + kh),
                pw - ((self.out_hw[1] - 1) * self.strides[1] + kw))


#: geometries already resolved, by their arguments (``where`` aside): an op called step after
#: step with the same shapes skips the checks and arithmetic (a few microseconds a call)
_GEOMETRIES: dict = {}
_GEOMETRIES_MAX = 4096


def window_geometry(in_hw, kernel_size, strides=1, padding="valid", dilation_rate=1,
                    ceil_mode: bool = False, where: str = "conv2d",
                    max_pad_half_window: bool = False) -> Geometry:
    """Resolve padding and output size of a 2-D sliding window.

    ``in_hw`` is ``(height, width)``; the other arguments are as for :func:`convkit.ops.conv2d`.
    Raises :class:`ShapeError` quoting every argument when an output size would be <= 0.
    Results are remembered by their (hashable) arguments; a :class:`Geometry` is immutable.

    >>> window_geometry((28, 28), 5).out_hw
    (24, 24)
    >>> window_geometry((5, 5), 2, 2, "same").pads
    ((0, 1), (0, 1))
    """
    try:
        # repr, not the values: True == 1 and 2.0 == 2 compare equal but are refused
        key = (tuple(in_hw), repr((kernel_size, strides, padding, dilation_rate)),
               bool(ceil_mode), bool(max_pad_half_window))
        geometry = _GEOMETRIES.get(key)
    except TypeError:                       # in_hw not a sequence: the checks below say so
        key = geometry = None
    if geometry is None:
        geometry = _window_geometry(in_hw, kernel_size, strides, padding, dilation_rate,
                                    ceil_mode, where, max_pad_half_window)
        if key is not None:
            if len(_GEOMETRIES) >= _GEOMETRIES_MAX:
                _GEOMETRIES.clear()
            _GEOMETRIES[key] = geometry
    return geometry


def _window_geometry(in_hw, kernel_size, strides, padding, dilation_rate, ceil_mode, where,
                     max_pad_half_window) -> Geometry:
    kernel = to_pair(kernel_size, "kernel_size", where)
    stride = to_pair(strides, "strides", where)
    dilation = to_pair(dilation_rate, "dilation_rate", where)
    mode = normalize_padding(padding, where)
    in_hw = tuple(int(v) for v in in_hw)
    if mode == "valid":
        pads = ((0, 0), (0, 0))
    elif mode == "same":
        pads = tuple(same_pads(n, k, s, d) for n, k, s, d in zip(in_hw, kernel, stride, dilation))
    else:
        pads = mode
        if max_pad_half_window:
            for (b, a), k, axis in zip(pads, kernel, ("height", "width")):
                if max(b, a) > k // 2:
                    raise ShapeError(f"{where}: padding {padding!r} is more than half the "
                                     f"pool window {kernel} along the {axis}")
    if mode == "same":
        out = tuple(-(-n // s) for n, s in zip(in_hw, stride))
    else:
        out = tuple(axis_output_size(n, k, s, d, b, a, ceil_mode)
                    for n, k, s, d, (b, a) in zip(in_hw, kernel, stride, dilation, pads))
    if min(out) <= 0 or min(in_hw) <= 0:
        raise ShapeError(
            f"{where}: output size would be {out[0]}x{out[1]} for input {in_hw[0]}x{in_hw[1]}, "
            f"kernel_size={kernel}, strides={stride}, padding={padding!r} (pads {pads}), "
            f"dilation_rate={dilation}, ceil_mode={ceil_mode}: the kernel is larger than the "
            f"padded input")
    extra = [0, 0]
    if ceil_mode and mode != "same":
        for axis in range(2):
            need = (out[axis] - 1) * stride[axis] + dilation[axis] * (kernel[axis] - 1) + 1
            have = in_hw[axis] + pads[axis][0] + pads[axis][1]
            extra[axis] = max(need - have, 0)
    return Geometry(in_hw, kernel, stride, dilation, pads, tuple(extra), out, mode)


def _split_spatial(input_shape, data_format: str, where: str):
    if len(input_shape) != 4:
        raise ShapeError(f"{where}: expected a 4-D input shape (batch, height, width, channels) "
                         f"for {data_format}, got {tuple(input_shape)}")
    if data_format == "channels_last":
        return input_shape[0], (input_shape[1], input_shape[2]), input_shape[3]
    if data_format == "channels_first":
        return input_shape[0], (input_shape[2], input_shape[3]), input_shape[1]
    raise ShapeError(f"{where}: data_format must be 'channels_last' or 'channels_first', "
                     f"got {data_format!r}")


def _join_spatial(batch, hw, channels, data_format):
    if data_format == "channels_last":
        return (batch, hw[0], hw[1], channels)
    return (batch, channels, hw[0], hw[1])


def conv_output_shape(input_shape, filters: int, kernel_size, strides=1, padding="valid",
                      dilation_rate=1, data_format: str = "channels_last",
                      where: str = "Conv2D") -> tuple:
    """Output shape of a 2-D convolution; the batch entry is passed through (may be None).

    >>> conv_output_shape((None, 28, 28, 1), 32, 3)
    (None, 26, 26, 32)
    """
    batch, hw, _ = _split_spatial(input_shape, data_format, where)
    geo = window_geometry(hw, kernel_size, strides, padding, dilation_rate, where=where)
    return _join_spatial(batch, geo.out_hw, filters, data_format)


def pool_output_shape(input_shape, pool_size, strides=None, padding="valid", dilation_rate=1,
                      ceil_mode: bool = False, data_format: str = "channels_last",
                      where: str = "Pooling2D") -> tuple:
    """Output shape of 2-D pooling; ``strides=None`` means ``strides = pool_size``.

    >>> pool_output_shape((None, 26, 26, 32), 2)
    (None, 13, 13, 32)
    """
    batch, hw, channels = _split_spatial(input_shape, data_format, where)
    geo = window_geometry(hw, pool_size, pool_size if strides is None else strides, padding,
                          dilation_rate, ceil_mode, where=where,
                          max_pad_half_window=True)
    return _join_spatial(batch, geo.out_hw, channels, data_format)


def conv_param_count(kernel_size, in_channels: int, filters: int, groups: int = 1,
                     use_bias: bool = True) -> int:
    """``kh * kw * (in / groups) * filters (+ filters)``: e.g. 4x4 kernels, 3 channels,
    5 filters -> 4*4*3*5 + 5 = 245."""
    kh, kw = to_pair(kernel_size, "kernel_size")
    return kh * kw * (in_channels // groups) * filters + (filters if use_bias else 0)


def dense_param_count(in_features: int, units: int, use_bias: bool = True) -> int:
    """``in * units (+ units)``: e.g. 1600 inputs, 10 units -> 16,010."""
    return in_features * units + (units if use_bias else 0)


def padding_repr(geometry: Geometry) -> str:
    """Human form of the pads a geometry applies: ``top 0, bottom 1, left 0, right 1``."""
    (t, b), (l, r) = geometry.pads
    extra = ""
    if any(geometry.extra):
        extra = f" (+ceil_mode bottom {geometry.extra[0]}, right {geometry.extra[1]})"
    return f"top {t}, bottom {b}, left {l}, right {r}{extra}"


# --------------------------------------------------------------------------------------------
# Receptive fields: how much of the network's input one output pixel sees.
#
# Per spatial axis, a window layer with effective kernel k_eff, stride s and pad `before`,
# applied to a feature map whose pixels are `jump` input pixels apart and each see `rf`
# input pixels, whose first pixel is centred on input coordinate `start`, gives
#
#     rf_out    = rf + (k_eff - 1) * jump
#     jump_out  = jump * s
#     start_out = start + ((k_eff - 1) / 2 - before) * jump
#
# The network input itself has rf = 1, jump = 1, start = 0.
# Example: two 3x3 stride-1 convolutions see 5x5; a 2x2 stride-2 pool after them sees 6x6
# and its pixels are 2 input pixels apart.
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field ``size``, cumulative stride ``jump`` and centre of the first output
    pixel ``start`` (in input-pixel coordinates), each as ``(height, width)``."""
    size: tuple[int, int] = (1, 1)
    jump: tuple[int, int] = (1, 1)
    start: tuple[float, float] = (0.0, 0.0)


def receptive_field_after(previous: ReceptiveField, geometry: Geometry) -> ReceptiveField:
    """The receptive field after a sliding-window layer described by ``geometry``
    (from :func:`window_geometry`), given the field of the feature map it reads.

    >>> rf = receptive_field_after(ReceptiveField(), window_geometry((28, 28), 5))
    >>> rf.size, rf.jump
    ((5, 5), (1, 1))
    """
    size, jump, start = [], [], []
    for axis in range(2):
        k_eff = geometry.effective_kernel[axis]
        before = geometry.pads[axis][0]
        size.append(previous.size[axis] + (k_eff - 1) * previous.jump[axis])
        jump.append(previous.jump[axis] * geometry.strides[axis])
        start.append(previous.start[axis] + ((k_eff - 1) / 2 - before) * previous.jump[axis])
    return ReceptiveField(tuple(size), tuple(jump), tuple(start))


def receptive_field_stack(in_hw, windows) -> list[ReceptiveField]:
    """Receptive fields after each window of a chain.

    ``windows`` is a list of ``(kernel_size, strides, padding, dilation_rate)`` tuples (shorter
    tuples use the defaults ``strides=1, padding="valid", dilation_rate=1``). Returns one
    :class:`ReceptiveField` per window.

    >>> [rf.size for rf in receptive_field_stack((28, 28), [(3,), (3,), (2, 2)])]
    [(3, 3), (5, 5), (6, 6)]
    """
    fields, field, hw = [], ReceptiveField(), tuple(in_hw)
    for window in windows:
        kernel, strides, padding, dilation = (tuple(window) + (1, "valid", 1)[len(window) - 1:])[:4]
        geometry = window_geometry(hw, kernel, strides, padding, dilation,
                                   where="receptive_field_stack")
        field = receptive_field_after(field, geometry)
        fields.append(field)
        hw = geometry.out_hw
    return fields


# --------------------------------------------------------------------------------------------
# Transposed convolution: the adjoint of a convolution, so its sizes run the other way.
#
# Per axis, input n, effective kernel k_eff = d*(k - 1) + 1, stride s: spreading the n inputs
# s apart and writing a k_eff-wide kernel at each gives the full output of (n - 1)*s + k_eff
# cells; `crop_before` cells are then dropped at the start and `crop_after` at the end (a
# negative `crop_after` adds that many cells, which only the bias reaches):
#
#     out = (n - 1)*s + k_eff - crop_before - crop_after
#
#   valid      crop_before = 0, crop_after = -output_padding
#              (output_padding None: max(k_eff, s) - k_eff, so out = (n - 1)*s + max(k_eff, s))
#   same       total = s + k_eff - 2 (output_padding None: out = n*s), or
#              k_eff + k_eff % 2 - 2 + output_padding
#              (then out = (n - 1)*s + k_eff % 2 + output_padding);
#              pad_before = min(ceil(total / 2), k_eff - 1), pad_after = total - pad_before,
#              crop = k_eff - 1 - pad   (Keras's rule, TensorFlow's sizes)
#   explicit   PyTorch's: padding p = (before, after) cropped, output_padding (default 0) added
#              at the end: crop_before = before, crop_after = after - output_padding
#
# Example: n = 7, k = 3, s = 2, same -> total 3, pads (2, 1), crops (0, 1), out = 14.
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TransposeGeometry:
    """How a transposed convolution maps ``in_hw`` to ``out_hw``, per axis ``(h, w)``.

    ``crops`` are ``((top, bottom), (left, right))`` cells removed from the full output
    (see the comment above :func:`transpose_geometry`). ``conv`` is the :class:`Geometry` of
    the convolution it is the adjoint of: from the ``core_hw`` part of the output (all but
    the ``extra`` cells a negative crop adds at the bottom/right) back to ``in_hw``.
    """
    in_hw: tuple[int, int]
    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilation: tuple[int, int]
    crops: tuple[tuple[int, int], tuple[int, int]]
    out_hw: tuple[int, int]
    extra: tuple[int, int]
    conv: Geometry

    @property
    def core_hw(self) -> tuple[int, int]:
        return tuple(o - e for o, e in zip(self.out_hw, self.extra))


def _transpose_crops(k_eff: int, s: int, d: int, mode, output_padding, axis: str, where: str):
    """``(crop_before, crop_after)`` along one axis (see the comment above)."""
    if output_padding is not None and output_padding >= max(s, d):
        raise ShapeError(f"{where}: output_padding must be smaller than strides (or "
                         f"dilation_rate) along the {axis}, got output_padding "
                         f"{output_padding} with strides {s}, dilation_rate {d}")
    if mode == "valid":
        extra = max(k_eff, s) - k_eff if output_padding is None else output_padding
        return 0, -extra
    if mode == "same":
        total = s + k_eff - 2 if output_padding is None else \
            k_eff + k_eff % 2 - 2 + output_padding
        before = min(-(-total // 2), k_eff - 1)
        return k_eff - 1 - before, k_eff - 1 - (total - before)
    before, after = mode
    if max(before, after) > k_eff - 1:
        raise ShapeError(f"{where}: padding {mode} along the {axis} is more than the "
                         f"effective kernel size - 1 ({k_eff - 1})")
    return before, after - (output_padding or 0)


def transpose_geometry(in_hw, kernel_size, strides=1, padding="valid", output_padding=None,
                       dilation_rate=1, where: str = "conv2d_transpose") -> TransposeGeometry:
    """Resolve the sizes of a 2-D transposed convolution (see the comment above).

    ``padding`` is ``"valid"``, ``"same"`` (Keras) or explicit pads (PyTorch's meaning: cells
    cropped from the full output); ``output_padding`` is None, an int or a pair. Raises
    :class:`ShapeError` quoting every argument when an output size would be <= 0.

    >>> geo = transpose_geometry((7, 7), 3, 2, "same")
    >>> geo.out_hw, geo.crops, geo.conv.pads
    ((14, 14), ((0, 1), (0, 1)), ((0, 1), (0, 1)))
    >>> transpose_geometry((7, 7), 3, 2, "valid").out_hw
    (15, 15)
    """
    kernel = to_pair(kernel_size, "kernel_size", where)
    stride = to_pair(strides, "strides", where)
    dilation = to_pair(dilation_rate, "dilation_rate", where)
    mode = normalize_padding(padding, where)
    extra_pad = None if output_padding is None else \
        to_pair(output_padding, "output_padding", where, minimum=0)
    in_hw = tuple(int(v) for v in in_hw)
    crops, out = [], []
    for axis, (name, n, k, s, d) in enumerate(zip(("height", "width"), in_hw, kernel, stride,
                                                  dilation)):
        k_eff = d * (k - 1) + 1
        axis_mode = mode if isinstance(mode, str) else mode[axis]
        before, after = _transpose_crops(k_eff, s, d, axis_mode,
                                         None if extra_pad is None else extra_pad[axis],
                                         name, where)
        crops.append((before, after))
        out.append((n - 1) * s + k_eff - before - after)
    if min(out) <= 0 or min(in_hw) <= 0:
        raise ShapeError(
            f"{where}: output size would be {out[0]}x{out[1]} for input {in_hw[0]}x{in_hw[1]}, "
            f"kernel_size={kernel}, strides={stride}, padding={padding!r}, "
            f"output_padding={output_padding!r}, dilation_rate={dilation}")
    extra = tuple(max(-after, 0) for _, after in crops)
    core = tuple(o - e for o, e in zip(out, extra))
    conv = window_geometry(core, kernel, stride, tuple((b, max(a, 0)) for b, a in crops),
                           dilation, where=where)
    assert conv.out_hw == in_hw, (conv, in_hw)
    return TransposeGeometry(in_hw, kernel, stride, dilation, tuple(crops), tuple(out), extra,
                             conv)


def conv_transpose_output_shape(input_shape, filters: int, kernel_size, strides=1,
                                padding="valid", output_padding=None, dilation_rate=1,
                                data_format: str = "channels_last",
                                where: str = "Conv2DTranspose") -> tuple:
    """Output shape of a 2-D transposed convolution; the batch entry is passed through.

    >>> conv_transpose_output_shape((None, 7, 7, 64), 32, 3, 2, "same")
    (None, 14, 14, 32)
    """
    batch, hw, _ = _split_spatial(input_shape, data_format, where)
    geo = transpose_geometry(hw, kernel_size, strides, padding, output_padding, dilation_rate,
                             where=where)
    return _join_spatial(batch, geo.out_hw, filters, data_format)


def aspect_crop(in_hw, target_hw) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((top, bottom), (left, right))``: the centred crop of an ``in_hw`` image with the
    aspect ratio of ``target_hw`` (Keras's ``crop_to_aspect_ratio``), the largest that fits:
    ``crop_h = min(H, floor(W * th / tw))``, likewise ``crop_w``; ``top = floor((H - crop_h) / 2)``.

    >>> aspect_crop((10, 20), (5, 5))        # the centre 10 x 10 of a 10 x 20 image
    ((0, 0), (5, 5))
    """
    (h, w), (th, tw) = in_hw, target_hw
    crop_h = max(min(h, int(w * th / tw)), 1)
    crop_w = max(min(w, int(h * tw / th)), 1)
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    return (top, h - crop_h - top), (left, w - crop_w - left)


def aspect_pad(in_hw, target_hw) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((top, bottom), (left, right))``: equal pads on both sides that bring an ``in_hw``
    image to about the aspect ratio of ``target_hw`` (Keras's ``pad_to_aspect_ratio``):
    ``pad_h = max(H, floor(W * th / tw))``, ``top = bottom = floor((pad_h - H) / 2)``,
    likewise for the width.

    >>> aspect_pad((10, 20), (5, 5))          # a 10 x 20 image padded to 20 x 20
    ((5, 5), (0, 0))
    """
    (h, w), (th, tw) = in_hw, target_hw
    pad_h = max(h, int(w * th / tw))
    pad_w = max(w, int(h * tw / th))
    top, left = (pad_h - h) // 2, (pad_w - w) // 2
    return (top, top), (left, left)


# --------------------------------------------------------------------------------------------
# 1-D layers on (batch, steps, channels) run the 2-D arithmetic on a height-1 image:
# (N, steps, C) is (N, 1, steps, C) (channels_first: (N, C, steps) is (N, C, 1, steps)), the
# kernel (k,) is (1, k), strides and dilation (1, s) and (1, d).
# --------------------------------------------------------------------------------------------

def steps_as_image_shape(shape, data_format: str = "channels_last") -> tuple:
    """``(N, steps, C)`` -> ``(N, 1, steps, C)``; channels_first ``(N, C, steps)`` ->
    ``(N, C, 1, steps)``."""
    shape = tuple(shape)
    axis = 1 if data_format == "channels_last" else 2
    return shape[:axis] + (1,) + shape[axis:]


def image_as_steps_shape(shape, data_format: str = "channels_last") -> tuple:
    """The inverse of :func:`steps_as_image_shape`."""
    shape = tuple(shape)
    axis = 1 if data_format == "channels_last" else 2
    return shape[:axis] + shape[axis + 1:]


def steps_padding(padding, kernel_size: int = 1, dilation_rate: int = 1,
                  where: str = "Conv1D"):
    """A 1-D padding as the 2-D padding of the height-1 image: ``"valid"``, ``"same"``,
    ``"causal"`` (``d*(k - 1)`` zeros before the steps, none after: output ``t`` sees
    steps ``<= t`` only), ``p`` or ``(before, after)``.

    >>> steps_padding("causal", 3, 2)
    ((0, 0), (4, 0))
    >>> steps_padding((1, 2))
    ((0, 0), (1, 2))
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "causal":
            return (0, 0), (dilation_rate * (kernel_size - 1), 0)
        if mode in ("valid", "same"):
            return mode
    elif _is_int(padding) and padding >= 0:
        return (0, 0), (int(padding), int(padding))
    elif isinstance(padding, (tuple, list)) and len(padding) == 2 and all(
            _is_int(p) and p >= 0 for p in padding):
        return (0, 0), (int(padding[0]), int(padding[1]))
    raise ShapeError(f"{where}: padding must be 'valid', 'same', 'causal', an int or "
                     f"(before, after); got {padding!r}")


# --------------------------------------------------------------------------------------------
# Receptive fields through layers that are not sliding windows. A jump may become a fraction
# (a transposed convolution or an upsampling makes the grid finer); sizes stay in input pixels.
#
#   transposed conv   output o sits at input-map coordinate (o + crop_before - (k_eff - 1)/2) / s
#                     and reads the inputs i with i*s = o + crop_before - t*d (t = 0..k-1),
#                     at most `taps` of them in a row (ceil(k_eff / s) when d = 1):
#                     rf_out = rf + (taps - 1)*jump, jump_out = jump / s
#   resize n -> m     r = n / m input pixels per output pixel; nearest reads 1 pixel, bilinear 2:
#                     rf_out = rf + (taps - 1)*jump, jump_out = jump * r,
#                     start_out = start + (r/2 - 1/2)*jump   (half-pixel centres)
#   crop              start_out = start + before*jump; rf and jump unchanged
# --------------------------------------------------------------------------------------------

def transpose_taps(kernel: int, stride: int, dilation: int = 1) -> int:
    """The most inputs in a row (first to last, holes included) that feed one output of a
    transposed convolution along an axis: output ``o`` reads the inputs ``i`` with
    ``i*s = o + crop - t*d`` for ``t = 0..k-1``, worst case over ``o``.

    >>> transpose_taps(3, 2), transpose_taps(4, 2), transpose_taps(3, 1, dilation=2)
    (2, 2, 5)
    """
    widest = 1
    for residue in range(stride):                     # o + crop modulo the stride
        hits = [(residue - t * dilation) // stride for t in range(kernel)
                if (residue - t * dilation) % stride == 0]
        if hits:
            widest = max(widest, max(hits) - min(hits) + 1)
    return widest


def receptive_field_after_transpose(previous: ReceptiveField,
                                    geometry: TransposeGeometry) -> ReceptiveField:
    """The receptive field after a transposed convolution (from :func:`transpose_geometry`):
    its stride makes the grid finer (``jump / s``) and each output reads up to
    :func:`transpose_taps` inputs in a row.

    >>> geometry = transpose_geometry((7, 7), 3, 2, "same")
    >>> rf = receptive_field_after_transpose(ReceptiveField(), geometry)
    >>> rf.size, rf.jump, rf.start
    ((2, 2), (0.5, 0.5), (-0.5, -0.5))
    """
    size, jump, start = [], [], []
    for axis in range(2):
        k, s, d = geometry.kernel[axis], geometry.strides[axis], geometry.dilation[axis]
        k_eff, crop_before = d * (k - 1) + 1, geometry.crops[axis][0]
        size.append(previous.size[axis] + (transpose_taps(k, s, d) - 1) * previous.jump[axis])
        jump.append(_exact(previous.jump[axis] / s))
        centre = (crop_before - (k_eff - 1) / 2) / s     # of output 0, in input-map pixels
        start.append(previous.start[axis] + centre * previous.jump[axis])
    return ReceptiveField(tuple(size), tuple(jump), tuple(start))


def receptive_field_after_resize(previous: ReceptiveField, in_hw, out_hw,
                                 interpolation: str = "nearest") -> ReceptiveField:
    """The receptive field after resizing ``in_hw`` to ``out_hw`` (UpSampling, Resizing):
    ``r = n / m`` input pixels per output pixel; ``"nearest"`` reads one pixel,
    ``"bilinear"`` two neighbours along each axis (one when the axis has a single pixel).

    >>> rf = receptive_field_after_resize(ReceptiveField(), (7, 7), (14, 14), "bilinear")
    >>> rf.size, rf.jump, rf.start
    ((2, 2), (0.5, 0.5), (-0.25, -0.25))
    """
    size, jump, start = [], [], []
    for axis in range(2):
        n, m = int(in_hw[axis]), int(out_hw[axis])
        ratio = n / m
        taps = 2 if interpolation == "bilinear" and n > 1 else 1
        size.append(previous.size[axis] + (taps - 1) * previous.jump[axis])
        jump.append(_exact(previous.jump[axis] * ratio))
        start.append(previous.start[axis] + (ratio / 2 - 0.5) * previous.jump[axis])
    return ReceptiveField(tuple(size), tuple(jump), tuple(start))


def receptive_field_after_crop(previous: ReceptiveField, before) -> ReceptiveField:
    """The receptive field after dropping ``before = (top, left)`` pixels (Cropping2D, a
    centred crop): the first output pixel is the one ``before`` pixels in.

    >>> receptive_field_after_crop(ReceptiveField((3, 3), (2, 2)), (1, 0)).start
    (2.0, 0.0)
    """
    start = tuple(previous.start[axis] + before[axis] * previous.jump[axis] for axis in range(2))
    return ReceptiveField(previous.size, previous.jump, start)


def _exact(value: float):
    """An int when ``value`` is whole (so jumps print as ``2``, not ``2.0``)."""
    return int(value) if float(value).is_integer() else value


__all__ += ["transpose_taps", "receptive_field_after_transpose", "receptive_field_after_resize",
            "receptive_field_after_crop"]
