"""Activation functions with Keras's names and defaults, each with its backward.

Every activation is an :class:`Activation` with ``.name``, ``.forward(x) -> y`` and
``.backward(dy, x, y) -> dx`` (``y`` may be None; it is recomputed when needed). Look one up
with :func:`get` (case-insensitive Keras names, ``None`` -> linear, or a callable); the plain
functions (``relu(x)``, ``softmax(x, axis=-1)``, ...) are exported too.

============== ========================================== ==================================
name           y = f(x)                                   dy/dx
============== ========================================== ==================================
linear         x                                          1
relu           max(x, 0)                                  [x > 0]
relu6          min(max(x, 0), 6)                          [0 < x < 6]
leaky_relu     x if x > 0 else slope*x   (slope 0.2)      1 or slope
elu            x if x > 0 else alpha*(e^x - 1) (alpha 1)  1 or y + alpha
selu           scale * elu(x, alpha)  (fixed constants)   scale or y + scale*alpha
gelu           x * Phi(x)  (exact, erf)                   Phi(x) + x * phi(x)
gelu_tanh      0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3)))  (approximate=True)
sigmoid        1 / (1 + e^-x)                             y (1 - y)
hard_sigmoid   clip(x/6 + 0.5, 0, 1)                      1/6 on -3 < x < 3
swish / silu   x * sigmoid(x)                             s + y (1 - s)
hard_silu      x * hard_sigmoid(x)   (alias hard_swish)   h + x/6 on -3 < x < 3
mish           x * tanh(softplus(x))                      t + x (1 - t^2) sigmoid(x)
celu           x if x >= 0 else alpha*(e^(x/alpha) - 1)   1 or e^(x/alpha)
tanh           tanh(x)                                    1 - y^2
hard_tanh      clip(x, -1, 1)                             [-1 < x < 1]
tanh_shrink    x - tanh(x)                                tanh(x)^2
softplus       log(1 + e^x)                               sigmoid(x)
softsign       x / (1 + |x|)                              1 / (1 + |x|)^2
log_sigmoid    -softplus(-x)                              sigmoid(-x)
exponential    e^x                                        y
softmax        e^x / sum e^x (last axis)                  y * (dy - sum(dy * y))
log_softmax    x - log sum e^x (last axis)                dy - softmax * sum(dy)
============== ========================================== ==================================

>>> get("relu").forward(np.array([-1.0, 2.0]))
array([0., 2.])
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import ConvkitError

_erf_function = None     # SciPy's erf, or math.erf vectorised; chosen on the first GELU


def _erf(x):
    """The exact error function, element-wise: SciPy's when installed (imported on first use:
    ``scipy.special`` takes ~0.2 s to import, more than the rest of convkit), else
    ``math.erf`` over the elements."""
    global _erf_function
    if _erf_function is None:
        try:
            from scipy.special import erf as _erf_function
        except ImportError:  # pragma: no cover - exercised only without SciPy
            scalar = np.vectorize(math.erf, otypes=[np.float64])
            _erf_function = lambda v: scalar(v).astype(v.dtype, copy=False)  # noqa: E731
    return _erf_function(x)

__all__ = ["Activation", "get", "is_builtin", "ACTIVATIONS", "linear", "relu", "relu6",
           "leaky_relu", "elu", "selu", "gelu", "sigmoid", "hard_sigmoid", "swish", "silu",
           "hard_silu", "hard_swish", "mish", "celu", "tanh", "hard_tanh", "tanh_shrink",
           "softplus", "softsign", "log_sigmoid", "exponential", "softmax", "log_softmax", "prelu",
           "prelu_backward"]

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _as_float(x, where: str = "activation") -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype in (np.float32, np.float64):
        return arr
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ConvkitError(f"{where}: input must be numeric, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ConvkitError(f"{where}: input must be real, got dtype {arr.dtype}")
    return arr.astype(np.float32)


# ---------------------------------------------------------------- forward / backward
def linear(x):
    return _as_float(x, "linear")


def _linear_grad(dy, x, y):
    return dy


def relu(x):
    x = _as_float(x, "relu")
    return np.maximum(x, 0, dtype=x.dtype)


def _relu_grad(dy, x, y):
    return dy * (x > 0)


def relu6(x):
    x = _as_float(x, "relu6")
    return np.clip(x, 0, 6).astype(x.dtype, copy=False)


def _relu6_grad(dy, x, y):
    return dy * ((x > 0) & (x < 6))


def leaky_relu(x, negative_slope=0.2):
    x = _as_float(x, "leaky_relu")
    return np.where(x > 0, x, x * negative_slope).astype(x.dtype, copy=False)


def _leaky_relu_grad(dy, x, y, negative_slope=0.2):
    return np.where(x > 0, dy, dy * negative_slope).astype(dy.dtype, copy=False)


def elu(x, alpha=1.0):
    x = _as_float(x, "elu")
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))).astype(x.dtype, copy=False)


def _elu_grad(dy, x, y, alpha=1.0):
    return np.where(x > 0, dy, dy * alpha * np.exp(np.minimum(x, 0))).astype(dy.dtype, copy=False)


def selu(x):
    x = _as_float(x, "selu")
    return (SELU_SCALE * elu(x, SELU_ALPHA)).astype(x.dtype, copy=False)


def _selu_grad(dy, x, y):
    return (SELU_SCALE * _elu_grad(dy, x, None, SELU_ALPHA)).astype(dy.dtype, copy=False)


def gelu(x, approximate=False):
    """GELU: exact ``x * Phi(x)`` with the erf (Keras's default), or the tanh approximation."""
    x = _as_float(x, "gelu")
    if approximate:
        inner = _SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)
        return (0.5 * x * (1.0 + np.tanh(inner))).astype(x.dtype, copy=False)
    return (0.5 * x * (1.0 + _erf(x * _INV_SQRT_2))).astype(x.dtype, copy=False)


