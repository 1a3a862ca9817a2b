"""Optimizers with Keras 3's update formulas: SGD, Adam, AdamW, RMSprop.

The core call is ``optimizer.apply_gradients([(grad, weight), ...])``. It updates every
weight array *in place*, keeps per-weight state ("slots": momentum, velocity, ...) keyed by
the weight's position in the list, and increments ``optimizer.iterations``. One update does,
in this order (as Keras does):

1. cast each gradient to its weight's dtype and clip it (``clipvalue``: element-wise to
   ``[-c, c]``; ``clipnorm``: each gradient ``g * c / max(||g||, c)``; ``global_clipnorm``:
   all gradients by ``c / max(global_norm, c)``);
2. decoupled weight decay, if set: ``w -= w * weight_decay * lr``;
3. the optimizer's own update with ``lr = current_learning_rate()`` (a schedule is evaluated
   at ``iterations``, the number of updates done so far);
4. ``iterations += 1``.

    >>> import numpy as np
    >>> w = np.array([1.0, -2.0])
    >>> opt = SGD(learning_rate=0.1)
    >>> opt.apply_gradients([(2 * w, w)])      # gradient of sum(w**2)
    >>> w
    array([ 0.8, -1.6])

``get_state()`` / ``set_state()`` hold the iteration count, a float learning rate and every
slot array, so training resumes bit-identically after saving and loading.
"""
from __future__ import annotations

import math

import numpy as np

from . import schedules
from .errors import ConvkitError, ShapeError
from .schedules import LearningRateSchedule

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "get", "serialize", "deserialize",
           "schedules"]


def _check_number(where: str, name: str, value, low=None, high=None, low_open=False,
                  high_open=False, allow_none=False):
    if value is None and allow_none:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConvkitError(f"{where}: {name} must be a number, got {value!r}") from None
    bad = not math.isfinite(number)
    if low is not None:
        bad |= number <= low if low_open else number < low
    if high is not None:
        bad |= number >= high if high_open else number > high
    if bad:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        interval = f"{left}{low if low is not None else '-inf'}, " \
                   f"{high if high is not None else 'inf'}{right}"
        raise ConvkitError(f"{where}: {name} must be in {interval}, got {value!r}")
    return number


