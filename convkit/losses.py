"""Losses with Keras's formulas, their gradients, and the fused softmax/sigmoid shortcut.

Every loss computes a per-sample value by reducing the last axis, then Keras's default
reduction ``"sum_over_batch_size"``: the mean of the per-sample values (optionally
multiplied by ``sample_weight`` first, still divided by their count). For predictions of
shape ``(N, C)`` that is the mean over the batch; for ``(N, H, W, C)`` the mean over
``N * H * W``.

``loss(y_true, y_pred)`` returns that mean as a Python float. ``loss.gradient(y_true, y_pred)``
returns ``dL/dy_pred`` with the shape and dtype of ``y_pred`` (the ``1 / count`` already in).

Fusion: when the model's last activation is softmax (sigmoid) and the loss is a
cross-entropy on probabilities, ``loss.fusable_with("softmax")`` is True and
``loss.gradient_wrt_logits(y_true, probs)`` gives ``dL/dlogits = (p * sum(t) - t) / count``
(``(p - t) / count`` for one-hot labels) straight from the probabilities, so the model skips
the activation's backward pass. That is the gradient of the *unclipped* cross-entropy of the
logits, which is what Keras trains with on the TensorFlow backend (it reads the logits behind a
softmax output).

Numerics: with ``from_logits=False`` probabilities are clipped to ``[1e-7, 1 - 1e-7]`` (the
categorical losses first rescale each row to sum to 1, as Keras does); with
``from_logits=True`` the losses use log-sum-exp / ``max(z, 0) - z t + log(1 + exp(-|z|))``,
which stay finite for any logits.

    >>> import numpy as np
    >>> y = np.array([[0., 1.], [1., 0.]])
    >>> p = np.array([[0.2, 0.8], [0.6, 0.4]])
    >>> round(CategoricalCrossentropy()(y, p), 6)       # (-log 0.8 - log 0.6) / 2
    0.366985
"""
from __future__ import annotations

import warnings

import numpy as np

from ._validate import as_float_array
from ._configurable import from_registry
from .errors import ConvkitError, ShapeError

__all__ = ["Loss", "CategoricalCrossentropy", "SparseCategoricalCrossentropy",
           "BinaryCrossentropy", "MeanSquaredError", "MeanAbsoluteError", "LossFunctionWrapper",
           "categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy",
           "mean_squared_error", "mean_absolute_error", "mse", "mae", "get", "serialize",
           "deserialize", "EPSILON"]

#: Keras's ``backend.epsilon()``: how far probabilities are kept from 0 and 1.
EPSILON = 1e-7


# ------------------------------------------------------------------ numerics
def _log_softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - np.max(z, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(z))                      # in (0, 1]: never overflows
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


