"""Weight initializers with Keras's names and numbers.

Every initializer is a callable ``init(shape, rng, dtype, fan_in=None, fan_out=None)``
returning an array of ``shape`` and ``dtype``, drawn from the ``numpy.random.Generator``
``rng`` (never the global ``np.random`` state).

Fans, when not given, are computed from the shape as Keras does::

    rank 0            fan_in = fan_out = 1
    rank 1  (n,)      fan_in = fan_out = n
    rank 2  (in, out) fan_in = in, fan_out = out                 (Dense kernels)
    rank k  (..., in, out)  receptive = prod(shape[:-2])
                      fan_in = receptive * in, fan_out = receptive * out  (HWIO conv kernels)

Variance scaling (the Glorot / He / LeCun family) with ``n`` the chosen fan::

    uniform           limit = sqrt(3 * scale / n),  U(-limit, limit)
    truncated normal  stddev = sqrt(scale / n) / 0.87962566103423978,
                      normal cut at two standard deviations

    glorot_*  scale 1, n = (fan_in + fan_out) / 2
    he_*      scale 2, n = fan_in
    lecun_*   scale 1, n = fan_in

Example::

    >>> import numpy as np
    >>> init = get("glorot_uniform")
    >>> w = init((3, 3, 1, 32), np.random.default_rng(0), "float32")
    >>> w.shape, w.dtype, bool(np.abs(w).max() <= np.sqrt(6 / (9 + 288)))
    ((3, 3, 1, 32), dtype('float32'), True)
"""
from __future__ import annotations

import math

import numpy as np

from ._configurable import Configurable
from .config import floatx
from .errors import ConvkitError

__all__ = [
    "Initializer", "Zeros", "Ones", "Constant", "RandomNormal", "RandomUniform",
    "TruncatedNormal", "VarianceScaling", "GlorotUniform", "GlorotNormal", "HeNormal",
    "HeUniform", "LecunNormal", "LecunUniform", "Orthogonal", "compute_fans", "get",
    "serialize", "deserialize", "names",
]

# The standard deviation of a unit normal truncated at +-2: dividing by it makes the
# truncated distribution have the requested standard deviation (Keras's constant).
_TRUNCATED_STD = 0.87962566103423978


def compute_fans(shape) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight shape, Keras's way (see the module docstring).

    >>> compute_fans((3, 3, 16, 32))
    (144, 288)
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[:-2]))
    return receptive * shape[-2], receptive * shape[-1]


def _rng(rng):
    if rng is None:
        from .random import make_rng
        return make_rng()
    return rng


def _truncated_normal(shape, rng, mean, stddev) -> np.ndarray:
    """Normal samples redrawn until all lie within two standard deviations of the mean."""
    values = rng.standard_normal(shape)
    bad = np.abs(values) > 2.0
    while bad.any():
        values[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(values) > 2.0
    return mean + stddev * values


class Initializer(Configurable):
    """Base class: ``init(shape, rng=None, dtype=None, fan_in=None, fan_out=None)``."""

    #: the Keras string name (``"glorot_uniform"``); empty for parameterised-only ones
    name = ""

    def __call__(self, shape, rng=None, dtype=None, fan_in=None, fan_out=None):
        shape = tuple(int(s) for s in shape)
        dtype = np.dtype(dtype or floatx())
        values = self._sample(shape, _rng(rng), fan_in, fan_out)
        return np.asarray(values, dtype=dtype).reshape(shape)

    def _sample(self, shape, rng, fan_in, fan_out):
        raise NotImplementedError



class Zeros(Initializer):
    """All zeros (the default bias initializer)."""
    name = "zeros"

    def _sample(self, shape, rng, fan_in, fan_out):
        return np.zeros(shape)


class Ones(Initializer):
    """All ones (batch-norm ``gamma`` and ``moving_variance``)."""
    name = "ones"

    def _sample(self, shape, rng, fan_in, fan_out):
        return np.ones(shape)


class Constant(Initializer):
    """Every entry equal to ``value``."""
    name = "constant"

    def __init__(self, value: float = 0.0):
        self.value = float(value)

    def _sample(self, shape, rng, fan_in, fan_out):
        return np.full(shape, self.value)

    def get_config(self):
        return {"value": self.value}


class RandomNormal(Initializer):
    """Normal with ``mean`` and ``stddev`` (Keras defaults 0 and 0.05)."""
    name = "random_normal"

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed=None):
        self.mean, self.stddev = float(mean), float(stddev)

    def _sample(self, shape, rng, fan_in, fan_out):
        return self.mean + self.stddev * rng.standard_normal(shape)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev}