def _gelu_grad(dy, x, y, approximate=False):
    if approximate:
        inner = _SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)
        t = np.tanh(inner)
        d_inner = _SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x ** 2)
        grad = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * d_inner
    else:
        cdf = 0.5 * (1.0 + _erf(x * _INV_SQRT_2))
        pdf = _INV_SQRT_2PI * np.exp(-0.5 * x * x)
        grad = cdf + x * pdf
    return (dy * grad).astype(dy.dtype, copy=False)


def sigmoid(x):
    x = _as_float(x, "sigmoid")
    e = np.exp(-np.abs(x))                     # never overflows
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


def _sigmoid_grad(dy, x, y):
    y = sigmoid(x) if y is None else y
    return dy * y * (1 - y)


def hard_sigmoid(x):
    x = _as_float(x, "hard_sigmoid")
    return np.clip(x / 6.0 + 0.5, 0, 1).astype(x.dtype, copy=False)


def _hard_sigmoid_grad(dy, x, y):
    return (dy * ((x > -3) & (x < 3)) / 6.0).astype(dy.dtype, copy=False)


def swish(x):
    x = _as_float(x, "swish")
    return x * sigmoid(x)


silu = swish


def _swish_grad(dy, x, y):
    s = sigmoid(x)
    y = x * s if y is None else y
    return dy * (s + y * (1 - s))


def hard_silu(x):
    """Hard swish: ``x * hard_sigmoid(x)``, i.e. 0 below -3, ``x`` above 3 and
    ``x * (x + 3) / 6`` between (Keras 3's definition)."""
    x = _as_float(x, "hard_silu")
    return (x * hard_sigmoid(x)).astype(x.dtype, copy=False)


hard_swish = hard_silu


def _hard_silu_grad(dy, x, y):
    inside = (x > -3) & (x < 3)
    return (dy * (hard_sigmoid(x) + inside * x / 6.0)).astype(dy.dtype, copy=False)


def mish(x):
    """Mish: ``x * tanh(softplus(x))``; ``mish(1) = 0.8651``."""
    x = _as_float(x, "mish")
    return (x * np.tanh(softplus(x))).astype(x.dtype, copy=False)


def _mish_grad(dy, x, y):
    t = np.tanh(softplus(x))
    return (dy * (t + x * (1 - t * t) * sigmoid(x))).astype(dy.dtype, copy=False)


def celu(x, alpha=1.0):
    """CELU: ``x`` for ``x >= 0``, else ``alpha * (exp(x / alpha) - 1)``."""
    x = _as_float(x, "celu")
    negative = alpha * np.expm1(np.minimum(x, 0) / alpha)
    return np.where(x >= 0, x, negative).astype(x.dtype, copy=False)


def _celu_grad(dy, x, y, alpha=1.0):
    return np.where(x >= 0, dy, dy * np.exp(np.minimum(x, 0) / alpha)).astype(
        dy.dtype, copy=False)


def tanh(x):
    x = _as_float(x, "tanh")
    return np.tanh(x)


