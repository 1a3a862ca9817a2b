"""Where ``fit``/``evaluate``/``predict`` get their batches from, besides arrays.

* a :class:`convkit.utils.PyDataset` (anything with ``__len__`` and ``__getitem__``, such as
  the datasets of :func:`convkit.utils.image_dataset_from_directory`): batch ``i`` is
  ``data[i]``, ``len(data)`` batches per epoch, ``data.on_epoch_end()`` after each epoch;
* a Python generator or iterator: ``next(data)`` per batch; an epoch is ``steps`` batches,
  or everything until the iterator runs out when no ``steps`` is given.

A batch is ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``, as in Keras; ``x`` may be
a list of arrays for a model with several inputs and ``y`` a list (or dict) of arrays for a
model with several outputs.

:func:`class_weight_to_sample_weight` turns Keras's ``class_weight={class: weight}`` into one
weight per sample.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConvkitError, ShapeError

__all__ = ["is_batch_source", "BatchSource", "unpack", "class_weight_to_sample_weight"]


def is_batch_source(data) -> bool:
    """True for a PyDataset-like sequence or an iterator (not for arrays, lists or dicts)."""
    if data is None or isinstance(data, (np.ndarray, list, tuple, dict, str, bytes)):
        return False
    if hasattr(data, "__next__"):
        return True
    return hasattr(data, "__getitem__") and hasattr(data, "__len__") and \
        not hasattr(data, "shape")


def unpack(batch, where: str):
    """``(x, y, sample_weight)`` from a batch (missing parts ``None``)."""
    if isinstance(batch, tuple):
        if not 1 <= len(batch) <= 3:
            raise ConvkitError(f"{where}: a batch must be x, (x, y) or (x, y, sample_weight), "
                               f"got a tuple of {len(batch)}")
        return tuple(batch) + (None,) * (3 - len(batch))
    return batch, None, None


class BatchSource:
    """Batches from a sequence or an iterator, one epoch at a time."""

    def __init__(self, data, steps: int | None, where: str):
        self.data = data
        self.where = where
        self.sequence = not hasattr(data, "__next__")
        self.requested_steps = steps
        if self.sequence and len(data) == 0:
            raise ConvkitError(f"{where}: the dataset has no batches (len() is 0)")

    @property
    def steps(self) -> int | None:
        """Batches per epoch if known (for the progress bar), else ``None``."""
        if self.requested_steps is not None:
            return self.requested_steps
        return len(self.data) if self.sequence else None

    def epoch(self):
        """The batches of one epoch, each ``(x, y, sample_weight)``."""
        if self.sequence:
            count = len(self.data)
            steps = self.requested_steps or count
            for step in range(steps):
                yield unpack(self.data[step % count], self.where)
            return
        produced = 0
        while self.requested_steps is None or produced < self.requested_steps:
            try:
                batch = next(self.data)
            except StopIteration:
                if produced == 0:
                    raise ConvkitError(f"{self.where}: the generator has no more data; make it "
                                       f"loop forever and pass steps_per_epoch (and "
                                       f"validation_steps / steps)") from None
                return
            produced += 1
            yield unpack(batch, self.where)

    def end_epoch(self) -> None:
        on_epoch_end = getattr(self.data, "on_epoch_end", None)
        if self.sequence and callable(on_epoch_end):
            on_epoch_end()


def class_weight_to_sample_weight(y, class_weight: dict, where: str) -> np.ndarray:
    """One weight per sample, ``class_weight[label]``: labels are integers ``(N,)`` /
    ``(N, 1)``, or the argmax of one-hot rows ``(N, classes)``. Classes missing from the
    dict weigh 1."""
    if not isinstance(class_weight, dict):
        raise ConvkitError(f"{where}: class_weight must be a dict {{class index: weight}}, "
                           f"got {type(class_weight).__name__}")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        labels = np.argmax(y, axis=1)                    # one-hot rows -> class indices
    elif y.ndim == 2 and y.shape[1] == 1 and not np.issubdtype(y.dtype, np.integer) and \
            np.all((y == 0) | (y == 1)):
        labels = y[:, 0].astype(np.int64)                # binary targets
    else:
        labels = y.reshape(len(y), -1)[:, 0]
    if not np.all(np.mod(labels, 1) == 0):
        raise ShapeError(f"{where}: class_weight needs class labels in y, got non-integer "
                         f"values (dtype {y.dtype})")
    labels = labels.astype(np.int64)
    table = np.ones(max(int(labels.max()) + 1, 1) if labels.size else 1, dtype=np.float64)
    for key, weight in class_weight.items():
        key = int(key)
        if key < 0:
            raise ConvkitError(f"{where}: class_weight key {key} is not a class index")
        if key < len(table):
            table[key] = float(weight)
    return table[labels]