class RandomUniform(Initializer):
    """Uniform on ``[minval, maxval)`` (Keras defaults -0.05 and 0.05)."""
    name = "random_uniform"

    def __init__(self, minval: float = -0.05, maxval: float = 0.05, seed=None):
        self.minval, self.maxval = float(minval), float(maxval)

    def _sample(self, shape, rng, fan_in, fan_out):
        return rng.uniform(self.minval, self.maxval, shape)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval}


class TruncatedNormal(Initializer):
    """Normal with ``mean`` and ``stddev``, redrawn beyond two standard deviations."""
    name = "truncated_normal"

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed=None):
        self.mean, self.stddev = float(mean), float(stddev)

    def _sample(self, shape, rng, fan_in, fan_out):
        return _truncated_normal(shape, rng, self.mean, self.stddev)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev}


class VarianceScaling(Initializer):
    """Samples scaled by the fans: see the module docstring for the formulas.

    ``mode`` is ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"``; ``distribution`` is
    ``"truncated_normal"``, ``"untruncated_normal"`` or ``"uniform"``.
    """
    name = "variance_scaling"

    def __init__(self, scale: float = 1.0, mode: str = "fan_in",
                 distribution: str = "truncated_normal", seed=None):
        if scale <= 0:
            raise ConvkitError(f"VarianceScaling: scale must be positive, got {scale!r}")
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ConvkitError(f"VarianceScaling: mode must be 'fan_in', 'fan_out' or "
                               f"'fan_avg', got {mode!r}")
        distribution = {"normal": "truncated_normal"}.get(distribution, distribution)
        if distribution not in ("truncated_normal", "untruncated_normal", "uniform"):
            raise ConvkitError(f"VarianceScaling: distribution must be 'truncated_normal', "
                               f"'untruncated_normal' or 'uniform', got {distribution!r}")
        self.scale, self.mode, self.distribution = float(scale), mode, distribution

    def _sample(self, shape, rng, fan_in, fan_out):
        auto_in, auto_out = compute_fans(shape)
        fan_in = auto_in if fan_in is None else fan_in
        fan_out = auto_out if fan_out is None else fan_out
        n = {"fan_in": fan_in, "fan_out": fan_out,
             "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        variance = self.scale / max(1.0, n)
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            return rng.uniform(-limit, limit, shape)
        if self.distribution == "untruncated_normal":
            return math.sqrt(variance) * rng.standard_normal(shape)
        return _truncated_normal(shape, rng, 0.0, math.sqrt(variance) / _TRUNCATED_STD)

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution}


class _Preset(VarianceScaling):
    """A named variance-scaling preset: its config is empty."""
    _preset = (1.0, "fan_in", "truncated_normal")

    def __init__(self, seed=None):
        super().__init__(*self._preset)

    def get_config(self):
        return {}


class GlorotUniform(_Preset):
    """``U(-limit, limit)``, ``limit = sqrt(6 / (fan_in + fan_out))`` (Keras's default kernel)."""
    name = "glorot_uniform"
    _preset = (1.0, "fan_avg", "uniform")


class GlorotNormal(_Preset):
    """Truncated normal, ``stddev = sqrt(2 / (fan_in + fan_out))`` before truncation."""
    name = "glorot_normal"
    _preset = (1.0, "fan_avg", "truncated_normal")


class HeNormal(_Preset):
    """Truncated normal, ``stddev = sqrt(2 / fan_in)`` before truncation."""
    name = "he_normal"
    _preset = (2.0, "fan_in", "truncated_normal")


