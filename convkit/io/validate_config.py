"""Checks on the JSON part of a saved model before anything is built from it.

:func:`check_saved_meta` runs on every ``load_model`` / ``load_weights`` right after the
archive is read (its arrays are already checked by :mod:`convkit.io.archive`). It refuses,
with one :class:`~convkit.errors.FileFormatError` naming the file and the part that is wrong:

* a ``model_config`` with a non-string name, a non-finite number, a size (``units``,
  ``filters``, kernel size, input dimension, ...) above ``limits.MAX_CONFIG_INT``, an input
  shape with more than ``limits.MAX_CONFIG_ELEMENTS`` elements, or more than
  ``limits.MAX_LAYERS`` layers;
* a ``compile_config`` that does not give back an optimizer, a loss and metrics (tried on
  the side, nothing is compiled);
* ``rng_states`` that NumPy would not accept (tried on fresh generators);
* optimizer entries (``optimizer/iterations``, ``optimizer/learning_rate``) that are not
  finite non-negative scalars.

:func:`build_model` then builds the model under :func:`convkit.io.limits.weight_budget`, so
a config that asks for more weight bytes than the file stores fails before allocating them.

>>> meta, arrays = read_archive("net.convkit")                     # doctest: +SKIP
>>> check_saved_meta(meta, arrays, "net.convkit", "load_model")    # doctest: +SKIP
>>> model = build_model(meta, arrays, "net.convkit", "load_model") # doctest: +SKIP
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import ConvkitError, FileFormatError
from . import limits

__all__ = ["check_saved_meta", "build_model"]

_OPT_PREFIX = "optimizer/"
# Integers under these keys are seeds or counters, not sizes.
_UNBOUNDED_INT_KEYS = ("seed",)
# Lists under these keys are input shapes: their product is bounded too.
_SHAPE_KEYS = ("batch_shape", "batch_input_shape", "build_input_shape", "input_shape", "shape")
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


def _check_value(value, path: str, fail, bound_sizes: bool = True) -> None:
    """Walk parsed JSON without recursion; ``path`` is where ``value`` sits. Every float
    must be finite and every ``name`` a string; with ``bound_sizes``, every int (but seeds)
    is at most ``MAX_CONFIG_INT`` and every input shape has at most ``MAX_CONFIG_ELEMENTS``
    elements. Only containers go on the stack, so long lists of numbers cost nothing."""
    if not isinstance(value, (dict, list)):
        _check_scalar(value, None, lambda: path, fail, bound_sizes)
        return
    stack = [(value, path, None)]
    while stack:
        item, where, key = stack.pop()
        if isinstance(item, dict):
            if len(item) > limits.MAX_MEMBERS:
                fail(f"{where} has {len(item)} entries, more than {limits.MAX_MEMBERS}")
            children = item.items()
        else:
            if len(item) > limits.MAX_LAYERS:
                fail(f"{where} has {len(item)} entries, more than {limits.MAX_LAYERS}")
            if bound_sizes and key in _SHAPE_KEYS:
                _check_shape(item, where, fail)
            children = enumerate(item)
        in_dict = isinstance(item, dict)
        for child_key, child in children:
            name_key = child_key if in_dict else None

            def place():          # built only for containers and failures
                return f"{where}.{child_key}" if in_dict else f"{where}[{child_key}]"
            if isinstance(child, (dict, list)):
                if name_key == "name":
                    fail(f"{place()} must be a string, got {type(child).__name__}")
                stack.append((child, place(), name_key))
            else:
                _check_scalar(child, name_key, place, fail, bound_sizes)


def _check_scalar(value, key, where, fail, bound_sizes: bool) -> None:
    """One JSON scalar under ``key``; ``where()`` names its place (built only to fail)."""
    if key == "name" and value is not None and not isinstance(value, str):
        fail(f"{where()} must be a string, got {type(value).__name__}")
    if isinstance(value, str):
        if len(value) > 1 << 16:
            fail(f"{where()} is a string of {len(value)} characters")
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if bound_sizes and key not in _UNBOUNDED_INT_KEYS and \
                abs(value) > limits.MAX_CONFIG_INT:
            fail(f"{where()} is {value}, more than the limit {limits.MAX_CONFIG_INT}")
    elif isinstance(value, float):
        if not math.isfinite(value):
            fail(f"{where()} is {value}, not a finite number")
    else:
        fail(f"{where()} has the unexpected type {type(value).__name__}")


def _check_shape(shape: list, where: str, fail) -> None:
    """An input shape (``[None, 28, 28, 1]``): sizes >= 0, at most MAX_CONFIG_ELEMENTS in
    all. Lists that are not flat lists of sizes are left to the layers."""
    if not all(d is None or (isinstance(d, int) and not isinstance(d, bool)) for d in shape):
        return
    sizes = [d for d in shape if d is not None]
    if any(d < 0 for d in sizes):
        fail(f"{where} = {shape} has a negative size")
    if math.prod(sizes) > limits.MAX_CONFIG_ELEMENTS:
        fail(f"{where} = {shape} has more than {limits.MAX_CONFIG_ELEMENTS} elements")


def _check_names(config: dict, fail) -> None:
    name = config.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > limits.MAX_NAME_LENGTH):
        fail(f"the model name must be a string of at most {limits.MAX_NAME_LENGTH} "
             f"characters, got {type(name).__name__}")
    layers = config.get("layers")
    if layers is not None and not isinstance(layers, list):
        fail(f"model_config.layers must be a list, got {type(layers).__name__}")
    for index, entry in enumerate(layers or []):
        if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str) \
                or not isinstance(entry.get("config", {}), dict):
            fail(f"model_config.layers[{index}] must be {{'class_name': str, 'config': dict}}")
        layer_name = entry.get("config", {}).get("name", entry.get("name"))
        if layer_name is not None and (not isinstance(layer_name, str)
                                       or len(layer_name) > limits.MAX_NAME_LENGTH):
            fail(f"model_config.layers[{index}] has an invalid name")


def _check_compile_config(config, fail) -> None:
    """Rebuild the optimizer, loss and metrics on the side: any exception means damage."""
    if config is None:
        return
    if not isinstance(config, dict) or not isinstance(config.get("optimizer"), dict):
        fail("compile_config must be a dict with an 'optimizer' dict")
    optimizer = config["optimizer"]
    if not isinstance(optimizer.get("class_name"), str) \
            or not isinstance(optimizer.get("config", {}), dict):
        fail("compile_config.optimizer must be {'class_name': str, 'config': dict}")
    loss, metrics = config.get("loss"), config.get("metrics") or []
    if not isinstance(loss, (str, dict)):
        fail(f"compile_config.loss must be a name or a dict, got {type(loss).__name__}")
    if not isinstance(metrics, list):
        fail(f"compile_config.metrics must be a list, got {type(metrics).__name__}")
    _check_value(config, "compile_config", fail, bound_sizes=False)   # decay_steps may be big
    from .. import losses, optimizers
    try:
        optimizers.deserialize(optimizer)
        losses.get(loss)
    except Exception as exc:  # noqa: BLE001 - whatever the constructors raise is damage here
        fail(f"compile_config cannot be used ({type(exc).__name__}: {str(exc)[:200]})")


def _check_rng_states(states, fail) -> None:
    if states is None:
        return
    if not isinstance(states, dict):
        fail(f"rng_states must be a dict, got {type(states).__name__}")
    for name, state in states.items():
        if not isinstance(state, dict) or state.get("bit_generator") not in _BIT_GENERATORS:
            fail(f"rng_states[{name!r:.80}] is not a NumPy bit-generator state")
        generator = getattr(np.random, state["bit_generator"])()
        try:
            generator.state = state
        except Exception as exc:  # noqa: BLE001 - NumPy's setters raise a zoo of types
            fail(f"rng_states[{name!r:.80}] is damaged ({type(exc).__name__}: "
                 f"{str(exc)[:200]})")


def _check_optimizer_scalars(arrays: dict, fail) -> None:
    for key, low in (("iterations", 0), ("learning_rate", 0.0)):
        value = arrays.get(_OPT_PREFIX + key)
        if value is None:
            continue
        if value.shape != () or value.dtype.kind not in "iuf":
            fail(f"optimizer/{key} must be a number, got shape {value.shape} of {value.dtype}")
        number = float(value)
        if not math.isfinite(number) or number < low or \
                (key == "iterations" and (number >= 2 ** 62 or number != int(number))):
            fail(f"optimizer/{key} is {number}, not a valid value")


def check_saved_meta(meta: dict, arrays: dict, path, where: str) -> None:
    """Refuse a saved model's metadata that loading would trip over (see the module
    docstring); raises :class:`FileFormatError` naming ``where``, ``path`` and the part."""

    def fail(reason):
        raise FileFormatError(f"{where}: {path!s} is damaged: {reason}")

    config = meta.get("model_config")
    if config is not None:
        if not isinstance(config, dict):
            fail(f"model_config must be a dict, got {type(config).__name__}")
        _check_names(config, fail)
        _check_value(config, "model_config", fail)
    model_class = meta.get("model_class", "Sequential")
    if not isinstance(model_class, str):
        fail(f"model_class must be a string, got {type(model_class).__name__}")
    _check_compile_config(meta.get("compile_config"), fail)
    _check_rng_states(meta.get("rng_states"), fail)
    _check_optimizer_scalars(arrays, fail)


def build_model(meta: dict, arrays: dict, path, where: str):
    """The model described by ``meta["model_config"]``, freshly initialised, built with at
    most as many weight bytes as ``arrays`` hold (as float64, plus
    ``limits.WEIGHT_BUDGET_SLACK``). Any failure is a :class:`FileFormatError`."""
    from ..models.saving import model_from_config
    config = meta.get("model_config")
    if not isinstance(config, dict):
        raise FileFormatError(f"{where}: {path!s} holds no model description (a dict under "
                              f"'model_config')")
    stored = sum(value.size * 8 for name, value in arrays.items()
                 if not name.startswith(_OPT_PREFIX))
    try:
        with limits.weight_budget(f"{where}: {path!s}", stored + limits.WEIGHT_BUDGET_SLACK):
            model = model_from_config(config, meta.get("model_class", "Sequential"))
    except FileFormatError:
        raise
    except (ConvkitError, KeyError, TypeError, ValueError, AttributeError, IndexError,
            OverflowError, RecursionError, MemoryError) as exc:
        raise FileFormatError(f"{where}: the model description in {path!s} is invalid "
                              f"({type(exc).__name__}: {str(exc)[:300]})") from None
    _check_weights_fit(model, arrays, path, where)
    return model


def _check_weights_fit(model, arrays: dict, path, where: str) -> None:
    """The stored weights must fit the model the same file describes: by name and shape,
    or (a model saved under other layer names) shape by shape in order."""
    expected = [(f"{layer.name}/{w.name}", w.value.shape) for layer in model.layers
                for w in layer.weights]
    stored = [(name, value.shape) for name, value in arrays.items()
              if not name.startswith(_OPT_PREFIX)]
    if dict(expected) == dict(stored) or [s for _, s in expected] == [s for _, s in stored]:
        return
    differences = sorted(set(expected) ^ set(stored))[:6]
    raise FileFormatError(f"{where}: {path!s} is damaged: its weights do not fit the model "
                          f"its own description builds (differing: {differences})")
