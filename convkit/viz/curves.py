"""Training curves: loss and metrics per epoch, training and validation."""
from __future__ import annotations

import csv
import os

import numpy as np

from ..errors import ConvkitError, FileFormatError
from . import _mpl

__all__ = ["plot_history", "read_history"]


def read_history(history_or_csv_path) -> dict[str, list[float]]:
    """``{"loss": [...], "accuracy": [...], "val_loss": [...], ...}`` from a
    :class:`convkit.callbacks.History` (or the object ``fit`` returns), a plain dict of lists,
    or the path of a CSV written by ``CSVLogger`` (an ``epoch`` column is dropped)."""
    source = history_or_csv_path
    if isinstance(source, (str, os.PathLike)):
        return _read_csv(os.fspath(source))
    if hasattr(source, "history"):
        source = source.history
    if not isinstance(source, dict):
        raise ConvkitError(f"plot_history: expected a History, a dict of lists or a CSV path, "
                           f"got {type(source).__name__}")
    history = {}
    for key, values in source.items():
        if key == "epoch":
            continue
        values = np.asarray(values, dtype=np.float64).ravel()
        history[str(key)] = [float(v) for v in values]
    if not history or not any(history.values()):
        raise ConvkitError("plot_history: the history is empty (no epochs recorded)")
    return history


def _read_csv(path: str) -> dict[str, list[float]]:
    if not os.path.exists(path):
        raise ConvkitError(f"plot_history: CSV file {path!r} does not exist")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise FileFormatError(f"plot_history: {path!r} has no rows (expected a header line "
                              f"like epoch,loss,accuracy,val_loss,... and one row per epoch)")
    history: dict[str, list[float]] = {}
    for line, row in enumerate(rows, start=2):
        for key, value in row.items():
            if key is None or key == "epoch":
                continue
            # CSVLogger writes NA where an epoch has no value (e.g. the val_ columns of a
            # run without validation data)
            missing = value is None or value.strip() in _MISSING
            try:
                history.setdefault(key, []).append(float("nan") if missing else float(value))
            except ValueError:
                raise FileFormatError(f"plot_history: {path!r} line {line}: column {key!r} "
                                      f"is not a number ({value!r})") from None
    # A column with no value at all (NA in every row) has nothing to draw.
    history = {key: values for key, values in history.items()
               if not all(np.isnan(values))}
    if not history:
        raise FileFormatError(f"plot_history: {path!r} has no numeric column besides epoch")
    return history


_MISSING = ("", "NA", "N/A", "nan", "NaN")


def _pretty(name: str) -> str:
    return name.replace("_", " ")


def plot_history(history_or_csv_path, path=None, title: str | None = None):
    """Plot the loss and every metric per epoch, training (solid) and validation (dashed).

    One panel per quantity (``loss`` first, then ``accuracy`` etc.), epochs numbered from 1;
    with validation data a legend labels each line ``"training"`` or ``"validation"`` with
    its final value, without it the panel title carries the final value and there is no
    legend. Accepts what
    :func:`read_history` accepts. Returns the Figure; writes a PNG to ``path`` if given.

    Example::

        history = model.fit(x, y, epochs=5, validation_split=0.1)
        plot_history(history, path="curves.png")
    """
    history = read_history(history_or_csv_path)
    bases = [k for k in history if not k.startswith("val_")]
    bases += [k[4:] for k in history if k.startswith("val_") and k[4:] not in history]
    bases.sort(key=lambda k: (k != "loss", k == "learning_rate" or k == "lr", k))
    fig = _mpl.new_figure(4.2 * len(bases) + 0.4, 3.6)
    validated = any(key.startswith("val_") for key in history)
    for index, base in enumerate(bases):
        ax = fig.add_subplot(1, len(bases), index + 1)
        for key, label, style in ((base, "training", "-"), (f"val_{base}", "validation", "--")):
            if key not in history:
                continue
            values = history[key]
            epochs = np.arange(1, len(values) + 1)
            ax.plot(epochs, values, style, marker="o" if len(values) <= 30 else None,
                    markersize=4, label=f"{label} (last {values[-1]:.4g})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(_pretty(base))
        last = "" if validated else f" (last {history[base][-1]:.4g})"
        ax.set_title(_pretty(base) + last, fontsize=11)
        ax.set_label(base)
        from matplotlib.ticker import MaxNLocator
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if validated:
            ax.legend(fontsize=8)
    default = ("Training curves: solid = training data, dashed = validation data" if validated
               else "Training curves on the training data (no validation data)")
    fig.suptitle(title or default, fontsize=11)
    return _mpl.finish(fig, path)
