"""The layer contract every convkit layer follows.

A layer owns its weights, their gradients and a cache from the last forward pass, and calls
one functional op from :mod:`convkit.ops`. The life cycle, as in Keras:

* ``Layer(...)`` stores hyper-parameters only;
* ``build(input_shape)`` validates the input shape (batch entry ``None``) and creates the
  weights; it runs once, on the first call or explicitly;
* ``layer(x, training=False)`` runs the forward pass on an array, or, given a
  :class:`SymbolicTensor` (from :func:`convkit.layers.Input`), records a node of a
  functional graph and returns a new symbolic tensor, without touching data;
* ``layer.backward(dy)`` returns the gradient for the input (a list for multi-input layers)
  and stores the weight gradients in ``layer.grads``, aligned with ``get_weights()``
  (``None`` for non-trainable weights such as batch-norm moving statistics).

Subclasses implement ``build``, ``compute_output_shape``, ``forward`` and ``backward``, and
extend ``get_config``. Helpers for them: ``add_weight(name, shape, initializer, trainable,
fan_in, fan_out, regularizer)``, ``_input(x, ndim, layout)`` (a float array or a clear
error), ``_compute_dtype(x, *weights)`` (float64 if any operand is), ``_set_grads(grads)``
(stores gradients in the weights' dtypes, ``None`` for non-trainable ones), ``_cached()``
(the cache, or an error if ``backward`` comes before ``forward``), and the hooks
``_check_array`` (checks an array before it builds the layer) and ``_check_built_shape``
(checks a symbolic input against a built layer).

Layers with an activation (``Conv2D``, ``DepthwiseConv2D``, ``Dense``, ``Activation``) take
``backward(dy, skip_activation=False)``; with ``True``, ``dy`` is already the gradient with
respect to the pre-activation output (used to fuse softmax with cross-entropy). Their
``activation`` attribute is the activation object (``.name``, ``.forward``, ``.backward``).

Skipping the input gradient: a model sets ``layer.input_gradient = False`` around the
``backward`` of a layer whose input needs no gradient (it reads the model's input during
training); ``Conv2D``, ``DepthwiseConv2D`` and ``Dense`` then skip that computation and
return ``None``. Other layers ignore the flag. It is ``True`` unless a model sets it.

Regularization: ``backward`` stores only the gradient of the data loss. A weight created with
a regularizer is listed by ``layer.regularization_losses()`` as ``(index, regularizer)``,
with ``index`` its position in ``get_weights()``; the model adds
``regularizer(weights[index].value)`` to the loss and ``regularizer.gradient(...)`` to
``grads[index]``. ``regularization_penalty()`` and ``regularization_gradients()`` (aligned
with ``get_weights()``, ``None`` where there is no regularizer) do exactly that sum for one
layer.

Errors about shapes raise :class:`convkit.errors.ShapeError` starting with the class name,
e.g. ``"Conv2D: expected 3 input channels, got 1 (input shape (8, 28, 28, 1))"``; when
raised through ``layer(x)`` they end with the layer's name, ``(layer 'conv2d_1')``.
"""
from __future__ import annotations

import functools
import inspect
import itertools
import re
from dataclasses import dataclass

import numpy as np

from .._aligned import aligned_copy
from .. import config as _config
from .._validate import as_float_array, result_float_dtype
from ..errors import ConvkitError, ShapeError
from ..random import make_rng

_name_counters: dict[str, itertools.count] = {}


def _snake(name: str) -> str:
    """Keras's automatic-name rule: ``Conv2D`` -> ``conv2d``,
    ``BatchNormalization`` -> ``batch_normalization``, ``ReLU`` -> ``re_lu``."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def unique_name(prefix: str) -> str:
    """``conv2d``, ``conv2d_1``, ``conv2d_2``, ... like Keras's automatic names."""
    counter = _name_counters.setdefault(prefix, itertools.count())
    n = next(counter)
    return prefix if n == 0 else f"{prefix}_{n}"


#: a new number each time any weight's ``value`` is set (a weight made, or given another
#: array): what a cache of weight arrays compares (:func:`weights_version`); updates in
#: place leave it as it is, the arrays being the same. ``next`` on the counter is one step
#: under the GIL, so two threads setting weights at once still leave a number not seen
#: before (a ``+= 1`` could lose one of the two and give back a number a cache holds)
_weights_counter = itertools.count(1)
_weights_set = [0]


