"""Learning-rate schedules: ``schedule(step) -> learning rate``, with Keras's formulas.

An optimizer given a schedule as ``learning_rate`` evaluates it at ``optimizer.iterations``
(the number of updates done so far) before every update, so the first update uses
``schedule(0)``. The same classes are available as ``convkit.optimizers.schedules``.

    >>> from convkit.schedules import ExponentialDecay
    >>> ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)(20)
    0.025
"""
from __future__ import annotations

import math

from ._configurable import from_registry
from .errors import ConvkitError

__all__ = ["LearningRateSchedule", "ExponentialDecay", "CosineDecay", "PiecewiseConstantDecay",
           "serialize", "deserialize", "get"]


class LearningRateSchedule:
    """Base class: subclasses implement ``__call__(step) -> float`` and ``get_config``."""

    def __call__(self, step) -> float:
        raise NotImplementedError

    def get_config(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


def _positive(where: str, name: str, value) -> None:
    if not value > 0:
        raise ConvkitError(f"{where}: {name} must be > 0, got {value!r}")


class ExponentialDecay(LearningRateSchedule):
    """``lr(step) = initial_learning_rate * decay_rate ** (step / decay_steps)``.

    With ``staircase=True`` the exponent is ``floor(step / decay_steps)``, so the rate drops
    in steps every ``decay_steps`` updates.

        >>> ExponentialDecay(1.0, 10, 0.5, staircase=True)(15)
        0.5
    """

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="ExponentialDecay"):
        _positive("ExponentialDecay", "decay_steps", decay_steps)
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = decay_steps
        self.decay_rate = float(decay_rate)
        self.staircase = bool(staircase)
        self.name = name

    def __call__(self, step) -> float:
        exponent = float(step) / self.decay_steps
        if self.staircase:
            exponent = math.floor(exponent)
        return self.initial_learning_rate * self.decay_rate ** exponent

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Cosine decay with an optional linear warm-up (Keras's ``CosineDecay``).

    Without warm-up (``warmup_target=None``), with ``s = min(step, decay_steps)``::

        lr = initial_learning_rate * ((1 - alpha) * 0.5 * (1 + cos(pi * s / decay_steps)) + alpha)

    With warm-up, ``s = min(step, warmup_steps + decay_steps)``: for ``s < warmup_steps`` the
    rate goes linearly from ``initial_learning_rate`` to ``warmup_target``,
    ``lr = initial + (warmup_target - initial) * s / warmup_steps``; afterwards the cosine
    formula above runs from ``warmup_target`` over ``s - warmup_steps``.

        >>> CosineDecay(1.0, decay_steps=10)(5)
        0.5
    """

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay",
                 warmup_target=None, warmup_steps=0):
        _positive("CosineDecay", "decay_steps", decay_steps)
        if warmup_target is not None and warmup_steps <= 0:
            raise ConvkitError(f"CosineDecay: warmup_target={warmup_target!r} needs "
                               f"warmup_steps > 0, got {warmup_steps!r}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = decay_steps
        self.alpha = float(alpha)
        self.name = name
        self.warmup_target = None if warmup_target is None else float(warmup_target)
        self.warmup_steps = warmup_steps

    def _decay(self, step: float, decay_from: float) -> float:
        cosine = 0.5 * (1.0 + math.cos(math.pi * step / self.decay_steps))
        return decay_from * ((1.0 - self.alpha) * cosine + self.alpha)

    def __call__(self, step) -> float:
        step = float(step)
        if self.warmup_target is None:
            return self._decay(min(step, self.decay_steps), self.initial_learning_rate)
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            fraction = step / self.warmup_steps
            return self.initial_learning_rate + (
                self.warmup_target - self.initial_learning_rate) * fraction
        return self._decay(step - self.warmup_steps, self.warmup_target)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha, "name": self.name,
                "warmup_target": self.warmup_target, "warmup_steps": self.warmup_steps}


class PiecewiseConstantDecay(LearningRateSchedule):
    """A step function: ``values[0]`` while ``step <= boundaries[0]``, ``values[i]`` while
    ``boundaries[i-1] < step <= boundaries[i]``, ``values[-1]`` after the last boundary.

        >>> s = PiecewiseConstantDecay([100, 200], [1.0, 0.5, 0.1])
        >>> s(100), s(101), s(500)
        (1.0, 0.5, 0.1)
    """

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        boundaries = list(boundaries)
        values = [float(v) for v in values]
        if len(values) != len(boundaries) + 1:
            raise ConvkitError(
                f"PiecewiseConstantDecay: values needs one more entry than boundaries, got "
                f"{len(boundaries)} boundaries and {len(values)} values")
        if any(later <= earlier for earlier, later in zip(boundaries, boundaries[1:])):
            raise ConvkitError(f"PiecewiseConstantDecay: boundaries must increase, "
                               f"got {boundaries}")
        self.boundaries = boundaries
        self.values = values
        self.name = name

    def __call__(self, step) -> float:
        for boundary, value in zip(self.boundaries, self.values):
            if step <= boundary:
                return value
        return self.values[-1]

    def get_config(self):
        return {"boundaries": list(self.boundaries), "values": list(self.values),
                "name": self.name}


_SCHEDULES = {cls.__name__: cls for cls in
              (ExponentialDecay, CosineDecay, PiecewiseConstantDecay)}


def serialize(schedule: LearningRateSchedule) -> dict:
    """``{"class_name": ..., "config": ...}``, JSON-serialisable."""
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(config: dict) -> LearningRateSchedule:
    """Inverse of :func:`serialize`."""
    return from_registry(_SCHEDULES, config, "schedules.deserialize", "schedule")


def get(identifier):
    """A schedule from an instance, a serialized dict, or any ``callable(step)``."""
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if callable(identifier):
        return identifier
    raise ConvkitError(f"schedules.get: cannot interpret {identifier!r} as a schedule")