def _tanh_grad(dy, x, y):
    y = np.tanh(x) if y is None else y
    return dy * (1 - y * y)


def hard_tanh(x):
    x = _as_float(x, "hard_tanh")
    return np.clip(x, -1, 1).astype(x.dtype, copy=False)


def _hard_tanh_grad(dy, x, y):
    return dy * ((x > -1) & (x < 1))


def tanh_shrink(x):
    x = _as_float(x, "tanh_shrink")
    return x - np.tanh(x)


def _tanh_shrink_grad(dy, x, y):
    return dy * np.tanh(x) ** 2


def softplus(x):
    x = _as_float(x, "softplus")
    return np.logaddexp(x, 0, dtype=x.dtype)


def _softplus_grad(dy, x, y):
    return dy * sigmoid(x)


def softsign(x):
    x = _as_float(x, "softsign")
    return x / (1 + np.abs(x))


def _softsign_grad(dy, x, y):
    return dy / (1 + np.abs(x)) ** 2


def log_sigmoid(x):
    """``log(sigmoid(x)) = -softplus(-x)``, stable for large ``|x|``."""
    x = _as_float(x, "log_sigmoid")
    return -softplus(-x)


def _log_sigmoid_grad(dy, x, y):
    return dy * sigmoid(-x)


def exponential(x):
    x = _as_float(x, "exponential")
    return np.exp(x)


def _exponential_grad(dy, x, y):
    return dy * (np.exp(x) if y is None else y)


def softmax(x, axis=-1):
    """``exp(x) / sum(exp(x))`` along ``axis`` (the last by default), computed stably."""
    x = _as_float(x, "softmax")
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _softmax_grad(dy, x, y, axis=-1):
    y = softmax(x, axis) if y is None else y
    return y * (dy - (dy * y).sum(axis=axis, keepdims=True))


def log_softmax(x, axis=-1):
    """``x - log(sum(exp(x)))`` along ``axis`` (the last by default), computed stably."""
    x = _as_float(x, "log_softmax")
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def _log_softmax_grad(dy, x, y, axis=-1):
    probs = softmax(x, axis) if y is None else np.exp(y)
    return dy - probs * dy.sum(axis=axis, keepdims=True)


def prelu(x, alpha):
    """Parametric ReLU: ``x`` where ``x > 0``, else ``alpha * x``; ``alpha`` broadcasts
    against ``x`` (PReLU's learned slopes, e.g. ``(H, W, C)`` or ``(1, 1, C)``).

    >>> prelu(np.array([-2.0, 3.0]), np.array([0.25, 0.25]))
    array([-0.5,  3. ])
    """
    x = _as_float(x, "prelu")
    return np.where(x > 0, x, alpha * x).astype(x.dtype, copy=False)


def prelu_backward(dy, x, alpha):
    """``(dx, dalpha)`` of :func:`prelu`; ``dalpha`` has ``x``'s shape, before the caller
    sums it over the axes ``alpha`` was broadcast along."""
    positive = x > 0
    dx = np.where(positive, dy, dy * alpha).astype(dy.dtype, copy=False)
    dalpha = np.where(positive, 0, dy * x).astype(dy.dtype, copy=False)
    return dx, dalpha


# --------------------------------------------------------------------- the objects
class Activation:
    """An activation function and its backward, possibly with parameters.

    ``forward(x) -> y``; ``backward(dy, x, y=None) -> dx`` (the vector-Jacobian product).
    Calling the object is the forward pass.
    """

    def __init__(self, name: str, forward, backward=None, **params):
        self.name = name
        self.params = params
        self._forward = forward
        self._backward = backward

    def forward(self, x):
        return self._forward(x, **self.params)

    __call__ = forward

    def backward(self, dy, x, y=None):
        if self._backward is None:
            raise ConvkitError(
                f"activation {self.name!r}: a plain callable has no backward pass; give it a "
                f"`.backward(dy, x, y)` attribute or use a built-in name ({', '.join(ACTIVATIONS)})")
        x = _as_float(x, self.name)
        dy = np.asarray(dy, dtype=x.dtype)
        if dy.shape != x.shape:
            raise ConvkitError(f"activation {self.name!r}: dy has shape {dy.shape} but the "
                               f"input has shape {x.shape}")
        return self._backward(dy, x, None if y is None else np.asarray(y), **self.params)

    def __repr__(self):
        extra = "".join(f", {k}={v!r}" for k, v in self.params.items())
        return f"Activation({self.name!r}{extra})"


