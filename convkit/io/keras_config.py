"""Keras model configs <-> convkit models, both ways, without importing anything a file names.

Keras 3 describes a model as JSON (``config.json`` in a ``.keras`` archive, the
``model_config`` attribute of a legacy ``.h5``)::

    {"module": "keras", "class_name": "Sequential", "config": {"name": "sequential",
        "layers": [{"module": "keras.layers", "class_name": "InputLayer",
                    "config": {"batch_shape": [null, 28, 28, 1], "name": "input_layer", ...}},
                   {"module": "keras.layers", "class_name": "Conv2D",
                    "config": {"name": "conv2d", "filters": 32, "kernel_size": [3, 3],
                               "dtype": {"class_name": "DTypePolicy", "config": {"name":
                               "float32"}}, "kernel_constraint": null, ...},
                    "build_config": {"input_shape": [null, 28, 28, 1]}}, ...]},
     "compile_config": {"optimizer": {...}, "loss": "...", "metrics": [...]}}

A functional model (``"class_name": "Functional"``) also gives each layer its
``inbound_nodes``: Keras 3 writes ``[{"args": [<tensor> or [<tensor>, ...]], "kwargs": {}}]``
with ``<tensor> = {"class_name": "__keras_tensor__", "config": {"keras_history": [layer
name, 0, 0], ...}}``; Keras 2 wrote ``[[[layer name, 0, 0, {}], ...]]``. Both are read.

Reading is generic, so a convkit layer whose constructor takes Keras's argument names loads
with no code here: the class comes from :func:`convkit.layers.get` (or ``custom_objects``),
the config goes to ``from_config`` after these translations:

* a ``dtype`` policy ``{"class_name": "DTypePolicy", "config": {"name": "float32"}}`` becomes
  ``"float32"``; a mixed-precision policy is refused;
* nested initializers/regularizers lose Keras's ``module``/``registered_name`` and their
  ``None`` arguments (``{"seed": null, "input_axes": null}``);
* an argument convkit's class does not take is dropped when Keras wrote its "off" value
  (``null``, or the default in :data:`KERAS_ONLY_DEFAULTS`: ``renorm: false``, ...) and is
  otherwise a :class:`~convkit.errors.ConvkitError` naming the layer and the argument
  (``kernel_constraint: {"class_name": "MaxNorm", ...}`` is never silently dropped).

Nothing a file names is imported or run: ``Lambda`` layers and classes outside Keras's own
modules are refused unless ``custom_objects={"Name": cls}`` supplies them.

Writing goes the other way (:func:`keras_model_config`): each layer's ``get_config`` with
the dtype as a policy, initializers and regularizers in Keras's nested form, the arguments
only convkit has dropped at their defaults (a non-default one, say
``padding_mode="reflect"``, is an error: Keras could not honour it), and Keras 3's
``module``/``registered_name``/``build_config``/``inbound_nodes`` around it.
"""
from __future__ import annotations

import contextlib
import inspect
import math
import warnings

import numpy as np

from ..errors import ConvkitError, FileFormatError

__all__ = ["KERAS_VERSION", "KERAS_ONLY_DEFAULTS", "model_from_keras_config",
           "keras_model_config", "keras_compile_config", "compile_from_keras",
           "architecture_difference", "weight_budget"]

#: the Keras release whose file format the writers follow
KERAS_VERSION = "3.15.1"

#: Keras arguments convkit has no counterpart for, with the values at which they change
#: nothing; any ``null`` argument is also taken as "off". Other values are refused.
KERAS_ONLY_DEFAULTS = {
    # InputLayer
    "sparse": (False,), "ragged": (False,), "optional": (False,),
    # BatchNormalization
    "synchronized": (False,), "renorm": (False,), "renorm_momentum": (0.99,),
    # losses (Keras 2 wrote "auto")
    "reduction": ("sum_over_batch_size", "auto"), "axis": (-1,),
    # optimizers
    "use_ema": (False,), "ema_momentum": (0.99,), "amsgrad": (False,),
    "is_legacy_optimizer": (False,), "decay": (0.0,), "jit_compile": (True, False),
}