def weights_version() -> int:
    """A number that changes whenever any :class:`Weight`'s ``value`` is set to an array
    (every weight made, every array replaced); values changed in place, as the optimizers
    and ``set_weights`` change them, keep it. A model's inference chain keeps the arrays
    its steps read until it changes."""
    return _weights_set[0]


@dataclass
class Weight:
    """One weight array of a layer. ``value`` is updated in place by optimizers."""
    name: str
    value: np.ndarray
    trainable: bool = True
    regularizer: object = None

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)
        if name == "value":
            _weights_set[0] = next(_weights_counter)


class SymbolicTensor:
    """A placeholder in a functional graph: a shape (batch ``None``) and where it comes from.

    ``layer`` is the layer that produced it and ``inputs`` the symbolic tensors that layer
    was called on (empty for an ``Input``).
    """

    def __init__(self, shape, layer=None, inputs=()):
        self.shape = tuple(shape)
        self.layer = layer
        self.inputs = list(inputs)

    def __repr__(self):
        producer = f", from {self.layer.name!r}" if self.layer is not None else ""
        return f"<SymbolicTensor shape={self.shape}{producer}>"


class Layer:
    """Base class of all layers; see the module docstring for the contract."""

    #: number of inputs the layer takes: 1, or ``None`` for "a list" (merging layers)
    n_inputs = 1
    #: ``False`` while a model runs ``backward`` on a layer whose input needs no gradient;
    #: layers that can skip the input gradient then return ``None`` (see the module docstring)
    input_gradient = True

    def __init_subclass__(cls, **kwargs):
        # Building twice must not create a second set of weights (a layer built by hand,
        # given weights, then put in a model): a subclass's ``build`` on a built layer only
        # checks that the shape fits.
        super().__init_subclass__(**kwargs)
        if "build" in cls.__dict__:
            cls.build = _build_once(cls.__dict__["build"])

    def __init__(self, name: str | None = None, trainable: bool = True, input_shape=None,
                 dtype=None, seed: int | None = None, **kwargs):
        if kwargs.get("batch_input_shape") is not None:
            input_shape = tuple(kwargs.pop("batch_input_shape"))[1:]
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected argument(s) "
                            f"{', '.join(sorted(kwargs))}")
        self.name = name or unique_name(_snake(type(self).__name__))
        self.trainable = trainable
        try:
            self.dtype = np.dtype(dtype or _config.floatx()).name
        except TypeError:
            raise ConvkitError(f"{type(self).__name__}: unknown dtype {dtype!r}") from None
        if self.dtype not in ("float32", "float64"):
            raise ConvkitError(f"{type(self).__name__}: dtype must be 'float32' or 'float64', "
                               f"got {dtype!r}")
        self.seed = seed
        self.rng = make_rng(seed)
        self._input_shape_arg = tuple(input_shape) if input_shape is not None else None
        self.built = False
        self.input_shape = None
        self.output_shape = None
        self._weights: list[Weight] = []
        self.grads: list = []
        self.cache = None

    # ----------------------------------------------------------- weights
    def add_weight(self, name: str, shape, initializer, trainable: bool = True,
                   fan_in: int | None = None, fan_out: int | None = None,
                   regularizer=None) -> np.ndarray:
        """Create a weight from an initializer (name, config or callable) and register it."""
        from .. import initializers, regularizers
        from ..io.limits import reserve_weight       # a model built from a file: bounded by it
        reserve_weight(f"{type(self).__name__} {self.name!r}", name, shape,
                       np.dtype(self.dtype).itemsize)
        init = initializers.get(initializer)
        value = np.asarray(init(tuple(shape), rng=self.rng, dtype=self.dtype,
                                fan_in=fan_in, fan_out=fan_out), dtype=self.dtype)
        if value.shape != tuple(shape):
            raise ShapeError(f"{type(self).__name__}: initializer of {name!r} returned shape "
                             f"{value.shape}, expected {tuple(shape)}")
        value = aligned_copy(value)     # the compiled kernels' vector loads (see _aligned)
        self._weights.append(Weight(name, value, trainable, regularizers.get(regularizer)))
        self.grads.append(None)
        return value

    def _set_grads(self, grads) -> None:
        """Store weight gradients (aligned with ``get_weights``) in the weights' dtypes;
        non-trainable weights (or all, when the layer is frozen) get ``None``."""
        self.grads = [None if g is None or not (w.trainable and self.trainable)
                      else np.asarray(g, dtype=w.value.dtype).reshape(w.value.shape)
                      for w, g in zip(self._weights, grads)]

    def regularization_losses(self) -> list:
        """``[(index, regularizer), ...]`` for the weights that have a regularizer;
        ``index`` is the weight's position in ``get_weights()`` and ``grads``."""
        return [(i, w.regularizer) for i, w in enumerate(self._weights)
                if w.regularizer is not None]

    def regularization_penalty(self) -> float:
        """Sum of the regularizers' penalties on this layer's current weights."""
        return float(sum(reg(self._weights[i].value)
                         for i, reg in self.regularization_losses()))

    def regularization_gradients(self) -> list:
        """The penalties' gradients, aligned with ``get_weights()`` (``None`` elsewhere)."""
        grads = [None] * len(self._weights)
        for i, reg in self.regularization_losses():
            grads[i] = reg.gradient(self._weights[i].value)
        return grads

    def _weight(self, name: str) -> np.ndarray:
        for w in self._weights:
            if w.name == name:
                return w.value
        raise KeyError(f"{self.name}: no weight named {name!r}")

    @property
    def weights(self) -> list[Weight]:
        return list(self._weights)

    @property
    def trainable_weights(self) -> list[Weight]:
        return [w for w in self._weights if w.trainable and self.trainable]

    @property
    def non_trainable_weights(self) -> list[Weight]:
        return [w for w in self._weights if not (w.trainable and self.trainable)]

    def get_weights(self) -> list[np.ndarray]:
        """Copies of the weights, in the layer's fixed order (e.g. ``[kernel, bias]``)."""
        return [w.value.copy() for w in self._weights]

    def set_weights(self, weights) -> None:
        """Replace the weights (copied into the existing arrays), checking count and shapes."""
        weights = list(weights)
        where = f"{type(self).__name__} {self.name!r}"
        if not self.built:
            raise ShapeError(f"{where}: set_weights called before the layer was built; "
                             f"call build(input_shape) or run it on data first")
        if len(weights) != len(self._weights):
            raise ShapeError(
                f"{where}: set_weights expected {len(self._weights)} arrays "
                f"({', '.join(w.name + str(w.value.shape) for w in self._weights)}), "
                f"got {len(weights)} with shapes {[np.shape(w) for w in weights]}")
        for w, new in zip(self._weights, weights):
            try:
                new = np.asarray(new, dtype=w.value.dtype)
            except (TypeError, ValueError):
                raise ShapeError(f"{where}: weight {w.name!r} must be numeric") from None
            if new.shape != w.value.shape:
                raise ShapeError(f"{where}: weight {w.name!r} must have shape "
                                 f"{w.value.shape}, got {new.shape}")
        for w, new in zip(self._weights, weights):
            w.value[...] = np.asarray(new, dtype=w.value.dtype)

    def count_params(self) -> int:
        return int(sum(w.value.size for w in self._weights))

    # ----------------------------------------------------------- life cycle
    def build(self, input_shape) -> None:
        """Validate ``input_shape`` (batch first, may be None) and create the weights."""
        self.input_shape = tuple(input_shape) if not _is_shape_list(input_shape) \
            else [tuple(s) for s in input_shape]
        self.output_shape = self.compute_output_shape(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x, training: bool = False):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError(f"{type(self).__name__} has no backward pass")

    def __call__(self, x, training: bool = False):
        try:
            if _is_symbolic(x):
                return self._call_symbolic(x)
            if self.n_inputs is None:
                if not isinstance(x, (list, tuple)):
                    raise ShapeError(f"{type(self).__name__}: expects a list of inputs, got "
                                     f"{type(x).__name__}")
                shapes = [tuple(np.shape(v)) for v in x]
                if not self.built:
                    self.build([(None,) + s[1:] for s in shapes])
            else:
                if isinstance(x, (list, tuple)) and x and all(
                        isinstance(v, np.ndarray) for v in x):
                    raise ShapeError(f"{type(self).__name__}: takes one input array, got a "
                                     f"list of {len(x)}")
                if not self.built:
                    self._check_array(x)
                    self.build((None,) + tuple(np.shape(x))[1:])
            return self.forward(x, training=training)
        except ShapeError as exc:
            raise self._named(exc) from None

    def _named(self, exc: ShapeError) -> ShapeError:
        """The same error with the layer's name appended, once."""
        message = str(exc)
        if f"(layer {self.name!r})" in message:
            return exc
        return type(exc)(f"{message} (layer {self.name!r})")

    def _call_symbolic(self, x):
        inputs = list(x) if isinstance(x, (list, tuple)) else [x]
        shapes = [t.shape for t in inputs]
        shape_arg = shapes if self.n_inputs is None else shapes[0]
        if self.n_inputs == 1 and len(inputs) != 1:
            raise ShapeError(f"{type(self).__name__}: takes one input, got {len(inputs)}")
        if not self.built:
            self.build(shape_arg)
        else:
            self._check_built_shape(shape_arg)
        out_shape = self.compute_output_shape(shape_arg)
        return SymbolicTensor(out_shape, layer=self, inputs=inputs)

    def _check_built_shape(self, input_shape) -> None:
        """Hook: raise if a built layer cannot take ``input_shape`` (channel count etc.)."""

    def _check_array(self, x) -> None:
        """Hook: check an input array (its rank, say) before it is used to build the layer,
        so the error quotes the array's real shape. Every layer needs a batch axis."""
        shape = tuple(np.shape(x))
        if len(shape) < 2:
            raise ShapeError(f"{type(self).__name__}: expected an input of rank >= 2 (batch "
                             f"first), got shape {shape}")

    # ----------------------------------------------------------- helpers for subclasses
    def _input(self, x, ndim: int | None = None, layout: str = "", name: str = "input"):
        """``x`` as a float array of rank ``ndim`` (float64 stays float64), or a ShapeError."""
        return as_float_array(x, type(self).__name__, name, ndim, layout)

    def _gradient(self, dy, output_shape, dtype=None):
        """The upstream gradient ``dy`` as a float array (cast to ``dtype`` if given), or a
        ShapeError naming this layer when its shape is not ``output_shape``."""
        dy = self._input(dy, name="gradient dy")
        if dtype is not None:
            dy = dy.astype(dtype, copy=False)
        if dy.shape != tuple(output_shape):
            raise ShapeError(f"{type(self).__name__}: gradient dy has shape {dy.shape}, "
                             f"expected the output shape {tuple(output_shape)}")
        return dy

    def _inference_step(self):
        """This layer at inference as a step of a prepared chain (a hashable tuple, see
        :mod:`convkit.fast.chain`), or ``None`` when it has none: a model's ``predict``
        then calls its layers one by one."""
        return None

    def _runs_own_forward(self, cls) -> bool:
        """Whether this layer computes its forward as ``cls`` does: no ``forward`` of a
        subclass's or of the instance's own (a chain step stands in for ``cls.forward``)."""
        return type(self).forward is cls.forward and "forward" not in self.__dict__

    def _step_weights(self):
        """The arrays the layer's chain step reads on each call (``(kernel, bias or None)``),
        or ``None``."""
        return None

    def _check_once(self, signature, check) -> None:
        """Run ``check()`` (the layer's input checks, raising for a bad input) unless the
        last input that passed them had the same ``signature`` (shape and dtype): a model's
        inference calls a layer with the same shapes again and again."""
        if self.__dict__.get("_passed_checks") != signature:
            check()
            self._passed_checks = signature

    def _compute_dtype(self, x, *weights):
        """The dtype a forward pass computes in: float64 if the input or a weight is."""
        return result_float_dtype(x, *weights)

    def _cached(self):
        if self.cache is None:
            raise ConvkitError(f"{type(self).__name__}: backward called before forward "
                               f"(layer {self.name!r})")
        return self.cache

    # ----------------------------------------------------------- config and repr
    def get_config(self) -> dict:
        cfg = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}
        if self._input_shape_arg is not None:
            cfg["input_shape"] = list(self._input_shape_arg)
        if self.seed is not None:
            cfg["seed"] = self.seed
        return cfg

    @classmethod
    def from_config(cls, config: dict):
        cfg = dict(config)
        if "input_shape" in cfg and cfg["input_shape"] is not None:
            cfg["input_shape"] = tuple(cfg["input_shape"])
        return cls(**cfg)

    def extra_repr(self) -> str:
        """The constructor arguments that differ from their defaults, for ``repr``
        (required arguments always show): ``Conv2D(32, kernel_size=[3, 3], ...)``."""
        try:
            params = inspect.signature(type(self).__init__).parameters
        except (TypeError, ValueError):
            return ""
        try:
            config = self.get_config()
        except ConvkitError:       # e.g. a plain-callable initializer has no config form
            return ""
        parts = []
        for key, param in params.items():
            if key in _BASE_KEYS or key not in config or param.kind in (
                    param.VAR_KEYWORD, param.VAR_POSITIONAL):
                continue
            value = config[key]
            if param.default is param.empty:
                parts.append(f"{key}={value!r}")
            elif not self._is_default(key, value, param.default):
                parts.append(f"{key}={value!r}")
        return ", ".join(parts)

    def _is_default(self, key: str, value, default) -> bool:
        """Whether config ``value`` of ``key`` is the constructor ``default`` (for repr)."""
        return _same_default(key, value, default)

    def __repr__(self):
        extra = self.extra_repr()
        shape = f", output_shape={self.output_shape}" if self.built else ""
        return f"{type(self).__name__}({extra + ', ' if extra else ''}name={self.name!r}{shape})"