# name -> (forward, backward, default parameters)
ACTIVATIONS = {
    "linear": (linear, _linear_grad, {}),
    "relu": (relu, _relu_grad, {}),
    "relu6": (relu6, _relu6_grad, {}),
    "leaky_relu": (leaky_relu, _leaky_relu_grad, {"negative_slope": 0.2}),
    "elu": (elu, _elu_grad, {"alpha": 1.0}),
    "selu": (selu, _selu_grad, {}),
    "gelu": (gelu, _gelu_grad, {"approximate": False}),
    "sigmoid": (sigmoid, _sigmoid_grad, {}),
    "hard_sigmoid": (hard_sigmoid, _hard_sigmoid_grad, {}),
    "swish": (swish, _swish_grad, {}),
    "hard_silu": (hard_silu, _hard_silu_grad, {}),
    "mish": (mish, _mish_grad, {}),
    "celu": (celu, _celu_grad, {"alpha": 1.0}),
    "tanh": (tanh, _tanh_grad, {}),
    "hard_tanh": (hard_tanh, _hard_tanh_grad, {}),
    "tanh_shrink": (tanh_shrink, _tanh_shrink_grad, {}),
    "softplus": (softplus, _softplus_grad, {}),
    "softsign": (softsign, _softsign_grad, {}),
    "log_sigmoid": (log_sigmoid, _log_sigmoid_grad, {}),
    "exponential": (exponential, _exponential_grad, {}),
    "softmax": (softmax, _softmax_grad, {"axis": -1}),
    "log_softmax": (log_softmax, _log_softmax_grad, {"axis": -1}),
}
_ALIASES = {"silu": ("swish", {}), "hard_swish": ("hard_silu", {}),
            "gelu_tanh": ("gelu", {"approximate": True}),
            "none": ("linear", {}), "identity": ("linear", {})}


def get(identifier=None, **params) -> Activation:
    """The :class:`Activation` for a Keras name (any case), ``None`` (linear), an existing
    Activation, or a callable. Keyword arguments set parameters, e.g.
    ``get("leaky_relu", negative_slope=0.1)`` or ``get("gelu", approximate=True)``.

    A plain callable gets a forward pass only; its backward raises unless the callable has a
    ``.backward(dy, x, y)`` attribute.

    >>> get("Leaky_ReLU").forward(np.array([-1.0, 3.0]))
    array([-0.2,  3. ])
    """
    if identifier is None:
        identifier = "linear"
    if isinstance(identifier, Activation):
        return identifier if not params else Activation(
            identifier.name, identifier._forward, identifier._backward,
            **{**identifier.params, **params})
    if isinstance(identifier, str):
        key = identifier.lower()
        extra = {}
        if key in _ALIASES:
            key, extra = _ALIASES[key]
        if key not in ACTIVATIONS:
            known = sorted(set(ACTIVATIONS) | set(_ALIASES) - {"none"})
            raise ConvkitError(f"unknown activation {identifier!r}; known names: "
                               f"{', '.join(known)}")
        forward, backward, defaults = ACTIVATIONS[key]
        unknown = set(params) - set(defaults)
        if unknown:
            raise ConvkitError(f"activation {key!r} takes no parameter(s) "
                               f"{', '.join(sorted(unknown))}; it takes "
                               f"{', '.join(defaults) or 'none'}")
        name = "gelu_tanh" if identifier.lower() == "gelu_tanh" else key
        return Activation(name, forward, backward, **{**defaults, **extra, **params})
    if callable(identifier):
        name = getattr(identifier, "__name__", type(identifier).__name__)
        user_backward = getattr(identifier, "backward", None)
        backward = None
        if callable(user_backward):
            def backward(dy, x, y, **_):
                return user_backward(dy, x, y)
        return Activation(name, lambda x, **kw: identifier(x, **kw), backward, **params)
    raise ConvkitError(f"activation must be a name, None or a callable, got {identifier!r}; "
                       f"known names: {', '.join(sorted(ACTIVATIONS))}")


def is_builtin(activation: Activation) -> bool:
    """Whether ``activation`` is one of the named activations with its default parameters
    (what a name alone reproduces, e.g. in an inference chain's step):
    ``is_builtin(get("leaky_relu"))`` is True, ``is_builtin(get("leaky_relu",
    negative_slope=0.1))`` and a user's callable are not."""
    try:
        named = get(activation.name)
    except ConvkitError:            # a user's callable under a name of its own
        return False
    return named._forward is activation._forward and named.params == activation.params