class HeUniform(_Preset):
    """``U(-limit, limit)``, ``limit = sqrt(6 / fan_in)``."""
    name = "he_uniform"
    _preset = (2.0, "fan_in", "uniform")


class LecunNormal(_Preset):
    """Truncated normal, ``stddev = sqrt(1 / fan_in)`` before truncation."""
    name = "lecun_normal"
    _preset = (1.0, "fan_in", "truncated_normal")


class LecunUniform(_Preset):
    """``U(-limit, limit)``, ``limit = sqrt(3 / fan_in)``."""
    name = "lecun_uniform"
    _preset = (1.0, "fan_in", "uniform")


class Orthogonal(Initializer):
    """An orthogonal matrix times ``gain``, from the QR decomposition of a normal matrix.

    The shape is viewed as ``(prod(shape[:-1]), shape[-1])``; rows or columns (whichever
    are fewer) are orthonormal.
    """
    name = "orthogonal"

    def __init__(self, gain: float = 1.0, seed=None):
        self.gain = float(gain)

    def _sample(self, shape, rng, fan_in, fan_out):
        if len(shape) < 2:
            raise ConvkitError(f"Orthogonal: needs a shape of rank >= 2, got {shape}")
        rows, cols = int(np.prod(shape[:-1])), shape[-1]
        flat = rng.standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(flat)
        q = q * np.sign(np.diag(r))          # unique decomposition: diag(r) > 0
        if rows < cols:
            q = q.T
        return self.gain * q.reshape(shape)  # (rows, cols) -> shape

    def get_config(self):
        return {"gain": self.gain}


_CLASSES = [Zeros, Ones, Constant, RandomNormal, RandomUniform, TruncatedNormal,
            VarianceScaling, GlorotUniform, GlorotNormal, HeNormal, HeUniform, LecunNormal,
            LecunUniform, Orthogonal]
_BY_NAME = {cls.name: cls for cls in _CLASSES}
_BY_CLASS = {cls.__name__: cls for cls in _CLASSES}


def names() -> list[str]:
    """The string names :func:`get` accepts."""
    return sorted(_BY_NAME)


def get(identifier):
    """An initializer from a name (``"he_normal"``), a class name (``"HeNormal"``), a config
    ``{"class_name": ..., "config": {...}}``, an :class:`Initializer` or any callable
    ``f(shape, rng, dtype, fan_in=None, fan_out=None)`` (returned as is).

    >>> get("zeros")((2,), None, "float32")
    array([0., 0.], dtype=float32)
    """
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower()) or _BY_CLASS.get(identifier)
        if cls is None:
            raise ConvkitError(f"initializers.get: unknown initializer {identifier!r}; "
                               f"known: {', '.join(names())}")
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if callable(identifier):
        return identifier
    raise ConvkitError(f"initializers.get: expected a name, a config dict or a callable, "
                       f"got {identifier!r}")


def serialize(initializer):
    """The JSON form: the name when the initializer has its default settings, else
    ``{"class_name": ..., "config": ...}``. Plain callables cannot be serialised."""
    if isinstance(initializer, str):
        return initializer
    if isinstance(initializer, Initializer):
        cls = type(initializer)
        if cls.name and initializer.get_config() == cls().get_config():
            return cls.name
        return {"class_name": cls.__name__, "config": initializer.get_config()}
    raise ConvkitError(f"initializers.serialize: cannot serialise {initializer!r}; use a "
                       f"name, a config or an Initializer instance")


def deserialize(config: dict) -> Initializer:
    """Inverse of :func:`serialize` for the dict form."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ConvkitError(f"initializers.deserialize: expected {{'class_name': ..., "
                           f"'config': ...}}, got {config!r}")
    name = config["class_name"]
    cls = _BY_CLASS.get(name) or _BY_NAME.get(str(name).lower())
    if cls is None:
        raise ConvkitError(f"initializers.deserialize: unknown initializer {name!r}; "
                           f"known: {', '.join(sorted(_BY_CLASS))}")
    return cls.from_config(dict(config.get("config") or {}))
