"""Stateful metrics, Keras style: ``update_state`` per batch, ``result()`` at any time,
``reset_state()`` at the start of an epoch.

Every metric here is a running mean of per-sample values (a metric function gives one value
per sample, e.g. 1.0 for a correct prediction), so batches count in proportion to their size
and the epoch's ``result()`` equals the metric over the whole dataset, whatever the batch
sizes::

    >>> import numpy as np
    >>> acc = SparseCategoricalAccuracy()
    >>> acc.update_state([0, 1, 1], [[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])   # 2 of 3
    >>> acc.update_state([0], [[0.6, 0.4]])                                  # 1 of 1
    >>> acc.result()
    0.75

:class:`Mean` averages arbitrary values, optionally weighted: the training loop feeds it the
batch loss with ``sample_weight=batch_size``.
"""
from __future__ import annotations

import numpy as np

from ._validate import as_float_array
from ._configurable import from_registry
from .errors import ConvkitError, ShapeError

__all__ = ["Metric", "Mean", "MeanMetricWrapper", "Accuracy", "SparseCategoricalAccuracy",
           "CategoricalAccuracy", "BinaryAccuracy", "TopKCategoricalAccuracy",
           "SparseTopKCategoricalAccuracy", "MeanSquaredError", "MeanAbsoluteError",
           "accuracy", "sparse_categorical_accuracy", "categorical_accuracy", "binary_accuracy",
           "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy", "get",
           "serialize", "deserialize"]


# ------------------------------------------------------------------ per-sample functions
def _pred(y_pred, where):
    p = as_float_array(y_pred, where, "predictions")
    if p.ndim < 1:
        raise ShapeError(f"{where}: predictions must be at least 1-D, got a scalar")
    return p


def _sparse_labels(y_true, p, where):
    labels = np.asarray(y_true)
    if labels.ndim == p.ndim and labels.ndim >= 1 and labels.shape[-1] == 1 \
            and p.shape[-1] != 1:
        labels = labels[..., 0]                             # (N, 1) -> (N,)
    if labels.shape != p.shape[:-1]:
        raise ShapeError(f"{where}: labels of shape {np.shape(y_true)} do not fit predictions "
                         f"of shape {p.shape}; sparse labels are class indices of shape "
                         f"{p.shape[:-1]}")
    return labels


def _onehot_labels(y_true, p, where):
    t = np.asarray(y_true)
    if t.shape != p.shape:
        hint = " (for class indices use the sparse variant)" if t.shape == p.shape[:-1] else ""
        raise ShapeError(f"{where}: labels of shape {t.shape} do not fit predictions of shape "
                         f"{p.shape}; one-hot labels have the predictions' shape{hint}")
    return t


def accuracy(y_true, y_pred):
    """1.0 where ``y_true == y_pred`` exactly, per element (Keras's ``Accuracy``)."""
    p = np.asarray(y_pred)
    t = np.asarray(y_true)
    if t.shape != p.shape:
        raise ShapeError(f"accuracy: labels of shape {t.shape} do not fit predictions of "
                         f"shape {p.shape}")
    return (t == p).astype(np.float64)


def sparse_categorical_accuracy(y_true, y_pred):
    """1.0 where ``argmax(y_pred, -1) == y_true``; shape ``y_pred.shape[:-1]``."""
    p = _pred(y_pred, "sparse_categorical_accuracy")
    labels = _sparse_labels(y_true, p, "sparse_categorical_accuracy")
    return (np.argmax(p, axis=-1) == labels).astype(np.float64)


def categorical_accuracy(y_true, y_pred):
    """1.0 where ``argmax(y_pred, -1) == argmax(y_true, -1)``."""
    p = _pred(y_pred, "categorical_accuracy")
    t = _onehot_labels(y_true, p, "categorical_accuracy")
    return (np.argmax(p, axis=-1) == np.argmax(t, axis=-1)).astype(np.float64)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """Per sample, the fraction of outputs with ``(y_pred > threshold) == y_true``
    (mean over the last axis)."""
    p = _pred(y_pred, "binary_accuracy")
    t = np.asarray(y_true)
    if t.shape != p.shape:
        if p.shape[-1] == 1 and t.shape == p.shape[:-1]:
            t = t[..., None]
        elif t.ndim >= 1 and t.shape[-1] == 1 and t.shape[:-1] == p.shape:
            t = t[..., 0]
        else:
            raise ShapeError(f"binary_accuracy: labels of shape {t.shape} do not fit "
                             f"predictions of shape {p.shape}")
    hits = (p > threshold).astype(np.float64) == t.astype(np.float64)
    return np.mean(hits, axis=-1)