def _build_once(build):
    @functools.wraps(build)
    def wrapper(self, input_shape):
        if self.built:
            self._check_built_shape(input_shape)
            return None
        return build(self, input_shape)
    return wrapper


_BASE_KEYS = {"self", "name", "trainable", "input_shape", "dtype", "seed"}


def _same_default(key, value, default) -> bool:
    """Whether a config value is the constructor default, allowing the normalised forms
    (``1`` vs ``[1, 1]``, ``None`` vs ``"channels_last"`` or ``"linear"``)."""
    if value == default:
        return True
    if default is None and (key == "data_format" and value == "channels_last"
                            or key == "activation" and value == "linear"):
        return True
    if isinstance(value, str) and isinstance(default, str):
        return value.lower() == default.lower()
    if isinstance(value, (list, tuple)) and not isinstance(default, (list, tuple)):
        return all(_same_default(key, v, default) for v in value)
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)):
        return len(value) == len(default) and all(
            _same_default(key, v, d) for v, d in zip(value, default))
    return False


def data_format_arg(value, where: str) -> str:
    """``None`` -> ``"channels_last"``; checks the two legal strings (case-insensitive)."""
    if value is None:
        return "channels_last"
    if isinstance(value, str) and value.lower() in ("channels_last", "channels_first"):
        return value.lower()
    raise ShapeError(f"{where}: data_format must be 'channels_last' or 'channels_first', "
                     f"got {value!r}")


def spatial_output_shape(input_shape, data_format: str, compute) -> tuple:
    """Run ``compute(shape)`` (a :mod:`convkit.shapes` call) on a 4-D shape whose height or
    width may be ``None``: unknown sizes are validated with a large stand-in and come back
    as ``None``."""
    shape = list(input_shape)
    axes = (1, 2) if data_format == "channels_last" else (2, 3)
    unknown = [a for a in axes if shape[a] is None]
    for a in unknown:
        shape[a] = 1 << 20
    out = list(compute(tuple(shape)))
    for a in unknown:
        out[a] = None
    return tuple(out)


def _is_symbolic(x) -> bool:
    if isinstance(x, SymbolicTensor):
        return True
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(
        isinstance(v, SymbolicTensor) for v in x)


def _is_shape_list(shape) -> bool:
    return isinstance(shape, list) and len(shape) > 0 and all(
        isinstance(s, (tuple, list)) for s in shape)