#: arguments only convkit has, with the value that means "as Keras does"
_CONVKIT_ONLY_DEFAULTS = {"padding_mode": "zeros", "ceil_mode": False,
                          "count_include_pad": False}
_CONVKIT_ONLY_BY_CLASS = {"MaxPooling2D": {"dilation_rate": [1, 1]},
                          # Keras's constructors of these take neither argument
                          "UpSampling1D": {"data_format": "channels_last"},
                          "SpatialDropout2D": {"trainable": True}}
# Config keys that hold nested Keras objects, translated both ways.
_NESTED_KINDS = ("_initializer", "_regularizer")
_FLOAT_POLICIES = ("float32", "float64")


# ============================================================================ helpers
def _accepted_args(cls) -> set | None:
    """Keyword arguments ``cls(...)`` takes, following ``**kwargs`` up the base classes
    (convkit's ``Layer`` refuses any other); ``None`` when some constructor takes anything."""
    from ..layers import Layer
    names = set()
    for klass in cls.__mro__:
        if klass is Layer:
            return names | {"name", "trainable", "input_shape", "dtype", "seed",
                            "batch_input_shape"}
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            params = inspect.signature(init).parameters
        except (TypeError, ValueError):
            return None
        names |= {n for n, p in params.items() if n != "self" and p.kind in (
            p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            return names
    return None


def _is_off(key: str, value) -> bool:
    """Whether a Keras-only argument has the value that changes nothing."""
    return value is None or any(type(value) is type(off) and value == off
                                for off in KERAS_ONLY_DEFAULTS.get(key, ()))


def _is_keras_module(module) -> bool:
    return module is None or (isinstance(module, str) and
                              (module == "keras" or module.startswith("keras.")))


def _plain_object(value, what: str, where: str):
    """A nested Keras object (initializer, regularizer, loss, metric, optimizer, schedule)
    as convkit's ``{"class_name", "config"}`` (strings pass through)."""
    if not isinstance(value, dict):
        return value
    class_name = value.get("class_name")
    module = value.get("module")
    if not isinstance(class_name, str) or not _is_keras_module(module):
        raise ConvkitError(f"{where}: {what} {class_name!r} from module {module!r} is not "
                           f"one of Keras's own; convkit never imports what a file names")
    if class_name.startswith("Custom>"):            # Keras 2's prefix for built-ins
        class_name = class_name[len("Custom>"):]
    config = value.get("config") or {}
    if not isinstance(config, dict):
        raise FileFormatError(f"{where}: {what} {class_name!r} has a config that is not an "
                              f"object")
    clean = {}
    for key, item in config.items():
        if _is_off(key, item):
            continue
        clean[key] = _plain_object(item, key, where) if isinstance(item, dict) else item
    return {"class_name": class_name, "config": clean}


def _dtype_name(value, where: str) -> str:
    if isinstance(value, dict):
        inner = value.get("config")
        value = inner.get("name") if isinstance(inner, dict) else None
    if value is None:
        return None
    if not isinstance(value, str) or value not in _FLOAT_POLICIES:
        raise ConvkitError(f"{where}: dtype policy {value!r} is not supported; convkit "
                           f"computes in {', '.join(_FLOAT_POLICIES)}")
    return value


@contextlib.contextmanager
def weight_budget(nbytes: int | None, where: str):
    """Within the block, layers may create at most ``nbytes`` of weights in total: the check
    runs before each weight is allocated, so a config describing a huge layer fails with a
    :class:`FileFormatError` instead of allocating it. ``None``: no limit.

    It works by wrapping :func:`convkit.initializers.get`, through which every layer's
    ``add_weight`` allocates, for the duration of the block (layers being built in other
    threads at that moment would count against the same budget)."""
    if nbytes is None:
        yield
        return
    from .. import initializers
    original = initializers.get
    remaining = [int(nbytes)]

    def guarded_get(identifier):
        init = original(identifier)

        def allocate(shape, rng=None, dtype=None, fan_in=None, fan_out=None):
            size = math.prod(shape) * np.dtype(dtype or "float32").itemsize
            remaining[0] -= size
            if remaining[0] < 0:
                raise FileFormatError(f"{where}: the architecture asks for weights of shape "
                                      f"{tuple(shape)} beyond what the file's weights hold "
                                      f"({nbytes:,} bytes in all)")
            return init(shape, rng=rng, dtype=dtype, fan_in=fan_in, fan_out=fan_out)
        return allocate

    initializers.get = guarded_get
    try:
        yield
    finally:
        initializers.get = original


# ============================================================================ Keras -> convkit
def _layer_class(entry: dict, custom_objects: dict, where: str):
    from .. import layers as _layers
    class_name = entry.get("class_name")
    module = entry.get("module")
    registered = entry.get("registered_name")
    config = entry.get("config")
    name = config.get("name") if isinstance(config, dict) else None
    here = f"{where}: layer {name!r}"
    if not isinstance(class_name, str):
        raise FileFormatError(f"{here} has no class_name")
    for key in (registered, class_name):
        if isinstance(key, str) and key in custom_objects:
            cls = custom_objects[key]
            if not (isinstance(cls, type) and issubclass(cls, _layers.Layer)):
                raise ConvkitError(f"{here}: custom_objects[{key!r}] must be a convkit Layer "
                                   f"subclass, got {cls!r}")
            return cls
    if class_name == "Lambda":
        raise ConvkitError(f"{here} is a Lambda layer, whose Python code is stored in the "
                           f"file; convkit never runs code from a file. Write the function "
                           f"as a convkit layer and pass custom_objects={{'Lambda': ...}}")
    if not _is_keras_module(module) or (registered is not None and registered != class_name
                                        and not str(registered).startswith("keras")):
        raise ConvkitError(f"{here} is of class {class_name!r} (module {module!r}, registered "
                           f"as {registered!r}), not a Keras layer; convkit never imports "
                           f"what a file names: pass the class in custom_objects=")
    try:
        return _layers.get(class_name)
    except ConvkitError:
        raise ConvkitError(f"{here}: convkit has no layer {class_name!r} (it has "
                           f"{', '.join(_layers.names())}); pass custom_objects={{"
                           f"{class_name!r}: cls}} for your own") from None


def _layer_arguments(cls, class_name: str, config: dict, where: str) -> dict:
    """Keras's layer config -> keyword arguments for ``cls.from_config`` (see the module
    docstring for the rules)."""
    accepted = _accepted_args(cls)
    args = {}
    for key, value in config.items():
        if key == "dtype":
            value = _dtype_name(value, f"{where} ({class_name})")
            if value is None:
                continue
        elif key.endswith(_NESTED_KINDS):
            value = _plain_object(value, key, f"{where} ({class_name})")
        if accepted is None or key in accepted:
            args[key] = value
        elif not _is_off(key, value):
            raise ConvkitError(f"{where} ({class_name}): argument {key}={value!r} has no "
                               f"convkit counterpart, and dropping it would change the "
                               f"model")
    return args


def _make_layer(entry: dict, custom_objects: dict, where: str):
    if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
        raise FileFormatError(f"{where}: a layer entry is not {{'class_name', 'config'}}: "
                              f"{str(entry)[:200]}")
    cls = _layer_class(entry, custom_objects, where)
    name = entry["config"].get("name") or entry.get("name")
    here = f"{where}: layer {name!r}"
    args = _layer_arguments(cls, entry["class_name"], entry["config"], here)
    args.pop("batch_input_shape", None)
    try:
        return cls.from_config(args)
    except ConvkitError as exc:
        raise ConvkitError(f"{here} ({entry['class_name']}): {exc}") from None
    except (TypeError, ValueError, KeyError) as exc:
        raise FileFormatError(f"{here} ({entry['class_name']}): its config does not fit "
                              f"({type(exc).__name__}: {exc})") from None


def _input_shape(config: dict, where: str) -> tuple:
    for key in ("batch_shape", "batch_input_shape"):
        shape = config.get(key)
        if shape is not None:
            return _checked_shape(shape, where)[1:]
    shape = config.get("shape") or config.get("input_shape")
    if shape is not None:
        return _checked_shape([None, *shape], where)[1:]
    raise FileFormatError(f"{where}: InputLayer {config.get('name')!r} has no shape")


def _checked_shape(shape, where: str) -> tuple:
    if not isinstance(shape, (list, tuple)) or not shape or not all(
            s is None or (isinstance(s, int) and not isinstance(s, bool) and s > 0)
            for s in shape):
        raise FileFormatError(f"{where}: {shape!r} is not a shape")
    return tuple(shape)


def _history(tensor, where: str) -> str:
    """The producing layer's name of one Keras 3 tensor reference or Keras 2 node entry."""
    if isinstance(tensor, dict):
        history = (tensor.get("config") or {}).get("keras_history")
    else:
        history = tensor
    if not (isinstance(history, (list, tuple)) and len(history) >= 3
            and isinstance(history[0], str)):
        raise FileFormatError(f"{where}: cannot read the inbound tensor {str(tensor)[:200]}")
    if history[1] != 0 or history[2] != 0:
        raise ConvkitError(f"{where}: reads output {history[2]} of call {history[1]} of layer "
                           f"{history[0]!r}; convkit layers are called once and have one "
                           f"output")
    return history[0]


def _inbound(entry: dict, where: str):
    """``(names, as_list)``: the layers a functional layer reads, and whether it takes them
    as a list (merging layers)."""
    nodes = entry.get("inbound_nodes")
    if not isinstance(nodes, list) or len(nodes) != 1:
        count = len(nodes) if isinstance(nodes, list) else nodes
        raise ConvkitError(f"{where}: the layer is called {count} times in the graph; convkit "
                           f"supports layers called exactly once (no shared layers)")
    node = nodes[0]
    if isinstance(node, dict):                                    # Keras 3
        args, kwargs = node.get("args"), node.get("kwargs") or {}
        if not isinstance(args, list) or len(args) != 1:
            raise ConvkitError(f"{where}: the layer is called with {args!r}; convkit layers "
                               f"take one tensor or one list of tensors")
        for key, value in kwargs.items():
            if key != "training" and value is not None:
                raise ConvkitError(f"{where}: the layer is called with {key}={value!r}, "
                                   f"which convkit does not support")
        if isinstance(args[0], list):
            return [_history(t, where) for t in args[0]], True
        return [_history(args[0], where)], False
    if isinstance(node, list) and node:                           # Keras 2
        names = [_history(t, where) for t in node]
        return names, len(names) > 1
    raise FileFormatError(f"{where}: cannot read inbound_nodes {str(nodes)[:200]}")


def _refs(value, where: str) -> list:
    """``input_layers`` / ``output_layers``: ``[name, 0, 0]`` or a list of those."""
    if isinstance(value, list) and value and isinstance(value[0], str):
        return [_history(value, where)], True
    if isinstance(value, list) and value:
        return [_history(v, where) for v in value], False
    raise FileFormatError(f"{where}: cannot read the model's inputs/outputs {value!r}")


def _sequential(config: dict, custom_objects: dict, where: str, build_config, budget):
    from ..layers import Input
    from ..models import Sequential
    entries = config.get("layers")
    if not isinstance(entries, list):
        raise FileFormatError(f"{where}: the Sequential config has no list of layers")
    input_tensor, made = None, []
    shape = config.get("build_input_shape") or (build_config or {}).get("input_shape")
    for entry in entries:
        if isinstance(entry, dict) and entry.get("class_name") == "InputLayer":
            cfg = entry.get("config") or {}
            input_tensor = (_input_shape(cfg, where), cfg.get("name"))
            continue
        if not made and isinstance(entry, dict) and isinstance(entry.get("config"), dict) \
                and entry["config"].get("batch_input_shape") is not None:
            shape = entry["config"]["batch_input_shape"]           # Keras 2, no InputLayer
        made.append(_make_layer(entry, custom_objects, where))
    model = Sequential(name=config.get("name"), trainable=config.get("trainable", True))
    with weight_budget(budget, where):
        if input_tensor is not None:
            kwargs = {"name": input_tensor[1]} if input_tensor[1] else {}
            model.add(Input(shape=input_tensor[0], **kwargs))
        for layer in made:
            model.add(layer)
        if not model.built and shape is not None:
            model.build(_checked_shape(shape, where))
    return model


def _call_layers(tensors: dict, pending: list, where: str) -> None:
    """Call each pending ``(name, layer, sources, as_list)`` once its sources exist (Keras
    lists a layer after its inputs; any order works here)."""
    while pending:
        waiting = []
        for name, layer, sources, as_list in pending:
            if not all(source in tensors for source in sources):
                waiting.append((name, layer, sources, as_list))
                continue
            args = [tensors[source] for source in sources]
            tensors[name] = layer(args if as_list or layer.n_inputs is None else args[0])
        if len(waiting) == len(pending):
            missing = sorted({s for _, _, sources, _ in waiting for s in sources
                              if s not in tensors})
            raise FileFormatError(f"{where}: layers {[w[0] for w in waiting]} read layers "
                                  f"{missing} that the config does not define")
        pending = waiting


def _functional(config: dict, custom_objects: dict, where: str, budget):
    from ..layers import Input
    from ..models import Model
    entries = config.get("layers")
    if not isinstance(entries, list):
        raise FileFormatError(f"{where}: the functional config has no list of layers")
    tensors, pending = {}, []
    for entry in entries:
        if not isinstance(entry, dict):
            raise FileFormatError(f"{where}: a layer entry is not an object")
        cfg = entry.get("config") or {}
        name = entry.get("name") or cfg.get("name")
        if not isinstance(name, str):
            raise FileFormatError(f"{where}: a layer has no name")
        if entry.get("class_name") == "InputLayer":
            tensors[name] = Input(shape=_input_shape(cfg, where), name=name)
            continue
        here = f"{where}: layer {name!r}"
        pending.append((name, _make_layer(entry, custom_objects, where),
                        *_inbound(entry, here)))
    with weight_budget(budget, where):
        _call_layers(tensors, pending, where)
    ends = []
    for key in ("input_layers", "output_layers"):
        names, single = _refs(config.get(key), where)
        missing = [n for n in names if n not in tensors]
        if missing:
            raise FileFormatError(f"{where}: {key} names {missing}, not layers of the model")
        found = [tensors[n] for n in names]
        ends.append(found[0] if single or len(found) == 1 else found)
    return Model(ends[0], ends[1], name=config.get("name"),
                 trainable=config.get("trainable", True))


def model_from_keras_config(config: dict, custom_objects: dict | None = None,
                            where: str = "model_from_keras_config",
                            max_weight_bytes: int | None = None):
    """A convkit model (fresh weights) from a Keras model config: the whole document
    ``{"class_name": "Sequential" | "Functional", "config": {...}}`` of ``config.json`` or
    of a legacy ``.h5``'s ``model_config``.

    ``max_weight_bytes`` caps the weights the architecture may allocate (checked before
    each allocation; see :func:`weight_budget`).

    >>> model = model_from_keras_config(json.load(open("config.json")))   # doctest: +SKIP
    """
    custom_objects = dict(custom_objects or {})
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise FileFormatError(f"{where}: the model config is not {{'class_name', 'config'}}")
    class_name = config.get("class_name")
    try:
        if class_name == "Sequential":
            return _sequential(config["config"], custom_objects, where,
                               config.get("build_config"), max_weight_bytes)
        if class_name in ("Functional", "Model"):
            return _functional(config["config"], custom_objects, where, max_weight_bytes)
    except RecursionError:
        raise FileFormatError(f"{where}: the model config nests too deeply") from None
    except ConvkitError:
        raise
    except (KeyError, TypeError, AttributeError, IndexError, ValueError,
            ArithmeticError) as exc:
        # a config from a file has the wrong type or lacks a key somewhere deep inside
        raise FileFormatError(f"{where}: the model config is malformed "
                              f"({type(exc).__name__}: {exc})") from None
    raise ConvkitError(f"{where}: the model is of class {class_name!r}; convkit reads "
                       f"Sequential and functional models (a subclassed model's Python code "
                       f"is not in the file)")


# ---------------------------------------------------------------------------- compile
def compile_from_keras(model, compile_config, where: str) -> bool:
    """Compile ``model`` with the optimizer, loss and metrics of Keras's ``compile_config``
    (or a legacy ``training_config``). What convkit cannot reproduce (an unknown optimizer
    or loss, loss weights, ``amsgrad=True``, ...) gives a warning naming it and leaves the
    model uncompiled; returns whether it compiled."""
    if not compile_config:
        return False
    try:
        if not isinstance(compile_config, dict):
            raise ConvkitError("it is not an object")
        optimizer = compile_config.get("optimizer", compile_config.get("optimizer_config"))
        optimizer = _plain_object(optimizer, "optimizer", where)
        if isinstance(optimizer, dict):
            lr = optimizer["config"].get("learning_rate")
            if isinstance(lr, dict):
                optimizer["config"]["learning_rate"] = _plain_object(lr, "schedule", where)
        for key in ("loss_weights", "weighted_metrics"):
            if compile_config.get(key) is not None:
                raise ConvkitError(f"{key}={compile_config[key]!r} is not supported")
        loss = _plain_object(compile_config.get("loss"), "loss", where)
        metrics = compile_config.get("metrics") or []
        if not isinstance(metrics, list):
            metrics = [metrics]
        metrics = [_plain_object(m, "metric", where) for m in metrics]
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics or None)
        return True
    except (ConvkitError, TypeError, KeyError, AttributeError) as exc:
        model.compiled = False
        warnings.warn(f"{where}: the saved training settings could not be restored ({exc}); "
                      f"the model is loaded uncompiled, call model.compile(...) before fit",
                      stacklevel=3)
        return False


def _keras_object(value, module: str):
    """A convkit ``{"class_name", "config"}`` (an optimizer, loss, metric, initializer,
    regularizer; a learning-rate schedule inside) in Keras's form; names pass through."""
    if isinstance(value, dict) and "class_name" in value:
        config = {k: _keras_object(v, module + ".schedules") if isinstance(v, dict) else v
                  for k, v in (value.get("config") or {}).items()}
        return {"module": module, "class_name": value["class_name"], "config": config,
                "registered_name": None}
    return value


# Short loss names Keras 3.15's legacy .h5 loader cannot resolve (it finds them among the
# metrics): written out in full.
_FULL_LOSS_NAMES = {"mse": "mean_squared_error", "mae": "mean_absolute_error"}


def keras_compile_config(model) -> dict | None:
    """The model's ``compile`` settings as Keras 3 writes them (None if not compiled)."""
    config = model.get_compile_config()
    if not config:
        return None
    loss = config["loss"]
    if isinstance(loss, str):
        loss = _FULL_LOSS_NAMES.get(loss.lower(), loss)
    return {"optimizer": _keras_object(config["optimizer"], "keras.optimizers"),
            "loss": _keras_object(loss, "keras.losses"),
            "loss_weights": None,
            "metrics": [_keras_object(m, "keras.metrics") for m in config["metrics"]] or None,
            "weighted_metrics": None, "run_eagerly": False, "steps_per_execution": 1,
            "jit_compile": False}


# ============================================================================ convkit -> Keras
def _policy(dtype: str) -> dict:
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": dtype},
            "registered_name": None}


