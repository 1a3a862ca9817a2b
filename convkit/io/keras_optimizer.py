"""Optimizer state in Keras 3's layout: ``optimizer/vars/<i>`` of a ``.keras`` archive.

Keras numbers an optimizer's variables in creation order::

    0  iterations            1  learning_rate (absent when it is a schedule)
    then, per group of slots, for each trainable variable of the model (Keras's order):
    SGD      momentum                              (only when momentum != 0)
    Adam(W)  momentum, velocity  (interleaved: m0, v0, m1, v1, ...)
             velocity_hat                          (amsgrad)
    RMSprop  velocity ... ; momentum ... (momentum > 0) ; average_gradient ... (centered)

convkit's optimizers keep the same slots under the same names (``"momentum/3"`` is the
momentum of trainable weight 3 in convkit's order), so the translation is a reordering:
:func:`keras_optimizer_arrays` for writing, :func:`optimizer_state_from_keras` for reading.
A Keras optimizer that never ran has only its first two variables; then only the iteration
count and learning rate are restored.
"""
from __future__ import annotations

import numpy as np

__all__ = ["keras_optimizer_arrays", "optimizer_state_from_keras"]

# Keras's groups of slot variables per optimizer, in creation order; the names inside a
# group are interleaved per model variable.
_GROUPS = {"SGD": [("momentum",)],
           "Adam": [("momentum", "velocity"), ("velocity_hat",)],
           "AdamW": [("momentum", "velocity"), ("velocity_hat",)],
           "RMSprop": [("velocity",), ("momentum",), ("average_gradient",)]}


def _keras_trainable(model) -> list:
    """``[(convkit index, weight value), ...]`` of the trainable weights in Keras's order;
    the index is the weight's position in convkit's ``model.trainable_weights``."""
    from .onnx_export import keras_layer_order
    index = {id(w): i for i, w in enumerate(model.trainable_weights)}
    result = []
    for layer in keras_layer_order(model):
        for weight in layer.weights:
            if id(weight) in index:
                result.append((index[id(weight)], weight.value))
    return result


def _layout(model):
    """``[(slot name, convkit index, weight value), ...]`` in Keras's order, or None for an
    optimizer whose layout is not known here."""
    optimizer = model.optimizer
    groups = _GROUPS.get(type(optimizer).__name__)
    if groups is None:
        return None
    present = set(optimizer._slot_names())
    weights = _keras_trainable(model)
    layout = []
    for group in groups:
        if not set(group) <= present:
            continue
        for index, value in weights:
            layout.extend((name, index, value) for name in group)
    return layout


def keras_optimizer_arrays(model) -> list | None:
    """The compiled model's optimizer state as Keras's ordered list of arrays, or None
    (not compiled, or an optimizer Keras lays out differently). Slots convkit has not
    created yet (no step taken) are zeros, as Keras creates them."""
    optimizer = getattr(model, "optimizer", None)
    if not getattr(model, "compiled", False) or optimizer is None:
        return None
    layout = _layout(model)
    if layout is None:
        return None
    state = optimizer.get_state()
    arrays = [np.asarray(state["iterations"], dtype=np.int64)]
    if "learning_rate" in state:
        arrays.append(np.asarray(state["learning_rate"], dtype=np.float32))
    for name, index, value in layout:
        slot = state.get(f"{name}/{index}")
        arrays.append(np.zeros_like(value) if slot is None else np.asarray(slot))
    return arrays


def optimizer_state_from_keras(model, arrays: list) -> dict | None:
    """convkit's optimizer state (for ``optimizer.set_state``) from Keras's ordered arrays,
    or None when they do not fit this model's optimizer (count or shapes differ)."""
    optimizer = model.optimizer
    layout = _layout(model)
    if layout is None or not arrays:
        return None
    state = {"iterations": np.asarray(arrays[0]).astype(np.int64)}
    rest = list(arrays[1:])
    if not optimizer.has_schedule:
        if not rest:
            return None
        state["learning_rate"] = np.asarray(rest.pop(0), dtype=np.float64)
    if not rest:                                  # a Keras optimizer that never ran
        return state
    if len(rest) != len(layout):
        return None
    for (name, index, value), array in zip(layout, rest):
        if np.shape(array) != value.shape:
            return None
        state[f"{name}/{index}"] = np.asarray(array, dtype=value.dtype)
    return state
