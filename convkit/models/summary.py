"""``model.summary()``: Keras 3's table, drawn with box characters, no data run.

    Model: "sequential"
    ┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓
    ┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃
    ┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩
    │ conv2d (Conv2D)                 │ (None, 26, 26, 32)     │           320 │
    ├─────────────────────────────────┼────────────────────────┼───────────────┤
    ...
    └─────────────────────────────────┴────────────────────────┴───────────────┘
     Total params: 34,826 (136.04 KB)
     Trainable params: 34,826 (136.04 KB)
     Non-trainable params: 0 (0.00 B)

Layout rules, as Keras 3 computes them: the line is ``line_length`` characters (default
``min(88, terminal width - 4)``, 108 with the ``Connected to`` column, which appears only
when the graph branches); column ``i`` gets ``int(p_i * L) - int(p_{i-1} * L)`` characters
from the relative positions ``(0.45, 0.80, 1.0)`` (``(0.3, 0.56, 0.74, 1.0)`` with
connections); when the borders do not fit, the columns give up the excess in turn
(``round(excess_left / columns_left)`` each); cells word-wrap, and a word longer than its
cell is cut with ``…`` (a long layer name, a ``Connected to`` entry). Parameter counts use
thousands separators; sizes are in 1024-based units with two decimals.

A model used as a layer is one row ``encoder (Sequential)`` with all its parameters;
``expand_nested=True`` adds its layers below it, indented with ``└``. A shared layer is one
row whose ``Connected to`` lists every call's inputs; a tensor made by a layer's second call
is ``layer[1][0]``.

The rows are also available as data, :func:`summary_rows`, for programs and for
:mod:`convkit.explain`.
"""
from __future__ import annotations

import shutil

import numpy as np

__all__ = ["summary_rows", "format_summary", "print_summary", "readable_size"]


def _shape_text(shape) -> str:
    if shape is None:
        return "?"
    if isinstance(shape, list):
        return "[" + ", ".join(_shape_text(s) for s in shape) + "]"
    return "(" + ", ".join("None" if s is None else str(s) for s in shape) + \
        ("," if len(shape) == 1 else "") + ")"