# ------------------------------------------------------------------ base class
class Loss:
    """Base class. Subclasses implement ``_forward(t, p) -> per-sample losses`` and
    ``_backward(t, p) -> d(sum of per-sample losses)/dp``; the base class validates the
    inputs, applies ``sample_weight`` and the ``sum_over_batch_size`` reduction."""

    reduction = "sum_over_batch_size"
    default_name = "loss"

    def __init__(self, name: str | None = None):
        self.name = name or self.default_name
        self._warned_range = False

    # --- to override
    def _prepare(self, y_true, y_pred):
        """Validated ``(t, p)``: ``p`` float32/float64, ``t`` in a form ``_forward`` takes."""
        raise NotImplementedError

    def _forward(self, t, p) -> np.ndarray:
        raise NotImplementedError

    def _backward(self, t, p) -> np.ndarray:
        raise NotImplementedError

    def fusable_with(self, activation_name) -> bool:
        """True when :meth:`gradient_wrt_logits` may replace this loss's gradient followed by
        the backward of ``activation_name`` (the model's final activation)."""
        return False

    def gradient_wrt_logits(self, y_true, y_pred_probs, sample_weight=None) -> np.ndarray:
        """``dL/dlogits`` given the probabilities of the fused final activation."""
        raise ConvkitError(f"{type(self).__name__}: no fused gradient; "
                           f"fusable_with() is False for every activation")

    # --- public API
    def call(self, y_true, y_pred) -> np.ndarray:
        """Per-sample losses (the last axis reduced), before the batch reduction."""
        t, p = self._prepare(y_true, y_pred)
        return self._forward(t, p)

    def __call__(self, y_true, y_pred, sample_weight=None) -> float:
        t, p = self._prepare(y_true, y_pred)
        per_sample = self._forward(t, p)
        weights = self._weights(sample_weight, per_sample.shape, p.dtype)
        if weights is not None:
            per_sample = per_sample * weights
        return float(np.sum(per_sample) / max(per_sample.size, 1))

    def gradient(self, y_true, y_pred, sample_weight=None) -> np.ndarray:
        """``dL/dy_pred`` of :meth:`__call__`, shaped and typed like ``y_pred``."""
        t, p = self._prepare(y_true, y_pred)
        grad = self._backward(t, p)
        return self._reduce_grad(grad, p, sample_weight)

    def _reduce_grad(self, grad, p, sample_weight):
        per_sample_shape = p.shape[:-1]
        count = max(int(np.prod(per_sample_shape)), 1)
        weights = self._weights(sample_weight, per_sample_shape, p.dtype)
        if weights is not None:
            grad = grad * weights[..., None]
        return (grad / p.dtype.type(count)).astype(p.dtype, copy=False)

    def _weights(self, sample_weight, per_sample_shape, dtype):
        if sample_weight is None:
            return None
        w = np.asarray(sample_weight, dtype=dtype)
        if w.shape == per_sample_shape:
            return w
        if w.ndim == 1 and len(per_sample_shape) >= 1 and w.shape[0] == per_sample_shape[0]:
            return np.broadcast_to(w.reshape((-1,) + (1,) * (len(per_sample_shape) - 1)),
                                   per_sample_shape)
        if w.ndim == 0:
            return np.broadcast_to(w, per_sample_shape)
        raise ShapeError(f"{type(self).__name__}: sample_weight of shape {w.shape} does not fit "
                         f"per-sample losses of shape {per_sample_shape}")

    def _check_range(self, p):
        # Logits handed to a probability loss give silently wrong training; say so once.
        if not self._warned_range and (np.min(p) < 0 or np.max(p) > 1):
            self._warned_range = True
            warnings.warn(f"{type(self).__name__}: predictions outside [0, 1] with "
                          f"from_logits=False; if the model outputs logits (no final "
                          f"softmax/sigmoid), use from_logits=True", stacklevel=4)

    def _float_pair(self, y_true, y_pred):
        where = type(self).__name__
        p = as_float_array(y_pred, where, "predictions")
        t = as_float_array(y_true, where, "labels").astype(p.dtype, copy=False)
        return t, p

    def _same_shape(self, t, p, allow_squeeze=True):
        """Labels must have the predictions' shape; ``(N,)`` vs ``(N, 1)`` is reconciled."""
        if t.shape == p.shape:
            return t
        if allow_squeeze and p.ndim >= 1 and p.shape[-1] == 1 and t.shape == p.shape[:-1]:
            return t[..., None]
        if allow_squeeze and t.ndim >= 1 and t.shape[-1] == 1 and t.shape[:-1] == p.shape:
            return t[..., 0]
        raise ShapeError(f"{type(self).__name__}: labels of shape {t.shape} do not fit "
                         f"predictions of shape {p.shape}; they must have the same shape")

    def get_config(self) -> dict:
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config: dict):
        config = {k: v for k, v in config.items() if k != "reduction"}
        return cls(**config)

    def __repr__(self):
        cfg = {k: v for k, v in self.get_config().items()
               if k not in ("name", "reduction") and v not in (False, 0.0, None)}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in cfg.items())})"


