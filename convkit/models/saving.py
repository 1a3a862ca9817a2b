"""Saving and loading models without pickle: one :mod:`convkit.io.archive` file.

The archive's metadata (JSON) holds::

    {"kind": "model" | "weights",
     "model_class": "Sequential" | "Functional",
     "model_config": model.get_config(),          # architecture, Keras-like
     "compile_config": {"optimizer": {"class_name", "config"}, "loss", "metrics"} | None,
     "rng_states": {...},                         # shuffling and dropout generators
     "convkit_version": "0.1.0"}

and its arrays, in order, every layer weight as ``"<layer name>/<weight name>"`` (e.g.
``"conv2d/kernel"``, shape ``(3, 3, 1, 32)``) followed by the optimizer state as
``"optimizer/<key>"``. With the optimizer state and the random generators restored, training
continues exactly where it stopped: ``fit`` 2 epochs, save, load, ``fit(epochs=4,
initial_epoch=2)`` gives the same weights, bit for bit, as 4 epochs in one go.

The extension picks the format, as in Keras: ``.keras`` writes a Keras 3 archive, ``.h5``
(``.hdf5``) a legacy Keras HDF5 model, and for ``save_weights`` ``.weights.h5`` Keras 3's
weights file and ``.h5`` the legacy weights layout (:mod:`convkit.io.keras_export`); real
Keras opens all of them (``.keras`` with the optimizer state). Any other extension
(``.convkit`` is the convention) writes the convkit archive, the one that also carries the
random-generator states for a bit-identical resume.
Loading looks at the file's content, not its name: Keras files go through
:mod:`convkit.io.keras_import`, convkit archives through
:func:`convkit.io.archive.read_archive`; a truncated, corrupt or foreign file raises
:class:`~convkit.errors.FileFormatError`.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import ConvkitError, FileFormatError, ShapeError
from ..io.validate_config import build_model, check_saved_meta

__all__ = ["save_model", "load_model", "save_weights", "load_weights", "model_from_config"]

_OPT_PREFIX = "optimizer/"


def _version() -> str:
    from .. import __version__
    return __version__


def _model_class(model) -> str:
    return "Sequential" if type(model).__name__ == "Sequential" else "Functional"


def _weight_arrays(model) -> list[tuple[str, np.ndarray]]:
    """``[("conv2d/kernel", array), ...]``; a nested model's weights are named under its own
    name (``base/conv2d/kernel``), so two layers of a nested model never collide."""
    return [(path, w.value) for path, w in model.weight_paths()]


def _optimizer_arrays(model) -> list[tuple[str, np.ndarray]]:
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not hasattr(optimizer, "get_state"):
        return []
    state = optimizer.get_state() or {}
    return [(_OPT_PREFIX + key, np.asarray(value)) for key, value in state.items()]


def _rng_states(model) -> dict:
    """Bit-generator states of the model's shuffling generator and every layer's generator
    (dropout masks), so a resumed run draws the same numbers as an uninterrupted one."""
    states = {}
    rng = getattr(model, "_rng", None)
    if rng is not None:
        states["__model__"] = rng.bit_generator.state
    for layer in model.layers:
        rng = getattr(layer, "rng", None)
        if isinstance(rng, np.random.Generator):
            states[layer.name] = rng.bit_generator.state
    return states


def _set_rng_states(model, states: dict) -> None:
    if not isinstance(states, dict):
        return
    targets = {"__model__": getattr(model, "_rng", None)}
    for layer in model.layers:
        targets[layer.name] = getattr(layer, "rng", None)
    for name, state in states.items():
        rng = targets.get(name)
        if isinstance(rng, np.random.Generator):
            try:
                rng.bit_generator.state = state
            except (TypeError, ValueError, KeyError):
                pass  # a different bit generator: keep the fresh one


def _meta(model, kind: str) -> dict:
    return {"kind": kind, "model_class": _model_class(model),
            "model_config": model.get_config(),
            "compile_config": model.get_compile_config(),
            "rng_states": _rng_states(model),
            "convkit_version": _version()}


def _make_parent(path) -> None:
    """Create the directory a model is saved into (``out/`` in the examples) if needed."""
    directory = os.path.dirname(os.fspath(path))
    if directory:
        os.makedirs(directory, exist_ok=True)


def _keras_format(path) -> str | None:
    """"keras", "h5", "weights.h5" or None (convkit's archive), from the file name."""
    name = os.fspath(path).lower()
    if name.endswith(".keras"):
        return "keras"
    if name.endswith(".weights.h5"):
        return "weights.h5"
    if name.endswith((".h5", ".hdf5")):
        return "h5"
    return None


def save_model(model, path) -> None:
    """Save the model to ``path``: a Keras 3 archive for ``.keras``, a legacy Keras HDF5
    file for ``.h5``, else the convkit archive (architecture, weights, compile settings,
    optimizer and random-generator state)."""
    if not model.built:
        raise ConvkitError(f"save: {type(model).__name__} {model.name!r} is not built yet; "
                           f"give it an input shape or run it on data first")
    _make_parent(path)
    kind = _keras_format(path)
    if kind == "keras":
        from ..io.keras_export import save_keras
        return save_keras(model, path)
    if kind is not None:
        from ..io.keras_export import save_keras_h5
        return save_keras_h5(model, path)
    from ..io.archive import write_archive
    write_archive(path, _meta(model, "model"), _weight_arrays(model) + _optimizer_arrays(model))


def save_weights(model, path) -> None:
    """Save the weights to ``path``: Keras 3's layout for ``.weights.h5``, the legacy Keras
    layout for ``.h5``, else the convkit archive (with the optimizer state if compiled)."""
    if not model.built:
        raise ConvkitError(f"save_weights: {type(model).__name__} {model.name!r} is not built "
                           f"yet; give it an input shape or run it on data first")
    kind = _keras_format(path)
    if kind == "keras":
        raise ConvkitError(f"save_weights: {os.fspath(path)!r} ends in .keras, Keras's name for "
                           f"a whole model; use model.save for it, or .weights.h5 for weights")
    _make_parent(path)
    if kind is not None:
        from ..io import keras_export
        save = keras_export.save_keras_weights if kind == "weights.h5" else \
            keras_export.save_legacy_weights
        return save(model, path)
    from ..io.archive import write_archive
    write_archive(path, _meta(model, "weights"),
                  _weight_arrays(model) + _optimizer_arrays(model))


def _read(path, where: str):
    from ..io.archive import read_archive
    meta, arrays = read_archive(path)
    if not isinstance(meta, dict) or meta.get("kind") not in ("model", "weights"):
        raise FileFormatError(f"{where}: {path!s} is a convkit archive but not a saved model "
                              f"or weights file (kind {meta.get('kind')!r:.80})")
    check_saved_meta(meta, arrays, path, where)
    return meta, arrays


def _keras_document(config) -> bool:
    """Whether ``config`` is Keras's (``config.json``, ``keras_model.get_config()``): the
    whole ``{"class_name", "config"}`` document, or layers carrying Keras's ``module`` or
    dtype-policy entries."""
    if not isinstance(config, dict):
        return False
    if isinstance(config.get("config"), dict) and "class_name" in config:
        return True
    entries = config.get("layers")
    return isinstance(entries, list) and any(
        isinstance(e, dict) and ("module" in e or isinstance(
            (e.get("config") or {}).get("dtype"), dict)) for e in entries)


def model_from_config(config: dict, model_class: str = "Sequential",
                      custom_objects: dict | None = None):
    """Build a model (fresh weights) from ``model.get_config()``; ``model_class`` is
    ``"Sequential"`` or ``"Functional"``. Keras's configs (the ``config.json`` of a
    ``.keras`` file, or a Keras model's ``get_config()``) are translated by
    :func:`convkit.io.keras_config.model_from_keras_config`."""
    from .graph import Model
    from .sequential import Sequential
    if _keras_document(config):
        from ..io.keras_config import model_from_keras_config
        if not ("class_name" in config and isinstance(config.get("config"), dict)):
            config = {"class_name": model_class, "config": config}
        return model_from_keras_config(config, custom_objects, "model_from_config")
    if model_class == "Sequential":
        return Sequential.from_config(config)
    if model_class in ("Functional", "Model"):
        return Model.from_config(config)
    raise ConvkitError(f"unknown model class {model_class!r}")


def _is_keras(path) -> bool:
    from ..io.keras_import import is_keras_file
    return is_keras_file(path)


def load_model(path, compile: bool = True, custom_objects: dict | None = None):
    """Load a model saved by ``model.save(path)``, or by Keras (``.keras``, legacy ``.h5``):
    same architecture, weights, and (with ``compile=True``) the same optimizer, loss,
    metrics (and, from a convkit archive, optimizer state). ``custom_objects={"Name":
    LayerClass}`` supplies layer classes a Keras file names that convkit does not have.

    >>> model.save("out/net.convkit")
    >>> same = ck.load_model("out/net.convkit")
    >>> from_keras = ck.load_model("mnist.keras")        # written by keras.Model.save
    """
    where = "load_model"
    if _is_keras(path):
        from ..io.keras_import import load_keras_model
        return load_keras_model(path, custom_objects=custom_objects, compile=compile)
    meta, arrays = _read(path, where)
    if meta["kind"] != "model":
        raise FileFormatError(f"{where}: {path!s} holds weights only (saved with "
                              f"save_weights); build the model and call model.load_weights")
    model = build_model(meta, arrays, path, where)
    _check_optimizer_state(model, arrays, path, where)
    _assign_weights(model, arrays, path, where)
    if compile and meta.get("compile_config"):
        model.compile_from_config(meta["compile_config"])
        _assign_optimizer_state(model, arrays)
    _set_rng_states(model, meta.get("rng_states", {}))
    return model


def load_weights(model, path, strict: bool = True) -> None:
    """Load weights (from ``save_weights`` or ``save``, convkit's or Keras's files) into
    ``model``; every weight name and shape must match. From a convkit archive the optimizer
    state is restored too when the model is compiled with the same optimizer. When a Keras
    file holds an architecture that differs from the model's, ``strict=True`` raises and
    ``strict=False`` warns (:func:`convkit.io.keras_import.load_keras_weights`)."""
    where = f"{type(model).__name__} {model.name!r}: load_weights"
    if _is_keras(path):
        from ..io.keras_import import load_keras_weights
        load_keras_weights(model, path, strict=strict)
        return
    meta, arrays = _read(path, where)
    if not model.built:
        raise ConvkitError(f"{where}: the model is not built; give it an input shape (or run "
                           f"it on data) before loading weights")
    _assign_weights(model, arrays, path, where)
    if model.compiled:
        saved = (meta.get("compile_config") or {}).get("optimizer", {}).get("class_name")
        if saved == type(model.optimizer).__name__:
            _assign_optimizer_state(model, arrays)
    _set_rng_states(model, meta.get("rng_states", {}))


def _assign_weights(model, arrays: dict, path, where: str) -> None:
    """Copy the stored weights into the model after checking every name and shape; nothing
    changes if anything differs, and the error lists every difference."""
    expected = _weight_arrays(model)
    stored = {k: v for k, v in arrays.items() if not k.startswith(_OPT_PREFIX)}
    names = {name for name, _ in expected}
    if names != set(stored) and [v.shape for v in stored.values()] == \
            [v.shape for _, v in expected]:
        # The same structure under other layer names (e.g. built twice in one process):
        # match by position, as Keras 3 matches weights by structure.
        stored = {name: value for (name, _), value in zip(expected, stored.values())}
    problems = []
    missing = [name for name, _ in expected if name not in stored]
    if missing:
        problems.append(f"missing from the file: {', '.join(missing)}")
    extra = [name for name in stored if name not in names]
    if extra:
        problems.append(f"in the file but not in the model: {', '.join(extra)}")
    for name, value in expected:
        if name in stored and stored[name].shape != value.shape:
            problems.append(f"{name} has shape {stored[name].shape} in the file but "
                            f"{value.shape} in the model")
    if problems:
        raise ShapeError(f"{where}: the weights in {path!s} do not match the model: "
                         + "; ".join(problems))
    for name, value in expected:
        value[...] = stored[name].astype(value.dtype, copy=False)


def _check_optimizer_state(model, arrays: dict, path, where: str) -> None:
    """Refuse optimizer slots whose shapes do not fit the trainable weights they belong to
    (keys ``optimizer/<slot>/<i>``), before anything in the model changes."""
    weights = [w.value for w in model.trainable_weights]
    for key, value in arrays.items():
        if not key.startswith(_OPT_PREFIX):
            continue
        _, _, index = key.rpartition("/")
        if not index.isdigit():
            continue
        i = int(index)
        if i >= len(weights) or np.shape(value) != weights[i].shape:
            want = weights[i].shape if i < len(weights) else "no such weight"
            raise FileFormatError(f"{where}: optimizer state {key!r} in {path!s} has shape "
                                  f"{np.shape(value)}, but trainable weight {i} is {want}")


def _assign_optimizer_state(model, arrays: dict) -> None:
    state = {k[len(_OPT_PREFIX):]: v for k, v in arrays.items() if k.startswith(_OPT_PREFIX)}
    if state and hasattr(model.optimizer, "set_state"):
        model.optimizer.set_state(state)