def readable_size(n_bytes: float) -> str:
    """``139304`` -> ``"136.04 KB"`` (1024-based, two decimals, as Keras prints it)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n_bytes / 1024 < 1:
            return f"{n_bytes:.2f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.2f} PB"


def _is_sequential_like(model) -> bool:
    """Keras prints the ``Connected to`` column only for graphs that branch or merge."""
    nodes = getattr(model, "_nodes", None)
    if nodes is None or type(model).__name__ == "Sequential":
        return True
    if len(getattr(model, "_inputs", [])) > 1 or len(getattr(model, "_outputs", [])) > 1:
        return False
    for node in nodes:
        if len(node.inputs) > 1 or node.shared:
            return False
    consumers = getattr(model, "_consumers", {})
    return all(count <= 1 for count in consumers.values())


def summary_rows(model) -> list[dict]:
    """One dict per row: ``name``, ``class``, ``output_shape`` (tuple with ``None`` batch,
    or None if unknown), ``params``, ``trainable_params``, ``non_trainable_params``,
    ``trainable`` (the layer's flag), ``connected_to`` (names of the layers it reads, for
    functional models; every call's for a shared layer), ``connected_refs`` (the same as
    Keras prints them, ``name[call][0]``) and ``layer`` (the object itself)."""
    inbound, refs = {}, {}
    nodes = getattr(model, "_nodes", None) or []
    call_of = {id(node.output): node.call_index for node in nodes}
    for node in nodes:
        inbound.setdefault(id(node.layer), []).extend(_producer_name(t) for t in node.inputs)
        refs.setdefault(id(node.layer), []).extend(
            f"{_producer_name(t)}[{call_of.get(id(t), 0)}][0]" for t in node.inputs)
    built = model.built
    rows = []
    for layer in model.layers:
        weights = list(layer.weights)
        trainable = sum(int(w.value.size) for w in layer.trainable_weights) \
            if model.trainable else 0
        total = sum(int(w.value.size) for w in weights)
        shape = layer.output_shape if getattr(layer, "built", False) else None
        if shape is None and type(layer).__name__ == "InputLayer":
            shape = _input_output_shape(layer)
        if shape is not None and not isinstance(shape, list):
            shape = tuple(shape)
        rows.append({"name": layer.name, "class": type(layer).__name__,
                     "output_shape": shape, "params": total,
                     "trainable_params": trainable, "non_trainable_params": total - trainable,
                     "trainable": bool(layer.trainable), "built": bool(built and layer.built)
                     or type(layer).__name__ == "InputLayer",
                     "connected_to": inbound.get(id(layer), []),
                     "connected_refs": refs.get(id(layer), []), "layer": layer})
    return rows


def _producer_name(tensor) -> str:
    return tensor.layer.name if tensor.layer is not None else "input"


def _input_output_shape(layer):
    for attr in ("batch_shape", "output_shape"):
        shape = getattr(layer, attr, None)
        if shape is not None:
            return (None,) + tuple(shape)[1:]
    return None


def _reduce_widths(widths: list[int], excess: int) -> list[int]:
    """Take ``excess`` characters off the columns, spreading it evenly, first columns first."""
    result, remaining, left = [], excess, len(widths)
    for width in widths:
        cut = min(width, round(remaining / left))
        result.append(width - cut)
        remaining -= cut
        left -= 1
    return result


def _wrap(text: str, width: int) -> list[str]:
    """Greedy word wrap at spaces and line breaks; a word longer than the cell is cut to
    the cell with an ellipsis, ``a_very_long_inpu…``."""
    lines = []
    for paragraph in text.split("\n"):
        lines += _wrap_line(paragraph, width)
    return lines


def _wrap_line(text: str, width: int) -> list[str]:
    indent = text[:len(text) - len(text.lstrip(" "))]   # a nested row keeps its indent
    lines, current = [], None
    for word in text[len(indent):].split(" "):
        if current is None:                           # the first word follows the indent
            word = indent + word
        if len(word) > width:
            word = word[:width - 1] + "…"
        if current is None or not current:
            current = word
        elif len(current) + 1 + len(word) <= width:
            current += " " + word
        else:
            lines.append(current)
            current = word
    lines.append(current or "")
    return lines


def _table(header: list[str], rows: list[list[str]], widths: list[int],
           align: list[str]) -> list[str]:
    """Box-drawn table; ``widths`` are the cell widths without the one-space padding."""
    def rule(left, mid, right, fill):
        return left + mid.join(fill * (w + 2) for w in widths) + right

    def cells(values, sides, sep):
        wrapped = [_wrap(v, w) for v, w in zip(values, widths)]
        height = max(len(c) for c in wrapped)
        lines = []
        for i in range(height):
            parts = []
            for col, (lines_of_cell, w) in enumerate(zip(wrapped, widths)):
                text = lines_of_cell[i] if i < len(lines_of_cell) else ""
                text = text.rjust(w) if align[col] == "right" else text.ljust(w)
                parts.append(" " + text + " ")
            lines.append(sides + sep.join(parts) + sides)
        return lines

    out = [rule("┏", "┳", "┓", "━")]
    out += cells(header, "┃", "┃")
    out.append(rule("┡", "╇", "┩", "━"))
    for i, row in enumerate(rows):
        if i:
            out.append(rule("├", "┼", "┤", "─"))
        out += cells(row, "│", "│")
    out.append(rule("└", "┴", "┘", "─"))
    return out


def format_summary(model, line_length: int | None = None, positions=None,
                   expand_nested: bool = False) -> str:
    """The summary text of ``model`` (what :func:`print_summary` prints)."""
    sequential_like = _is_sequential_like(model)
    if sequential_like:
        default_length, default_positions = 88, [0.45, 0.80, 1.0]
        header = ["Layer (type)", "Output Shape", "Param #"]
        align = ["left", "left", "right"]
    else:
        default_length, default_positions = 108, [0.3, 0.56, 0.74, 1.0]
        header = ["Layer (type)", "Output Shape", "Param #", "Connected to"]
        align = ["left", "left", "right", "left"]
    if line_length is None:
        line_length = min(default_length, shutil.get_terminal_size((80, 24)).columns - 4)
    positions = list(positions or default_positions)
    if len(positions) != len(header):
        raise ValueError(f"summary: positions needs {len(header)} entries, got {positions}")
    if positions[-1] <= 1:
        positions = [int(p * line_length) for p in positions]
    widths, current = [], 0
    for pos in positions:
        width = int(pos) - current
        if width < 4:
            raise ValueError(f"summary: line_length={line_length} is too narrow for the table")
        widths.append(width)
        current += width
    # Each column is drawn `width` wide including its padding; the borders need room too.
    excess = sum(widths) + len(widths) + 1 - line_length
    if excess > 0:
        widths = _reduce_widths(widths, excess)
    widths = [max(w - 2, 1) for w in widths]

    rows = []
    for r, level in _rows_with_nested(model, expand_nested):
        params = f"{r['params']:,}" if r["built"] else "0 (unbuilt)"
        prefix = "   " * level + "└ " if level else ""
        row = [f"{prefix}{r['name']} ({r['class']})", _shape_text(r["output_shape"]), params]
        if not sequential_like:
            refs = r["connected_refs"] if level == 0 else []
            row.append(", ".join(refs) or "-")
        rows.append(row)

    lines = [f'Model: "{model.name}"']
    lines += _table(header, rows, widths, align)
    trainable = [w for w in model.trainable_weights] if model.built else []
    every = list(model.weights) if model.built else []
    trainable_ids = {id(w) for w in trainable}
    non_trainable = [w for w in every if id(w) not in trainable_ids]
    n_train = sum(int(w.value.size) for w in trainable)
    n_non = sum(int(w.value.size) for w in non_trainable)
    b_train = sum(int(w.value.nbytes) for w in trainable)
    b_non = sum(int(w.value.nbytes) for w in non_trainable)
    n_opt, b_opt = _optimizer_params(model)
    lines.append(f" Total params: {n_train + n_non + n_opt:,} "
                 f"({readable_size(b_train + b_non + b_opt)})")
    lines.append(f" Trainable params: {n_train:,} ({readable_size(b_train)})")
    lines.append(f" Non-trainable params: {n_non:,} ({readable_size(b_non)})")
    if n_opt:
        lines.append(f" Optimizer params: {n_opt:,} ({readable_size(b_opt)})")
    return "\n".join(lines)


def _rows_with_nested(model, expand_nested: bool, level: int = 0):
    """``(row, nesting level)`` for every layer, a nested model's layers after it when
    ``expand_nested``."""
    for row in summary_rows(model):
        yield row, level
        inner = row["layer"]
        if expand_nested and hasattr(inner, "summary_rows") and inner.layers:
            yield from _rows_with_nested(inner, expand_nested, level + 1)


def _optimizer_params(model) -> tuple[int, int]:
    """Scalars and bytes of the optimizer's state once it has one (Keras counts them too)."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not hasattr(optimizer, "get_state") or \
            not getattr(optimizer, "iterations", 0):
        return 0, 0         # Keras lists the optimizer only once it has taken a step
    try:
        state = optimizer.get_state() or {}
    except Exception:  # an optimizer that cannot report its state simply isn't counted
        return 0, 0
    arrays = [np.asarray(v) for v in state.values()]
    return sum(int(a.size) for a in arrays), sum(int(a.nbytes) for a in arrays)


def print_summary(model, print_fn=None, line_length: int | None = None,
                  positions=None, expand_nested: bool = False) -> None:
    """Print :func:`format_summary`; ``print_fn`` (default ``print``) gets the whole text."""
    text = format_summary(model, line_length=line_length, positions=positions,
                          expand_nested=expand_nested)
    (print if print_fn is None else print_fn)(text)