# ------------------------------------------------------------------ cross-entropies
class _CrossentropyBase(Loss):
    """Shared categorical cross-entropy math on one-hot (or soft) targets ``t``."""

    def __init__(self, from_logits=False, label_smoothing=0.0, name=None):
        super().__init__(name)
        if not 0.0 <= float(label_smoothing) <= 1.0:
            raise ConvkitError(f"{type(self).__name__}: label_smoothing must be in [0, 1], "
                               f"got {label_smoothing!r}")
        self.from_logits = bool(from_logits)
        self.label_smoothing = float(label_smoothing)

    def _smooth(self, t):
        if self.label_smoothing:
            classes = t.shape[-1]
            t = t * (1 - self.label_smoothing) + self.label_smoothing / classes
        return t

    def _forward(self, t, p):
        # loss = -sum_k t_k log q_k with q = softmax(z), or q = clip(p / sum(p))
        if self.from_logits:
            log_q = _log_softmax(p)
        else:
            self._check_range(p)
            q = p / np.sum(p, axis=-1, keepdims=True)
            log_q = np.log(np.clip(q, EPSILON, 1 - EPSILON))
        return -np.sum(t * log_q, axis=-1)

    def _backward(self, t, p):
        if self.from_logits:
            # d/dz of -sum t log softmax(z) = softmax(z) * sum(t) - t
            return _softmax(p) * np.sum(t, axis=-1, keepdims=True) - t
        # q = p / S, qc = clip(q); dL/dq = -t / qc where not clipped, else 0;
        # dq_j/dp_k = (delta_jk - q_j) / S  =>  dL/dp = (g - sum(g * q)) / S
        total = np.sum(p, axis=-1, keepdims=True)
        q = p / total
        q_clipped = np.clip(q, EPSILON, 1 - EPSILON)
        inside = (q > EPSILON) & (q < 1 - EPSILON)
        g = np.where(inside, -t / q_clipped, 0)
        return (g - np.sum(g * q, axis=-1, keepdims=True)) / total

    def fusable_with(self, activation_name) -> bool:
        return not self.from_logits and _activation_name(activation_name) == "softmax"

    def gradient_wrt_logits(self, y_true, y_pred_probs, sample_weight=None):
        """``dL/dlogits = (p * sum(t) - t) / count`` for a softmax output ``p``."""
        t, p = self._prepare(y_true, y_pred_probs)
        grad = p * np.sum(t, axis=-1, keepdims=True) - t
        return self._reduce_grad(grad, p, sample_weight)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits}


class CategoricalCrossentropy(_CrossentropyBase):
    """Cross-entropy between one-hot (or soft) labels and class scores, last axis::

        loss_n = -sum_k t_nk * log(q_nk)

    with ``q = softmax(y_pred)`` if ``from_logits`` else ``clip(y_pred / sum(y_pred),
    1e-7, 1 - 1e-7)``. ``label_smoothing = s`` replaces ``t`` by ``t (1 - s) + s / K``.
    Labels and predictions have the same shape ``(N, K)`` (or ``(N, ..., K)``).

        >>> round(CategoricalCrossentropy()([[0, 1]], [[0.5, 0.5]]), 6)
        0.693147
    """

    default_name = "categorical_crossentropy"

    def _prepare(self, y_true, y_pred):
        t, p = self._float_pair(y_true, y_pred)
        if t.ndim == p.ndim - 1 and t.shape == p.shape[:-1]:
            raise ShapeError(
                f"CategoricalCrossentropy: labels of shape {t.shape} do not fit predictions "
                f"of shape {p.shape}; categorical labels are one-hot of shape {p.shape} "
                f"(for class indices use SparseCategoricalCrossentropy)")
        if t.shape != p.shape:
            raise ShapeError(f"CategoricalCrossentropy: labels of shape {t.shape} do not fit "
                             f"predictions of shape {p.shape}; one-hot labels have the "
                             f"predictions' shape")
        return self._smooth(t), p

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