def _in_top_k(scores, target, k):
    # Target counts as in the top k when fewer than k classes score strictly higher
    # (ties at the boundary count as in, like TensorFlow's in_top_k).
    target_score = np.take_along_axis(scores, target[..., None], axis=-1)   # (..., 1)
    higher = np.sum(scores > target_score, axis=-1)
    return (higher < k).astype(np.float64)


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    """1.0 where the true class (``argmax(y_true)``) is among the ``k`` highest scores."""
    p = _pred(y_pred, "top_k_categorical_accuracy")
    t = _onehot_labels(y_true, p, "top_k_categorical_accuracy")
    return _in_top_k(p, np.argmax(t, axis=-1), k)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5):
    """1.0 where the class index ``y_true`` is among the ``k`` highest scores."""
    p = _pred(y_pred, "sparse_top_k_categorical_accuracy")
    labels = _sparse_labels(y_true, p, "sparse_top_k_categorical_accuracy").astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= p.shape[-1]):
        raise ConvkitError(f"sparse_top_k_categorical_accuracy: labels must be class indices "
                           f"in [0, {p.shape[-1]}), got values in "
                           f"[{labels.min()}, {labels.max()}]")
    return _in_top_k(p, labels, k)


def _squared_error(y_true, y_pred):
    from .losses import mean_squared_error
    return mean_squared_error(y_true, y_pred)


def _absolute_error(y_true, y_pred):
    from .losses import mean_absolute_error
    return mean_absolute_error(y_true, y_pred)


# ------------------------------------------------------------------ metric objects
class Metric:
    """Base class: ``update_state(...)``, ``result() -> float``, ``reset_state()``.

    ``direction`` is ``"up"`` when bigger is better (accuracies), ``"down"`` when smaller is
    (errors, losses), ``None`` when unknown; callbacks in ``mode="auto"`` may use it.
    """

    direction: str | None = None
    default_name = "metric"

    def __init__(self, name: str | None = None):
        self.name = name or self.default_name

    def update_state(self, *args, **kwargs) -> None:
        raise NotImplementedError

    def result(self) -> float:
        raise NotImplementedError

    def reset_state(self) -> None:
        raise NotImplementedError

    def __call__(self, *args, **kwargs) -> float:
        """Update with one batch and return the running result."""
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self) -> dict:
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} result={self.result():.4g}>"


class Mean(Metric):
    """Weighted running mean: ``result = sum(values * w) / sum(w)`` over all updates.

    ``update_state(values, sample_weight=None)``: ``values`` a scalar or array; weights
    broadcast to it (default 1 each). The loss tracker is ``Mean(name="loss")`` updated with
    ``(batch_loss, sample_weight=batch_size)``.

        >>> m = Mean()
        >>> m.update_state(1.0, sample_weight=3); m.update_state(5.0, sample_weight=1)
        >>> m.result()
        2.0
    """

    default_name = "mean"

    def __init__(self, name: str | None = None):
        super().__init__(name)
        self.reset_state()

    def reset_state(self):
        self.total = 0.0
        self.count = 0.0

    def update_state(self, values, sample_weight=None):
        values = np.asarray(values, dtype=np.float64)
        if sample_weight is None:
            self.total += float(np.sum(values))
            self.count += float(values.size)
            return
        weights = np.asarray(sample_weight, dtype=np.float64)
        if weights.ndim <= values.ndim and weights.shape == values.shape[:weights.ndim]:
            # (N,) weights for (N, ...) values: one weight per sample (a scalar: for all)
            weights = weights.reshape(weights.shape + (1,) * (values.ndim - weights.ndim))
        try:
            weights = np.broadcast_to(weights, values.shape)
        except ValueError:
            raise ShapeError(f"{type(self).__name__}: sample_weight of shape {weights.shape} "
                             f"does not fit values of shape {values.shape}") from None
        self.total += float(np.sum(values * weights))
        self.count += float(np.sum(weights))

    def result(self) -> float:
        return self.total / self.count if self.count else 0.0