def _as_list(value):
    return [_as_list(v) for v in value] if isinstance(value, (list, tuple)) else value


def keras_layer_config(layer) -> dict:
    """``{"class_name", "config"}`` of one layer as Keras 3 writes it; a ConvkitError names
    the layer and the argument when Keras has no way to express a setting."""
    class_name = type(layer).__name__
    config = layer.get_config()
    only = dict(_CONVKIT_ONLY_DEFAULTS, **_CONVKIT_ONLY_BY_CLASS.get(class_name, {}))
    own = set(inspect.signature(type(layer).__init__).parameters)
    out = {}
    for key, value in config.items():
        value = _as_list(value)
        here = f"{class_name} {layer.name!r}: argument {key}={value!r}"
        if key in only:
            if value != only[key]:
                raise ConvkitError(f"save: {here} has no Keras counterpart; save the model "
                                   f"as .convkit to keep it")
            continue
        if key == "input_shape" or (key == "seed" and "seed" not in own):
            continue
        if key == "padding" and not isinstance(value, str) and \
                not class_name.startswith("ZeroPadding"):
            raise ConvkitError(f"save: {here}: Keras pads only 'valid' or 'same'; add a "
                               f"ZeroPadding2D layer, or save as .convkit")
        if key == "dtype":
            value = _policy(value)
        elif key.endswith("_initializer"):
            value = _keras_object(value, "keras.initializers")
        elif key.endswith("_regularizer"):
            value = _keras_object(value, "keras.regularizers")
        out[key] = value
    return {"class_name": class_name, "config": out}