class SparseCategoricalCrossentropy(_CrossentropyBase):
    """Categorical cross-entropy with integer class labels: ``loss_n = -log(q_n[y_n])``.

    Labels have shape ``(N,)`` (or ``(N, 1)``; generally ``y_pred.shape[:-1]``) and hold class
    indices in ``[0, K)``; predictions ``(N, K)``. Same ``q`` as
    :class:`CategoricalCrossentropy`.

        >>> round(SparseCategoricalCrossentropy()([1], [[0.2, 0.8]]), 6)
        0.223144
    """

    default_name = "sparse_categorical_crossentropy"

    def __init__(self, from_logits=False, name=None):
        super().__init__(from_logits=from_logits, name=name)

    def _prepare(self, y_true, y_pred):
        where = "SparseCategoricalCrossentropy"
        p = as_float_array(y_pred, where, "predictions")
        labels = np.asarray(y_true)
        if p.ndim < 1:
            raise ShapeError(f"{where}: predictions must have a class axis, got shape {p.shape}")
        if labels.ndim == p.ndim and labels.shape[-1] == 1 and p.shape[-1] != 1:
            labels = labels[..., 0]                         # (N, 1) -> (N,)
        if labels.shape != p.shape[:-1]:
            raise ShapeError(
                f"{where}: labels of shape {np.shape(y_true)} do not fit predictions of shape "
                f"{p.shape}; sparse labels are class indices of shape {p.shape[:-1]}")
        if labels.dtype.kind not in "iub":
            as_float = as_float_array(labels, where, "labels")
            if not np.all(np.isfinite(as_float)) or np.any(as_float != np.round(as_float)):
                raise ConvkitError(f"{where}: labels must be integer class indices, got "
                                   f"non-integer values (dtype {labels.dtype})")
        labels = labels.astype(np.int64)
        classes = p.shape[-1]
        if labels.size and (labels.min() < 0 or labels.max() >= classes):
            raise ConvkitError(f"{where}: labels must be class indices in [0, {classes}), got "
                               f"values in [{labels.min()}, {labels.max()}]")
        onehot = np.zeros_like(p)                           # (..., K)
        np.put_along_axis(onehot, labels[..., None], 1, axis=-1)
        return onehot, p

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "from_logits": self.from_logits}


class BinaryCrossentropy(Loss):
    """Binary cross-entropy, element-wise, then the mean over the last axis::

        loss_n = mean_k -(t log p + (1 - t) log(1 - p)),   p = clip(y_pred, 1e-7, 1 - 1e-7)

    With ``from_logits=True`` the stable form ``max(z, 0) - z t + log(1 + exp(-|z|))``.
    ``label_smoothing = s`` replaces ``t`` by ``t (1 - s) + s / 2``. Labels have the
    predictions' shape (``(N,)`` against ``(N, 1)`` is accepted).

        >>> round(BinaryCrossentropy()([[1.0]], [[0.8]]), 6)
        0.223144
    """

    default_name = "binary_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, name=None):
        super().__init__(name)
        if not 0.0 <= float(label_smoothing) <= 1.0:
            raise ConvkitError(f"BinaryCrossentropy: label_smoothing must be in [0, 1], "
                               f"got {label_smoothing!r}")
        self.from_logits = bool(from_logits)
        self.label_smoothing = float(label_smoothing)

    def _prepare(self, y_true, y_pred):
        t, p = self._float_pair(y_true, y_pred)
        if p.ndim == 0:
            raise ShapeError("BinaryCrossentropy: predictions must be at least 1-D, got a "
                             "scalar")
        t = self._same_shape(t, p)
        if self.label_smoothing:
            t = t * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        return t, p

    def _forward(self, t, p):
        if self.from_logits:
            elementwise = np.maximum(p, 0) - p * t + np.log1p(np.exp(-np.abs(p)))
        else:
            self._check_range(p)
            pc = np.clip(p, EPSILON, 1 - EPSILON)
            elementwise = -(t * np.log(pc) + (1 - t) * np.log(1 - pc))
        return np.mean(elementwise, axis=-1)

    def _backward(self, t, p):
        last = p.shape[-1]
        if self.from_logits:
            return (_sigmoid(p) - t) / last
        pc = np.clip(p, EPSILON, 1 - EPSILON)
        inside = (p > EPSILON) & (p < 1 - EPSILON)
        return np.where(inside, (pc - t) / (pc * (1 - pc)), 0) / last

    def fusable_with(self, activation_name) -> bool:
        return not self.from_logits and _activation_name(activation_name) == "sigmoid"

    def gradient_wrt_logits(self, y_true, y_pred_probs, sample_weight=None):
        """``dL/dlogits = (p - t) / y_pred.size`` for a sigmoid output ``p``."""
        t, p = self._prepare(y_true, y_pred_probs)
        return self._reduce_grad((p - t) / p.shape[-1], p, sample_weight)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing}