class MeanMetricWrapper(Mean):
    """A running mean of ``fn(y_true, y_pred, **kwargs)``, which returns per-sample values.

    ``update_state(y_true, y_pred, sample_weight=None)``.

        >>> m = MeanMetricWrapper(lambda t, p: np.abs(np.asarray(t) - p), name="l1")
    """

    def __init__(self, fn, name: str | None = None, direction: str | None = None, **kwargs):
        super().__init__(name or getattr(fn, "__name__", "metric"))
        self._fn = fn
        self._fn_kwargs = kwargs
        if direction is not None:
            self.direction = direction

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = self._fn(y_true, y_pred, **self._fn_kwargs)
        super().update_state(values, sample_weight)

    def get_config(self):
        return {"name": self.name, **self._fn_kwargs}


class Accuracy(MeanMetricWrapper):
    """How often predictions equal labels exactly (Keras's ``Accuracy``)."""
    direction = "up"
    default_name = "accuracy"

    def __init__(self, name=None):
        super().__init__(accuracy, name or self.default_name)

    def get_config(self):
        return {"name": self.name}


class SparseCategoricalAccuracy(MeanMetricWrapper):
    """How often ``argmax(y_pred)`` equals the integer label; labels ``(N,)`` or ``(N, 1)``."""
    direction = "up"
    default_name = "sparse_categorical_accuracy"

    def __init__(self, name=None):
        super().__init__(sparse_categorical_accuracy, name or self.default_name)

    def get_config(self):
        return {"name": self.name}


class CategoricalAccuracy(MeanMetricWrapper):
    """How often ``argmax(y_pred)`` equals ``argmax(y_true)`` (one-hot labels)."""
    direction = "up"
    default_name = "categorical_accuracy"

    def __init__(self, name=None):
        super().__init__(categorical_accuracy, name or self.default_name)

    def get_config(self):
        return {"name": self.name}


class BinaryAccuracy(MeanMetricWrapper):
    """How often ``y_pred > threshold`` matches the 0/1 label."""
    direction = "up"
    default_name = "binary_accuracy"

    def __init__(self, threshold=0.5, name=None):
        super().__init__(binary_accuracy, name or self.default_name, threshold=threshold)
        self.threshold = threshold


class TopKCategoricalAccuracy(MeanMetricWrapper):
    """How often the one-hot label's class is among the ``k`` highest scores."""
    direction = "up"
    default_name = "top_k_categorical_accuracy"

    def __init__(self, k=5, name=None):
        super().__init__(top_k_categorical_accuracy, name or self.default_name, k=int(k))
        self.k = int(k)


class SparseTopKCategoricalAccuracy(MeanMetricWrapper):
    """How often the integer label is among the ``k`` highest scores."""
    direction = "up"
    default_name = "sparse_top_k_categorical_accuracy"

    def __init__(self, k=5, name=None):
        super().__init__(sparse_top_k_categorical_accuracy, name or self.default_name,
                         k=int(k))
        self.k = int(k)


class MeanSquaredError(MeanMetricWrapper):
    """Running mean of the per-sample mean squared error."""
    direction = "down"
    default_name = "mean_squared_error"

    def __init__(self, name=None):
        super().__init__(_squared_error, name or self.default_name)

    def get_config(self):
        return {"name": self.name}


class MeanAbsoluteError(MeanMetricWrapper):
    """Running mean of the per-sample mean absolute error."""
    direction = "down"
    default_name = "mean_absolute_error"

    def __init__(self, name=None):
        super().__init__(_absolute_error, name or self.default_name)

    def get_config(self):
        return {"name": self.name}