def _entry(layer, input_shapes) -> dict:
    entry = {"module": "keras.layers", **keras_layer_config(layer), "registered_name": None}
    if input_shapes is not None:
        entry["build_config"] = {"input_shape": _as_list(input_shapes)}
    return entry


def _input_entry(name: str, shape, dtype: str) -> dict:
    return {"module": "keras.layers", "class_name": "InputLayer",
            "config": {"batch_shape": [None, *shape], "dtype": dtype, "sparse": False,
                       "ragged": False, "name": name, "optional": False},
            "registered_name": None}


def _tensor(shape, dtype: str, producer: str) -> dict:
    return {"class_name": "__keras_tensor__",
            "config": {"shape": _as_list(shape), "dtype": dtype,
                       "keras_history": [producer, 0, 0]}}


def keras_model_config(model, legacy: bool = False) -> dict:
    """The model as Keras 3's ``config.json`` (``legacy=True``: the ``model_config`` of a
    legacy ``.h5``, without ``module``/``registered_name``/``build_config`` around layers).
    Layers are listed in Keras's order (:func:`convkit.io.onnx_export.keras_layer_order`),
    which is also the order of their weights in the file."""
    from ..models import Sequential
    from .onnx_export import keras_layer_order
    if not model.built:
        raise ConvkitError(f"save: {type(model).__name__} {model.name!r} is not built yet; "
                           f"give it an input shape or run it on data first")
    dtype = model.dtype
    if isinstance(model, Sequential):
        shape = tuple(model.input_shape)
        input_name = getattr(getattr(model, "_input_layer", None), "name", None)
        layers = [_input_entry(input_name or "input_layer", shape[1:], dtype)]
        for layer in model.layers:
            layers.append(_entry(layer, getattr(layer, "input_shape", None)))
        inner = {"name": model.name, "trainable": model.trainable, "dtype": _policy(dtype),
                 "layers": layers, "build_input_shape": _as_list(shape)}
        config = {"module": "keras", "class_name": "Sequential", "config": inner,
                  "registered_name": None, "build_config": {"input_shape": _as_list(shape)}}
    else:
        produced = {}
        for node in model._nodes:
            produced[id(node.output)] = node
        layers = []
        for layer in keras_layer_order(model):
            if type(layer).__name__ == "InputLayer":
                shape = next(t.shape for t in model.inputs if t.layer is layer)
                entry = _input_entry(layer.name, shape[1:], dtype)
                entry["name"], entry["inbound_nodes"] = layer.name, []
                layers.append(entry)
                continue
            node = next(n for n in model._nodes if n.layer is layer)
            refs = [_tensor(t.shape, dtype, t.layer.name) for t in node.inputs]
            shapes = [t.shape for t in node.inputs]
            many = layer.n_inputs is None
            entry = _entry(layer, shapes if many else shapes[0])
            entry["name"] = layer.name
            entry["inbound_nodes"] = [{"args": [refs if many else refs[0]], "kwargs": {}}]
            layers.append(entry)
        ins = [[t.layer.name, 0, 0] for t in model.inputs]
        outs = [[t.layer.name, 0, 0] for t in model.outputs]
        inner = {"name": model.name, "trainable": model.trainable, "layers": layers,
                 "input_layers": ins[0] if model._single_input else ins,
                 "output_layers": outs[0] if model._single_output else outs}
        config = {"module": "keras.src.models.functional", "class_name": "Functional",
                  "config": inner, "registered_name": "Functional",
                  "build_config": {"input_shape": None}}
    if legacy:
        config = {"class_name": config["class_name"], "config": config["config"]}
        for entry in config["config"]["layers"]:
            for key in ("module", "registered_name", "build_config"):
                entry.pop(key, None)
    return config