# ------------------------------------------------------------------ regression
class MeanSquaredError(Loss):
    """``loss_n = mean_k (t - p)**2``; gradient ``2 (p - t) / y_pred.size``.

        >>> MeanSquaredError()([[0., 0.]], [[1., 3.]])
        5.0
    """

    default_name = "mean_squared_error"

    def _prepare(self, y_true, y_pred):
        t, p = self._float_pair(y_true, y_pred)
        if p.ndim == 0:
            raise ShapeError(f"{type(self).__name__}: predictions must be at least 1-D, got a "
                             f"scalar")
        return self._same_shape(t, p), p

    def _forward(self, t, p):
        return np.mean(np.square(p - t), axis=-1)

    def _backward(self, t, p):
        return 2 * (p - t) / p.shape[-1]


class MeanAbsoluteError(Loss):
    """``loss_n = mean_k |t - p|``; gradient ``sign(p - t) / y_pred.size`` (0 where equal).

        >>> MeanAbsoluteError()([[0., 0.]], [[1., -3.]])
        2.0
    """

    default_name = "mean_absolute_error"

    _prepare = MeanSquaredError._prepare

    def _forward(self, t, p):
        return np.mean(np.abs(p - t), axis=-1)

    def _backward(self, t, p):
        return np.sign(p - t) / p.shape[-1]


# ------------------------------------------------------------------ custom losses
class LossFunctionWrapper(Loss):
    """Wrap a plain function ``fn(y_true, y_pred)`` (per-sample losses or a scalar) as a Loss.

    ``gradient(y_true, y_pred) -> dL/dy_pred`` of the *reduced* (mean) loss may be given;
    without it the gradient is computed by central finite differences in float64 (two calls
    of ``fn`` per feature when ``fn`` returns per-sample losses of shape ``(N, ...)``, two
    per element otherwise), fine for small outputs, slow for big ones.

        >>> def huber(t, p): return np.mean(np.minimum(0.5 * (p - t) ** 2, abs(p - t) - 0.5), -1)
        >>> loss = LossFunctionWrapper(huber)
    """

    def __init__(self, fn, name=None, gradient=None, eps=1e-6):
        super().__init__(name or getattr(fn, "__name__", "loss"))
        self.fn = fn
        self._gradient_fn = gradient
        self.eps = eps

    def _prepare(self, y_true, y_pred):
        return self._float_pair(y_true, y_pred)

    def _forward(self, t, p):
        return np.asarray(self.fn(t, p), dtype=p.dtype)

    def __call__(self, y_true, y_pred, sample_weight=None):
        t, p = self._prepare(y_true, y_pred)
        per_sample = self._forward(t, p)
        weights = None if sample_weight is None else \
            self._weights(sample_weight, per_sample.shape, p.dtype)
        if weights is not None:
            per_sample = per_sample * weights
        return float(np.sum(per_sample) / max(per_sample.size, 1))

    def gradient(self, y_true, y_pred, sample_weight=None):
        t, p = self._prepare(y_true, y_pred)
        if self._gradient_fn is not None:
            return np.asarray(self._gradient_fn(t, p), dtype=p.dtype)
        t64, p64 = t.astype(np.float64), p.astype(np.float64)
        probe = np.asarray(self.fn(t64, p64))
        grad = np.zeros_like(p64)
        if probe.ndim >= 1 and p64.ndim >= 1 and probe.shape[0] == p64.shape[0]:
            # per-sample losses: sample n depends only on row n, so one probe per feature
            # position moves every row at once.  (N, F...) rows, (N, R) per-sample values
            batch = p64.shape[0]
            features = p64.reshape(batch, -1)
            flat_grad = grad.reshape(batch, -1)
            for j in range(features.shape[1]):
                old = features[:, j].copy()
                features[:, j] = old + self.eps
                up = np.asarray(self.fn(t64, p64)).reshape(batch, -1)
                features[:, j] = old - self.eps
                down = np.asarray(self.fn(t64, p64)).reshape(batch, -1)
                features[:, j] = old
                weight = 1.0 if sample_weight is None else \
                    np.asarray(sample_weight, dtype=np.float64).reshape(batch, -1)
                flat_grad[:, j] = np.sum((up - down) * weight, axis=1) / (2 * self.eps)
            grad /= probe.size
        else:
            scale = 1.0 if sample_weight is None else float(np.asarray(sample_weight))
            flat = p64.reshape(-1)
            flat_grad = grad.reshape(-1)
            for i in range(flat.size):
                old = flat[i]
                flat[i] = old + self.eps
                up = np.mean(self.fn(t64, p64))
                flat[i] = old - self.eps
                down = np.mean(self.fn(t64, p64))
                flat[i] = old
                flat_grad[i] = scale * (up - down) / (2 * self.eps)
        return grad.astype(p.dtype)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}