class _AutoAccuracy(MeanMetricWrapper):
    """``"accuracy"`` when the loss does not tell which one: chosen from the shapes of the
    first batch, Keras 3's rule (last axis 1 -> binary; labels of lower rank, or last axis 1
    against several classes -> sparse categorical; else categorical)."""
    direction = "up"

    def __init__(self, name="accuracy"):
        super().__init__(self._dispatch, name)
        self._chosen = None

    def _dispatch(self, y_true, y_pred):
        if self._chosen is None:
            t_shape, p_shape = np.shape(y_true), np.shape(y_pred)
            if p_shape and p_shape[-1] == 1:
                self._chosen = binary_accuracy
            elif len(t_shape) < len(p_shape) or (t_shape and t_shape[-1] == 1):
                self._chosen = sparse_categorical_accuracy
            else:
                self._chosen = categorical_accuracy
        return self._chosen(y_true, y_pred)

    def get_config(self):
        return {"name": self.name}


_CLASSES = {cls.__name__: cls for cls in
            (Mean, Accuracy, SparseCategoricalAccuracy, CategoricalAccuracy, BinaryAccuracy,
             TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy, MeanSquaredError,
             MeanAbsoluteError)}
_ALIASES = {
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "binary_accuracy": BinaryAccuracy,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
}
_LOSS_METRICS = ("categorical_crossentropy", "sparse_categorical_crossentropy",
                 "binary_crossentropy")


def _accuracy_for_loss(loss, name):
    from . import losses as losses_module
    try:
        loss_obj = losses_module.get(loss) if loss is not None else None
    except ConvkitError:
        loss_obj = None
    if isinstance(loss_obj, losses_module.SparseCategoricalCrossentropy):
        return SparseCategoricalAccuracy(name=name)
    if isinstance(loss_obj, losses_module.CategoricalCrossentropy):
        return CategoricalAccuracy(name=name)
    if isinstance(loss_obj, losses_module.BinaryCrossentropy):
        # from_logits: the decision boundary of a logit is 0, not 0.5
        return BinaryAccuracy(name=name, threshold=0.0 if loss_obj.from_logits else 0.5)
    return _AutoAccuracy(name=name)


def serialize(metric: Metric) -> dict:
    """``{"class_name": ..., "config": ...}`` (built-in metric classes only)."""
    name = type(metric).__name__
    if name not in _CLASSES:
        raise ConvkitError(f"metrics.serialize: only built-in metric classes can be "
                           f"serialised, got {name}")
    return {"class_name": name, "config": metric.get_config()}


def deserialize(config: dict) -> Metric:
    """Inverse of :func:`serialize`."""
    return from_registry(_CLASSES, config, "metrics.deserialize", "metric")


def get(identifier, loss=None) -> Metric:
    """A fresh :class:`Metric` from a Keras string, a dict, a class, an instance or a
    function ``fn(y_true, y_pred) -> per-sample values``.

    ``"accuracy"`` / ``"acc"`` follow the loss (a name or Loss object), as Keras does:
    sparse categorical cross-entropy -> :class:`SparseCategoricalAccuracy`, categorical
    cross-entropy -> :class:`CategoricalAccuracy`, binary cross-entropy ->
    :class:`BinaryAccuracy` (threshold 0 for ``from_logits=True``); with any other loss the
    choice is made from the shapes of the first batch (Keras 3's rule). A metric made from a
    string is named by that string (``"acc"`` logs as ``acc``, ``val_acc``).

        >>> get("accuracy", loss="sparse_categorical_crossentropy")
        <SparseCategoricalAccuracy name='accuracy' result=0>
    """
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, str):
        key = identifier.lower()
        if key in ("accuracy", "acc"):
            return _accuracy_for_loss(loss, identifier)
        if key in _ALIASES:
            return _ALIASES[key](name=identifier)
        if identifier in _CLASSES:
            return _CLASSES[identifier]()
        if key in _LOSS_METRICS:
            from . import losses as losses_module
            return MeanMetricWrapper(getattr(losses_module, key), name=identifier,
                                     direction="down")
        raise ConvkitError(f"metrics.get: unknown metric {identifier!r}; known: 'accuracy', "
                           f"'acc', {', '.join(repr(k) for k in _ALIASES)}, "
                           f"{', '.join(repr(k) for k in _LOSS_METRICS)}")
    if callable(identifier):
        return MeanMetricWrapper(identifier)
    raise ConvkitError(f"metrics.get: cannot interpret {identifier!r} as a metric")