# ============================================================================ comparison
_IGNORED = ("name", "trainable", "dtype", "seed", "input_shape")


def _comparable(config: dict) -> dict:
    return {k: _as_list(v) for k, v in config.items()
            if k not in _IGNORED and not k.endswith(_NESTED_KINDS)}


def _wiring(model, order) -> list:
    """For each layer in ``order``, the positions (in ``order``) of the layers it reads."""
    from ..models import Sequential
    if isinstance(model, Sequential):
        return [[i - 1] if i else [] for i in range(len(order))]
    position = {id(layer): i for i, layer in enumerate(order)}
    reads = {id(node.layer): [position[id(t.layer)] for t in node.inputs]
             for node in model._nodes}
    return [reads.get(id(layer), []) for layer in order]


def architecture_difference(model, reference) -> str | None:
    """The first difference between two models' architectures, compared in Keras's layer
    order (class, the config arguments that shape the computation, the wiring, the input
    shapes), or None. Names, dtypes, initializers and regularizers are not compared."""
    from .onnx_export import keras_layer_order
    ours, theirs = keras_layer_order(model), keras_layer_order(reference)
    if len(ours) != len(theirs):
        return (f"the file's model has {len(theirs)} layers "
                f"{[type(x).__name__ for x in theirs]}, this model {len(ours)} "
                f"{[type(x).__name__ for x in ours]}")
    for index, (mine, file_layer) in enumerate(zip(ours, theirs)):
        what = f"layer {index} ({type(mine).__name__} {mine.name!r})"
        if type(mine).__name__ != type(file_layer).__name__:
            return (f"layer {index} is {type(file_layer).__name__} {file_layer.name!r} in "
                    f"the file but {type(mine).__name__} {mine.name!r} in this model")
        a, b = _comparable(mine.get_config()), _comparable(file_layer.get_config())
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return f"{what}: {key} is {b.get(key)!r} in the file but {a.get(key)!r} here"
    for index, (mine, file_reads) in enumerate(zip(_wiring(model, ours),
                                                   _wiring(reference, theirs))):
        if mine != file_reads:
            return (f"layer {index} ({ours[index].name!r}) reads layers {file_reads} in the "
                    f"file but {mine} in this model")
    a_shapes = [tuple(s)[1:] for s in _listed(model.input_shape)]
    b_shapes = [tuple(s)[1:] for s in _listed(reference.input_shape)]
    if a_shapes != b_shapes:
        return f"the inputs are {b_shapes} in the file but {a_shapes} in this model"
    return None


def _listed(shape) -> list:
    return shape if isinstance(shape, list) else [shape]