# ------------------------------------------------------------------ functional forms
def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0):
    """Per-sample categorical cross-entropy, shape ``y_pred.shape[:-1]``."""
    return CategoricalCrossentropy(from_logits, label_smoothing).call(y_true, y_pred)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False):
    """Per-sample sparse categorical cross-entropy, shape ``y_pred.shape[:-1]``."""
    return SparseCategoricalCrossentropy(from_logits).call(y_true, y_pred)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0):
    """Per-sample binary cross-entropy (mean over the last axis)."""
    return BinaryCrossentropy(from_logits, label_smoothing).call(y_true, y_pred)


def mean_squared_error(y_true, y_pred):
    """Per-sample mean squared error (mean over the last axis)."""
    return MeanSquaredError().call(y_true, y_pred)


def mean_absolute_error(y_true, y_pred):
    """Per-sample mean absolute error (mean over the last axis)."""
    return MeanAbsoluteError().call(y_true, y_pred)


mse = mean_squared_error
mae = mean_absolute_error


def _activation_name(activation) -> str:
    if activation is None:
        return "linear"
    if isinstance(activation, str):
        return activation.lower()
    return str(getattr(activation, "name", None) or getattr(activation, "__name__", "")).lower()


# ------------------------------------------------------------------ lookup
_CLASSES = {cls.__name__: cls for cls in
            (CategoricalCrossentropy, SparseCategoricalCrossentropy, BinaryCrossentropy,
             MeanSquaredError, MeanAbsoluteError)}
_ALIASES = {
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
}
_FUNCTIONS = {categorical_crossentropy: CategoricalCrossentropy,
              sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
              binary_crossentropy: BinaryCrossentropy,
              mean_squared_error: MeanSquaredError, mean_absolute_error: MeanAbsoluteError}


def serialize(loss: Loss) -> dict:
    """``{"class_name": ..., "config": ...}``, JSON-serialisable (built-in losses only)."""
    if type(loss).__name__ not in _CLASSES:
        raise ConvkitError(f"losses.serialize: only built-in losses can be serialised, got "
                           f"{type(loss).__name__}")
    return {"class_name": type(loss).__name__, "config": loss.get_config()}


def deserialize(config: dict) -> Loss:
    """Inverse of :func:`serialize`."""
    return from_registry(_CLASSES, config, "losses.deserialize", "loss")


def get(identifier) -> Loss | None:
    """A :class:`Loss` from a Keras string (``"categorical_crossentropy"``,
    ``"sparse_categorical_crossentropy"``, ``"binary_crossentropy"``, ``"mse"`` /
    ``"mean_squared_error"``, ``"mae"`` / ``"mean_absolute_error"``, or a class name), a
    serialized dict, a Loss instance, or any callable ``fn(y_true, y_pred)`` (wrapped in
    :class:`LossFunctionWrapper`). ``None`` gives ``None``."""
    if identifier is None or isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        cls = _ALIASES.get(identifier.lower()) or _CLASSES.get(identifier)
        if cls is None:
            raise ConvkitError(f"losses.get: unknown loss {identifier!r}; known: "
                               f"{', '.join(repr(k) for k in _ALIASES)}")
        return cls()
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if getattr(identifier, "__module__", None) == __name__ and identifier in _FUNCTIONS:
        return _FUNCTIONS[identifier]()
    if callable(identifier):
        return LossFunctionWrapper(identifier)
    raise ConvkitError(f"losses.get: cannot interpret {identifier!r} as a loss")