class Optimizer:
    """Base class. Subclasses list their slot names in ``_slot_names()`` and implement
    ``_update(index, grad, weight, lr)`` for one weight (``grad`` already clipped and in the
    weight's dtype, ``lr`` a scalar of that dtype), reading their slots with ``self._slot``.
    """

    def __init__(self, learning_rate, name, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None):
        where = type(self).__name__
        clips = [n for n, v in (("clipnorm", clipnorm), ("clipvalue", clipvalue),
                                ("global_clipnorm", global_clipnorm)) if v is not None]
        if len(clips) > 1:
            raise ConvkitError(f"{where}: give at most one of clipnorm, clipvalue and "
                               f"global_clipnorm, got {', '.join(clips)}")
        self.name = name
        self.weight_decay = _check_number(where, "weight_decay", weight_decay, low=0,
                                          allow_none=True)
        self.clipnorm = _check_number(where, "clipnorm", clipnorm, low=0, low_open=True,
                                      allow_none=True)
        self.clipvalue = _check_number(where, "clipvalue", clipvalue, low=0, low_open=True,
                                       allow_none=True)
        self.global_clipnorm = _check_number(where, "global_clipnorm", global_clipnorm, low=0,
                                             low_open=True, allow_none=True)
        self._learning_rate = self._validate_learning_rate(learning_rate)
        self.iterations = 0
        self._slots: dict[str, list] = {slot: [] for slot in self._slot_names()}

    # ----------------------------------------------------------- learning rate
    def _validate_learning_rate(self, value):
        if isinstance(value, dict):
            value = schedules.deserialize(value)
        if isinstance(value, LearningRateSchedule) or callable(value):
            return value
        return _check_number(type(self).__name__, "learning_rate", value, low=0)

    @property
    def learning_rate(self) -> float:
        """The learning rate of the next update (a schedule evaluated at ``iterations``).
        Assigning a float replaces it (what ``ReduceLROnPlateau`` does); assigning a
        schedule installs the schedule."""
        return self.current_learning_rate()

    @learning_rate.setter
    def learning_rate(self, value):
        is_schedule = isinstance(value, (LearningRateSchedule, dict)) or callable(value)
        if not is_schedule and self.has_schedule:
            raise TypeError(
                f"{type(self).__name__}: this optimizer was made with the learning-rate "
                f"schedule {self._learning_rate!r}, so its learning rate cannot be set to a "
                f"number; give it a new schedule, or make the optimizer with a float "
                f"learning_rate")
        self._learning_rate = self._validate_learning_rate(value)

    @property
    def has_schedule(self) -> bool:
        """True when the learning rate is a schedule rather than a float."""
        return not isinstance(self._learning_rate, float)

    @property
    def learning_rate_schedule(self):
        """The schedule object, or None for a constant learning rate."""
        return self._learning_rate if self.has_schedule else None

    def current_learning_rate(self) -> float:
        """The learning rate at the current iteration, as a Python float; a schedule that
        gives a negative, NaN or infinite rate is an error (naming the iteration)."""
        if not self.has_schedule:
            return self._learning_rate
        lr = float(self._learning_rate(self.iterations))
        if not (math.isfinite(lr) and lr >= 0):
            raise ConvkitError(f"{type(self).__name__}: the learning-rate schedule "
                               f"{self._learning_rate!r} gave {lr} at iteration "
                               f"{self.iterations}; a learning rate must be finite and >= 0")
        return lr

    # ----------------------------------------------------------- slots
    def _slot_names(self) -> tuple:
        return ()

    def _slot(self, name: str, index: int, weight: np.ndarray) -> np.ndarray:
        slots = self._slots[name]
        while len(slots) <= index:
            slots.append(None)
        slot = slots[index]
        if slot is None:
            slot = slots[index] = np.zeros_like(weight)
        elif slot.shape != weight.shape:
            raise ShapeError(
                f"{type(self).__name__}: weight {index} has shape {weight.shape} but its "
                f"{name!r} state has shape {slot.shape}; the optimizer keeps state by position "
                f"in the weight list, so pass the same weights in the same order (or use a new "
                f"optimizer)")
        elif slot.dtype != weight.dtype:
            slot = slots[index] = slot.astype(weight.dtype)
        return slot

    def build(self, weights) -> None:
        """Create every slot for ``weights`` now (otherwise they appear on the first update)."""
        for index, weight in enumerate(weights):
            for name in self._slots:
                self._slot(name, index, np.asarray(weight))

    # ----------------------------------------------------------- the update
    def apply_gradients(self, grads_and_vars) -> None:
        """Update each weight in place from its gradient; see the module docstring.

        ``grads_and_vars`` is an iterable of ``(grad, weight)`` pairs; ``weight`` must be a
        writeable float ndarray, ``grad`` anything array-like of the same shape, or None to
        leave that weight alone (its position still counts).
        """
        where = type(self).__name__
        pairs = []
        for index, pair in enumerate(grads_and_vars):
            try:
                grad, weight = pair
            except (TypeError, ValueError):
                raise ConvkitError(f"{where}.apply_gradients: item {index} must be a "
                                   f"(gradient, weight) pair, got {type(pair).__name__}") from None
            if not isinstance(weight, np.ndarray) or weight.dtype.kind != "f":
                got = type(weight).__name__
                if hasattr(weight, "dtype"):
                    got += f" of dtype {weight.dtype}"
                raise ConvkitError(f"{where}.apply_gradients: weight {index} must be a float "
                                   f"NumPy array (it is updated in place), got {got}")
            if not weight.flags.writeable:
                raise ConvkitError(f"{where}.apply_gradients: weight {index} is read-only")
            if grad is not None:
                grad = np.asarray(grad)
                if grad.shape != weight.shape:
                    raise ShapeError(f"{where}.apply_gradients: gradient {index} has shape "
                                     f"{grad.shape} but its weight has shape {weight.shape}")
                grad = grad.astype(weight.dtype, copy=False)
            pairs.append((index, grad, weight))
        active = [(i, g, w) for i, g, w in pairs if g is not None]
        grads = self._clip([g for _, g, _ in active])
        lr = self.current_learning_rate()
        if self.weight_decay:
            for _, _, weight in active:
                dtype = weight.dtype.type
                weight -= weight * dtype(self.weight_decay) * dtype(lr)
        for (index, _, weight), grad in zip(active, grads):
            self._update(index, grad, weight, weight.dtype.type(lr))
        self.iterations += 1

    def apply(self, grads, weights) -> None:
        """Keras 3's spelling: ``apply(grads, weights)`` = ``apply_gradients(zip(...))``."""
        grads, weights = list(grads), list(weights)
        if len(grads) != len(weights):
            raise ConvkitError(f"{type(self).__name__}.apply: got {len(grads)} gradients for "
                               f"{len(weights)} weights")
        self.apply_gradients(zip(grads, weights))

    def _clip(self, grads: list) -> list:
        if self.clipvalue is not None:
            return [np.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        if self.clipnorm is not None:
            out = []
            for g in grads:
                norm = float(np.sqrt(np.sum(np.square(g, dtype=np.float64))))
                scale = self.clipnorm / max(norm, self.clipnorm)
                out.append(g * g.dtype.type(scale) if scale < 1.0 else g)
            return out
        if self.global_clipnorm is not None and grads:
            norm = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads))
            scale = self.global_clipnorm / max(norm, self.global_clipnorm)
            if scale < 1.0:
                return [g * g.dtype.type(scale) for g in grads]
        return grads

    def _update(self, index, grad, weight, lr):
        raise NotImplementedError

    # ----------------------------------------------------------- saving
    def get_config(self) -> dict:
        """Hyper-parameters, JSON-serialisable (a schedule is stored as a dict)."""
        lr = self._learning_rate
        if isinstance(lr, LearningRateSchedule):
            lr = schedules.serialize(lr)
        elif not isinstance(lr, float):
            raise ConvkitError(f"{type(self).__name__}.get_config: the learning rate is a "
                               f"plain callable {lr!r}, which cannot be serialised; use a "
                               f"convkit.schedules class")
        return {"name": self.name, "learning_rate": lr, "weight_decay": self.weight_decay,
                "clipnorm": self.clipnorm, "clipvalue": self.clipvalue,
                "global_clipnorm": self.global_clipnorm}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def get_state(self) -> dict:
        """``{"iterations": ..., "learning_rate": ..., "<slot>/<index>": array, ...}``:
        everything needed to continue training exactly. Arrays are copies."""
        state = {"iterations": np.array(self.iterations, dtype=np.int64)}
        if not self.has_schedule:
            state["learning_rate"] = np.array(self._learning_rate, dtype=np.float64)
        for name, slots in self._slots.items():
            for index, slot in enumerate(slots):
                if slot is not None:
                    state[f"{name}/{index}"] = slot.copy()
        return state

    def set_state(self, state: dict) -> None:
        """Restore what :meth:`get_state` returned (arrays are copied)."""
        where = f"{type(self).__name__}.set_state"
        if "iterations" not in state:
            raise ConvkitError(f"{where}: the state has no 'iterations' entry")
        slots: dict[str, list] = {name: [] for name in self._slot_names()}
        for key, value in state.items():
            if key in ("iterations", "learning_rate"):
                continue
            name, _, index = key.rpartition("/")
            if name not in slots or not index.isdigit():
                raise ConvkitError(f"{where}: unexpected entry {key!r}; this optimizer keeps "
                                   f"{', '.join(repr(n) for n in slots) or 'no slots'}")
            index = int(index)
            lst = slots[name]
            lst.extend([None] * (index + 1 - len(lst)))
            lst[index] = np.array(value, copy=True)
        self.iterations = int(np.asarray(state["iterations"]))
        if "learning_rate" in state and not self.has_schedule:
            self._learning_rate = float(np.asarray(state["learning_rate"]))
        self._slots = slots

    def __repr__(self):
        lr = self._learning_rate
        return f"{type(self).__name__}(learning_rate={lr!r}, iterations={self.iterations})"


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum, Keras's formulas.

    Plain: ``w -= lr * g``. With momentum ``m`` and velocity ``v`` (zeros at start)::

        v = m * v - lr * g
        w += v                      # nesterov=False
        w += m * v - lr * g         # nesterov=True

    This equals PyTorch's ``SGD(momentum=m, nesterov=...)`` for a constant learning rate
    (PyTorch's buffer is ``-v / lr``). ``weight_decay`` is decoupled (``w -= w * wd * lr``),
    unlike PyTorch's SGD, which adds ``wd * w`` to the gradient.
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name="SGD"):
        self.momentum = _check_number("SGD", "momentum", momentum, low=0, high=1)
        self.nesterov = bool(nesterov)
        super().__init__(learning_rate, name, weight_decay, clipnorm, clipvalue, global_clipnorm)

    def _slot_names(self):
        return ("momentum",) if self.momentum != 0 else ()

    def _update(self, index, grad, weight, lr):
        if self.momentum == 0:
            weight -= grad * lr
            return
        m = weight.dtype.type(self.momentum)
        velocity = self._slot("momentum", index, weight)
        velocity[...] = velocity * m - grad * lr
        if self.nesterov:
            weight += velocity * m - grad * lr
        else:
            weight += velocity

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam, Keras's formula: with ``t = iterations + 1``, slots ``m`` and ``v``::

        m += (g - m) * (1 - beta_1)
        v += (g**2 - v) * (1 - beta_2)
        alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)
        w -= alpha * m / (sqrt(v) + epsilon)

    ``amsgrad=True`` uses ``v_hat = max(v_hat, v)`` in place of ``v`` in the last line.
    PyTorch adds ``epsilon`` after dividing ``sqrt(v)`` by ``sqrt(1 - beta_2**t)``, so the two
    agree exactly only for ``epsilon = 0``; Keras's default epsilon is 1e-7 (PyTorch's 1e-8).
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, name="adam"):
        where = type(self).__name__
        self.beta_1 = _check_number(where, "beta_1", beta_1, low=0, high=1, high_open=True)
        self.beta_2 = _check_number(where, "beta_2", beta_2, low=0, high=1, high_open=True)
        self.epsilon = _check_number(where, "epsilon", epsilon, low=0)
        self.amsgrad = bool(amsgrad)
        super().__init__(learning_rate, name, weight_decay, clipnorm, clipvalue, global_clipnorm)

    def _slot_names(self):
        return ("momentum", "velocity") + (("velocity_hat",) if self.amsgrad else ())

    def _update(self, index, grad, weight, lr):
        dtype = weight.dtype.type
        step = self.iterations + 1
        beta_1, beta_2 = dtype(self.beta_1), dtype(self.beta_2)
        alpha = lr * np.sqrt(1 - beta_2 ** dtype(step)) / (1 - beta_1 ** dtype(step))
        m = self._slot("momentum", index, weight)
        v = self._slot("velocity", index, weight)
        m += (grad - m) * (1 - beta_1)
        v += (np.square(grad) - v) * (1 - beta_2)
        if self.amsgrad:
            v_hat = self._slot("velocity_hat", index, weight)
            np.maximum(v_hat, v, out=v_hat)
            v = v_hat
        weight -= (m * alpha) / (np.sqrt(v) + dtype(self.epsilon))

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay (default 0.004, Keras's): before the Adam step,
    ``w -= w * weight_decay * lr``. Equals PyTorch's ``AdamW`` when ``epsilon = 0``
    (PyTorch's default weight decay is 0.01)."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, amsgrad=False, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, name="adamw"):
        if weight_decay is None:
            raise ConvkitError("AdamW: weight_decay must be a number (use Adam for none)")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay,
                         clipnorm, clipvalue, global_clipnorm, name)


class RMSprop(Optimizer):
    """RMSprop, Keras's formula (epsilon *inside* the square root)::

        v = rho * v + (1 - rho) * g**2
        a = rho * a + (1 - rho) * g               # centered=True only
        denominator = v - a**2 + epsilon          # centered; else v + epsilon
        increment = lr * g / sqrt(denominator)
        mom = momentum * mom + increment; w -= mom    # momentum > 0; else w -= increment

    PyTorch's RMSprop (``alpha`` = rho) uses ``sqrt(...) + eps``; the two agree for
    ``epsilon = 0``.
    """

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
                 centered=False, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, name="rmsprop"):
        self.rho = _check_number("RMSprop", "rho", rho, low=0, high=1)
        self.momentum = _check_number("RMSprop", "momentum", momentum, low=0, high=1)
        self.epsilon = _check_number("RMSprop", "epsilon", epsilon, low=0)
        self.centered = bool(centered)
        super().__init__(learning_rate, name, weight_decay, clipnorm, clipvalue, global_clipnorm)

    def _slot_names(self):
        names = ("velocity",)
        if self.momentum > 0:
            names += ("momentum",)
        if self.centered:
            names += ("average_gradient",)
        return names

    def _update(self, index, grad, weight, lr):
        dtype = weight.dtype.type
        rho = dtype(self.rho)
        velocity = self._slot("velocity", index, weight)
        velocity[...] = rho * velocity + (1 - rho) * np.square(grad)
        if self.centered:
            average = self._slot("average_gradient", index, weight)
            average[...] = rho * average + (1 - rho) * grad
            denominator = velocity - np.square(average) + dtype(self.epsilon)
        else:
            denominator = velocity + dtype(self.epsilon)
        increment = lr * grad / np.sqrt(denominator)
        if self.momentum > 0:
            momentum = self._slot("momentum", index, weight)
            momentum[...] = dtype(self.momentum) * momentum + increment
            weight -= momentum
        else:
            weight -= increment

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


_OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}


def serialize(optimizer: Optimizer) -> dict:
    """``{"class_name": ..., "config": ...}``, JSON-serialisable."""
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}


def deserialize(config: dict) -> Optimizer:
    """Inverse of :func:`serialize`."""
    name = str(config.get("class_name", "")).lower()
    if name not in _OPTIMIZERS:
        raise ConvkitError(f"optimizers.deserialize: unknown optimizer "
                           f"{config.get('class_name')!r}; known: SGD, Adam, AdamW, RMSprop")
    return _OPTIMIZERS[name].from_config(config.get("config", {}))


def get(identifier) -> Optimizer:
    """An optimizer from a Keras string (``"sgd"``, ``"adam"``, ``"adamw"``, ``"rmsprop"``,
    any case, with default hyper-parameters), a serialized dict, or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        key = identifier.lower()
        if key in _OPTIMIZERS:
            return _OPTIMIZERS[key]()
        raise ConvkitError(f"optimizers.get: unknown optimizer {identifier!r}; known: "
                           f"{', '.join(repr(k) for k in _OPTIMIZERS)}")
    raise ConvkitError(f"optimizers.get: cannot interpret {identifier!r} as an optimizer")
