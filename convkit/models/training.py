"""compile / fit / evaluate / predict, shared by :class:`~convkit.models.Sequential` and the
functional :class:`~convkit.models.Model`.

One training step on a batch ``(x, y)``::

    y_pred = model(x, training=True)                  # every layer caches what backward needs
    loss   = loss_fn(y, y_pred) + sum(regularizer penalties)
    dy     = dloss/dy_pred                            # (N, classes) like y_pred
    model backward(dy)                                # each layer fills layer.grads
    optimizer.apply_gradients([(grad, weight), ...])  # weights updated in place

When the last layer ends in softmax (or sigmoid) and the loss knows the combined derivative
(``loss.fusable_with("softmax")``, true for cross-entropy), backward starts from the gradient
with respect to the logits, ``probs - onehot(y)`` divided by the batch size, and the last
layer is told to skip its activation's backward (``backward(dy, skip_activation=True)``):
cheaper and numerically better than dividing by tiny probabilities.

A model class using this mixin provides ``layers``, ``_prepare_inputs(x, where)`` (a list of
arrays checked against the model's inputs), ``_forward(xs, training)`` (a list of outputs),
``_backward(dys, fuse, input_grads)`` (a list of input gradients, ``None`` each with
``input_grads=False``), ``_fusable_output_layer()`` and, for several outputs,
``_fusable_output_layers()``.

Several outputs: ``compile(loss=[...] or {name: ...}, loss_weights=...)`` gives each output
its loss; the training loss is ``sum(loss_weight_i * loss_i)`` and each output's gradient is
scaled by its weight. The logs then hold ``loss``, ``<output>_loss`` and
``<output>_<metric>`` (Keras's names, the output named after the layer that produces it).
``sample_weight`` (one weight per sample) multiplies every sample's loss before the batch
mean; ``class_weight={class: weight}`` is turned into such weights from the labels.

Data: arrays (converted to the model's dtype one batch at a time in ``evaluate`` and
``predict``, so a ``uint8`` memmap is never copied whole), a
:class:`~convkit.utils.PyDataset` or a Python generator (see :mod:`.batches`).

Training never needs the gradient with respect to the model's input, so the step calls
``_backward(..., input_grads=False)``: the first layer with trainable weights skips its
input gradient (``layer.input_gradient``) and the layers before it skip backward
altogether. ``model.backward(dy)`` still returns the input gradient.
"""
from __future__ import annotations

import contextlib
import math
import sys
import warnings

import numpy as np

from .. import callbacks as _callbacks
from .. import losses as _losses
from .. import metrics as _metrics
from .. import optimizers as _optimizers
from .._interrupts import interrupts_deferred
from ..errors import ConvkitError, ShapeError
from ..fast import chain as _chain
from ..fast import dispatch as _dispatch
from ..fast.runtime import backend as fast_backend
from ..fast.runtime import spin as fast_spin
from ..fast.runtime import threads as fast_threads
from ..layers.base import weights_version
from ..random import make_rng
from .batches import BatchSource, class_weight_to_sample_weight, is_batch_source

__all__ = ["Trainer"]



def _loss_name(loss) -> str:
    name = getattr(loss, "name", None) or type(loss).__name__
    return str(name)


def _to_config(obj, module):
    """How a loss or metric goes into the saved compile config: the string it was given as,
    else ``module.serialize(obj)`` (a ``{"class_name", "config"}`` dict), else its name."""
    if isinstance(obj, (str, dict)):
        return obj
    serialize = getattr(module, "serialize", None)
    if serialize is not None:
        try:
            return serialize(obj)
        except (ValueError, TypeError):
            pass
    return getattr(obj, "name", None) or type(obj).__name__


class _ChainState:
    """A model's inference chains for one list of layers: the layers' chain steps
    (:func:`_chain_step`), the prepared chain per input shape, and the layers whose outputs
    the chains do not write out (found on first use)."""

    def __init__(self, layers: tuple):
        self.layers = layers
        self.steps = tuple(_chain_step(layer) for layer in layers)
        # the layers whose steps read weights, by position: the others' entries stay None
        self.weighted = tuple((i, layer) for i, (layer, step)
                              in enumerate(zip(layers, self.steps))
                              if step[0] != "layer" and layer._step_weights() is not None)
        self.runs: dict = {}
        self.unwritten = None
        self._weights = self._weights_at = None

    def weights(self) -> list:
        """The arrays each step reads now (``None`` for the steps without weights); the
        same list again while no weight was given another array
        (:func:`convkit.layers.base.weights_version`: updates in place keep the arrays)."""
        version = weights_version()
        if self._weights_at != version:
            weights = [None] * len(self.layers)
            for i, layer in self.weighted:
                weights[i] = layer._step_weights()
            self._weights, self._weights_at = weights, version
        return self._weights


def _chain_step(layer):
    """The layer's step of an inference chain (:mod:`convkit.fast.chain`): its own prepared
    form, or the layer itself called as the model would call it (``("layer", layer)``)."""
    own = layer._inference_step() if hasattr(layer, "_inference_step") else None
    return own if own is not None else ("layer", layer)


class Trainer:
    """The training half of a model (see the module docstring)."""

    # set by compile()
    optimizer = None
    loss = None
    compiled = False
    stop_training = False
    history = None
    #: why the last ``fit`` stopped early (``None`` if it ran every epoch)
    stop_reason = None

    def _init_training(self):
        self.optimizer = None
        self.loss = None
        self.compiled_metrics = []
        self.compiled = False
        self.stop_training = False
        self.history = None
        self.stop_reason = None
        self._compile_args = None
        self._multi_output = False
        self._output_losses = []       # one Loss per output
        self._loss_weights = []        # one float per output
        self._output_metrics = []      # one list of metrics per output
        self._output_loss_trackers = []  # several outputs: the running mean of each loss
        self._weighted_metric_ids = set()
        # Shuffling draws from the model's own generator, so ``set_seed`` before building the
        # model fixes it, and its state is saved with the model (resuming stays identical).
        self._rng = make_rng()

    # ------------------------------------------------------------------------- compile
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None,
                weighted_metrics=None, run_eagerly=False, steps_per_execution=1,
                jit_compile="auto", auto_scale_loss=True):
        """Choose the optimizer, the loss and the metrics (names or objects, as in Keras).

        >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
        ...               metrics=["accuracy"])

        A model with several outputs takes a list (in output order) or a dict (by output
        layer name) of losses, ``loss_weights`` likewise, and metrics as a list per output,
        a dict, or one flat list used for every output. ``weighted_metrics`` are computed
        with the ``sample_weight``/``class_weight`` of ``fit``; ``metrics`` are not.

        ``run_eagerly``, ``steps_per_execution``, ``jit_compile`` and ``auto_scale_loss`` are
        accepted for Keras compatibility and change nothing: convkit always runs eagerly on
        NumPy, one optimizer step per batch, with no compiler and no loss scaling.
        """
        where = f"{self._kind()} {self.name!r}: compile"
        if loss is None:
            raise ConvkitError(f"{where}: a loss is required, e.g. "
                               f"loss='sparse_categorical_crossentropy'")
        names = self._output_names()
        self._multi_output = len(names) > 1
        self.optimizer = _optimizers.get(optimizer)
        per_output_loss = _per_output(loss, names, "loss", where, broadcast=True)
        self._output_losses = [_losses.get(entry) for entry in per_output_loss]
        self.loss = self._output_losses if self._multi_output else self._output_losses[0]
        weights = [1.0] * len(names) if loss_weights is None else \
            _per_output(loss_weights, names, "loss_weights", where, broadcast=False)
        self._loss_weights = [float(w) for w in weights]
        plain = _metric_lists(metrics, names, where)
        weighted = _metric_lists(weighted_metrics, names, where)
        self._output_metrics, self._weighted_metric_ids = [], set()
        for index, out_name in enumerate(names):
            out_loss = self._output_losses[index]
            made = [_metrics.get(m, loss=out_loss) for m in plain[index]]
            made_weighted = [_metrics.get(m, loss=out_loss) for m in weighted[index]]
            if self._multi_output:
                for m in made + made_weighted:
                    m.name = f"{out_name}_{m.name}"
            self._weighted_metric_ids.update(id(m) for m in made_weighted)
            self._output_metrics.append(made + made_weighted)
        self.compiled_metrics = [m for ms in self._output_metrics for m in ms]
        self._output_loss_trackers = [_metrics.Mean(name=f"{n}_loss") for n in names] \
            if self._multi_output else []
        metric_names = [m.name for m in self.compiled_metrics]
        if len(set(metric_names)) != len(metric_names):
            raise ConvkitError(f"{where}: two metrics have the same name ({metric_names})")
        if self._multi_output:
            self._compile_args = {
                "loss": [_to_config(entry, _losses) for entry in per_output_loss],
                "loss_weights": list(self._loss_weights),
                "metrics": [[_to_config(m, _metrics) for m in entry] for entry in plain]}
        else:
            self._compile_args = {
                "loss": _to_config(self.loss if not isinstance(loss, str) else loss, _losses),
                "metrics": [_to_config(m, _metrics) for m in plain[0]]}
            if loss_weights is not None:
                self._compile_args["loss_weights"] = list(self._loss_weights)
        if weighted_metrics:
            self._compile_args["weighted_metrics"] = [[_to_config(m, _metrics) for m in entry]
                                                      for entry in weighted]
        self.compiled = True
        return None

    def _output_names(self) -> list:
        """Keras's output names: the layers that produce the outputs."""
        outputs = getattr(self, "_outputs", None)
        if outputs is None:                   # Sequential: its last layer
            layers = self.layers
            return [layers[-1].name if layers else "output"]
        return [t.layer.name for t in outputs]

    @property
    def output_names(self) -> list:
        return self._output_names()

    @property
    def metrics_names(self) -> list:
        """``["loss", ...]``: the names :meth:`evaluate` returns values for, in order."""
        return ["loss"] + [t.name for t in self._output_loss_trackers] + \
            [m.name for m in self.compiled_metrics]

    def get_compile_config(self) -> dict | None:
        """``{"optimizer": {"class_name", "config"}, "loss", "metrics"}``, or None if the
        model was never compiled."""
        if not self.compiled:
            return None
        config = {"optimizer": {"class_name": type(self.optimizer).__name__,
                                "config": self.optimizer.get_config()},
                  "loss": self._compile_args["loss"],
                  "metrics": list(self._compile_args["metrics"])}
        if "loss_weights" in self._compile_args:
            config["loss_weights"] = self._compile_args["loss_weights"]
        return config

    def compile_from_config(self, config: dict) -> None:
        """Re-compile from :meth:`get_compile_config` (used when loading a saved model).
        A custom loss or metric that was saved by name only and is unknown here is reported:
        the loss as an error, a metric with a warning (it is left out)."""

        optimizer = _optimizers.deserialize(config["optimizer"])

        def known(entries, loss):
            kept = []
            for m in entries or []:
                try:
                    _metrics.get(m, loss=loss)
                    kept.append(m)
                except (ValueError, TypeError):
                    warnings.warn(f"{self._kind()} {self.name!r}: the saved metric {m!r} is "
                                  f"not a built-in metric and was left out; compile again to "
                                  f"add it", stacklevel=4)
            return kept
        saved = config.get("metrics") or []
        if isinstance(config["loss"], list):          # several outputs: a list per output
            metrics = [known(entry, loss) for entry, loss in zip(saved, config["loss"])]
        else:
            metrics = known(saved, config["loss"]) or None
        self.compile(optimizer=optimizer, loss=config["loss"], metrics=metrics,
                     loss_weights=config.get("loss_weights"))

    def _require_compiled(self, where: str) -> None:
        if not self.compiled:
            raise ConvkitError(f"{where}: the model must be compiled first; call "
                               f"model.compile(optimizer=..., loss=..., metrics=[...])")

    # ------------------------------------------------------------------------- data checks
    def _prepare_data(self, x, y, where: str):
        """x as a list of checked input arrays, y as an array (a list of arrays for several
        outputs); same number of samples."""
        xs = self._prepare_inputs(x, where)
        n = len(xs[0])
        for i, arr in enumerate(xs[1:], 1):
            if len(arr) != n:
                raise ShapeError(f"{where}: all inputs must have the same number of samples; "
                                 f"input 0 has {n}, input {i} has {len(arr)}")
        return xs, self._prepare_targets(y, n, xs[0].dtype, where, xs[0].shape)

    def _prepare_targets(self, y, n: int, dtype, where: str, x_shape=None):
        """The targets checked against the losses and the outputs: an array, or a list of
        arrays (one per output, from a list or a dict keyed by output name)."""
        if not self._multi_output:
            return self._prepare_target(y, n, dtype, where, x_shape)
        names = self._output_names()
        if isinstance(y, dict):
            missing = [name for name in names if name not in y]
            if missing:
                raise ConvkitError(f"{where}: y has no targets for output(s) {missing}; the "
                                   f"outputs are {names}")
            y = [y[name] for name in names]
        if not isinstance(y, (list, tuple)) or len(y) != len(names):
            got = f"a list of {len(y)}" if isinstance(y, (list, tuple)) else \
                type(y).__name__
            raise ConvkitError(f"{where}: the model has {len(names)} outputs {names}; pass y "
                               f"as a list of {len(names)} arrays or a dict by output name, "
                               f"got {got}")
        shapes = self._output_shapes()
        return [self._prepare_target(target, n, dtype, f"{where} (output {name!r})", x_shape,
                                     loss=loss, out_shape=shape)
                for target, name, loss, shape in zip(y, names, self._output_losses, shapes)]

    def _prepare_target(self, y, n: int, dtype, where: str, x_shape=None, loss=None,
                        out_shape=None):
        if y is None:
            raise ConvkitError(f"{where}: y (the targets) is required")
        try:
            y = np.asarray(y)
        except Exception as exc:
            raise ShapeError(f"{where}: y is not an array ({exc})") from None
        if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
            raise ShapeError(f"{where}: y must be numeric, got dtype {y.dtype}")
        if y.ndim == 0 or y.shape[0] == 0:
            raise ShapeError(f"{where}: y is empty (shape {y.shape})")
        if y.shape[0] != n:
            raise ShapeError(f"{where}: x and y must have the same number of samples, got "
                             f"{n} inputs (x shape {x_shape}) and {y.shape[0]} targets "
                             f"(y shape {y.shape})")
        self._check_targets(y, where, loss=loss, out_shape=out_shape)
        if np.issubdtype(y.dtype, np.floating) and y.dtype != dtype:
            y = y.astype(dtype)   # one-hot or regression targets in the model's dtype
        return y

    def _sample_weights(self, y, sample_weight, class_weight, n: int, where: str):
        """One weight per sample from ``sample_weight`` and ``class_weight`` (their product
        when both are given), or ``None``."""
        weights = None
        if sample_weight is not None:
            weights = np.asarray(sample_weight, dtype=np.float64)
            if weights.ndim == 2 and weights.shape[1] == 1:
                weights = weights[:, 0]                      # (N, 1) -> (N,)
            if weights.shape != (n,) or not np.all(np.isfinite(weights)):
                raise ShapeError(f"{where}: sample_weight must be {n} finite numbers (one per "
                                 f"sample), got shape {weights.shape}")
        if class_weight is not None:
            if self._multi_output:
                raise ConvkitError(f"{where}: class_weight is for models with one output; "
                                   f"pass sample_weight instead")
            from_classes = class_weight_to_sample_weight(y, class_weight, where)
            weights = from_classes if weights is None else weights * from_classes
        return weights

    def _check_targets(self, y, where: str, loss=None, out_shape=None) -> None:
        """Refuse labels whose shape does not fit the loss and the model's output (for the
        built-in losses; a custom loss checks its own inputs)."""
        loss = self.loss if loss is None else loss
        out_shape = self._single_output_shape(where) if out_shape is None else out_shape
        name = _loss_name(loss)
        n = y.shape[0]
        if isinstance(loss, _losses.SparseCategoricalCrossentropy):
            classes = out_shape[-1]
            if not (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)):
                hint = (" (they look one-hot encoded: use loss='categorical_crossentropy' or "
                        "y.argmax(axis=1))") if y.ndim == 2 and y.shape[1] == classes else ""
                raise ShapeError(f"{where}: {name} expects integer class labels of shape "
                                 f"({n},), got y of shape {y.shape}{hint}")
            if not np.all(np.isfinite(y)) or np.any(np.mod(y, 1) != 0):
                raise ShapeError(f"{where}: {name} expects integer class labels, got "
                                 f"non-integer values in y (dtype {y.dtype})")
            if classes is not None and (y.min() < 0 or y.max() >= classes):
                raise ShapeError(f"{where}: class labels must be in [0, {classes}) for a model "
                                 f"with {classes} outputs, got labels from {y.min()} to "
                                 f"{y.max()}")
            return
        shaped_like_output = (_losses.CategoricalCrossentropy, _losses.BinaryCrossentropy,
                              _losses.MeanSquaredError, _losses.MeanAbsoluteError)
        if not isinstance(loss, shaped_like_output):
            return
        expected = (n,) + tuple(out_shape[1:])
        if y.shape == expected:
            return
        # (N,) targets for an (N, 1) output are fine, as in Keras.
        if len(expected) == 2 and expected[1] == 1 and y.shape == (n,):
            return
        hint = ""
        if isinstance(loss, _losses.CategoricalCrossentropy) and y.ndim == 1:
            hint = (" (integer labels: use loss='sparse_categorical_crossentropy' or one-hot "
                    "encode them)")
        raise ShapeError(f"{where}: {name} expects targets shaped like the model's output "
                         f"{(None,) + tuple(out_shape[1:])}, got y of shape {y.shape}{hint}")

    def _single_output_shape(self, where: str):
        shapes = self._output_shapes()
        if len(shapes) != 1:
            raise ConvkitError(f"{where}: the model has {len(shapes)} outputs but was compiled "
                               f"for one; compile it again (a loss per output)")
        return shapes[0]

    # ------------------------------------------------------------------------- one step
    def _regularization(self, with_grads: bool):
        """Sum of the weight penalties (``layer.regularization_losses()``), and
        ``{id(weight array): penalty gradient}``."""
        total = 0.0
        grads = {}
        for layer in self.layers:
            terms = layer.regularization_losses() if hasattr(layer, "regularization_losses") \
                else []
            weights = layer.weights
            for index, reg in terms:
                value = weights[index].value
                total += float(reg(value))
                if with_grads:
                    g = np.asarray(reg.gradient(value), dtype=value.dtype)
                    key = id(value)
                    grads[key] = g if key not in grads else grads[key] + g
        return total, grads

    def _loss_and_backward(self, xs, y, training: bool = True, sample_weight=None):
        """Forward in training mode, the loss, and the backward pass filling layer.grads.
        Returns (loss value, prediction, finite?)."""
        if self._multi_output:
            return self._multi_loss_and_backward(xs, y, training, sample_weight)
        y_pred = self._forward(xs, training=training)[0]
        penalty, reg_grads = self._regularization(with_grads=True)
        scale = self._loss_weights[0] if self._loss_weights else 1.0   # compile's loss_weights
        loss_value = _scaled(float(self.loss(y, y_pred, sample_weight)), scale) + penalty
        if not math.isfinite(loss_value):
            return loss_value, y_pred, reg_grads, False
        fused_layer = self._fusable_output_layer()
        activation = getattr(getattr(fused_layer, "activation", None), "name", None)
        # the inputs need no gradient: layers skip what only they would need
        if fused_layer is not None and activation and self.loss.fusable_with(activation):
            dy = self.loss.gradient_wrt_logits(y, y_pred, sample_weight)
            self._backward([_scaled(dy, scale)], fuse=True, input_grads=False)
        else:
            dy = self.loss.gradient(y, y_pred, sample_weight)
            self._backward([_scaled(dy, scale)], fuse=False, input_grads=False)
        return loss_value, y_pred, reg_grads, True

    def _multi_loss_and_backward(self, xs, ys, training, sample_weight):
        """Several outputs: ``sum(loss_weight_i * loss_i)``; output i's gradient is its
        loss's gradient times its weight. The outputs' losses go to their trackers."""
        y_preds = self._forward(xs, training=training)
        penalty, reg_grads = self._regularization(with_grads=True)
        values = self._output_loss_values(ys, y_preds, sample_weight)
        loss_value = sum(w * v for w, v in zip(self._loss_weights, values)) + penalty
        if not math.isfinite(loss_value):
            return loss_value, y_preds, reg_grads, False
        dys, fused = [], []
        for loss, weight, y, p, layer in zip(self._output_losses, self._loss_weights, ys,
                                             y_preds, self._fusable_output_layers()):
            # softmax/sigmoid + cross-entropy: start from the logits, as for one output
            activation = getattr(getattr(layer, "activation", None), "name", None)
            if layer is not None and activation and loss.fusable_with(activation):
                dy = loss.gradient_wrt_logits(y, p, sample_weight)
                fused.append(layer)
            else:
                dy = loss.gradient(y, p, sample_weight)
            dys.append(dy * p.dtype.type(weight))
        self._backward(dys, fuse=fused, input_grads=False)
        return loss_value, y_preds, reg_grads, True

    def _output_loss_values(self, ys, y_preds, sample_weight) -> list:
        values = [float(loss(y, p, sample_weight))
                  for loss, y, p in zip(self._output_losses, ys, y_preds)]
        count = len(y_preds[0])
        for tracker, value in zip(self._output_loss_trackers, values):
            tracker.update_state(value, sample_weight=count)
        return values

    def _gradients_and_weights(self, reg_grads):
        """``[(grad, weight array), ...]`` for every trainable weight, in model order."""
        pairs = []
        for layer in self.layers:
            if not layer.trainable:
                continue
            for w, g in zip(layer.weights, layer.grads):
                if not w.trainable or g is None:     # None: a frozen layer inside a model
                    continue
                extra = reg_grads.get(id(w.value))
                if extra is not None:
                    g = extra if g is None else g + extra
                pairs.append((g, w.value))
        return pairs

    def _train_step(self, xs, y, sample_weight=None):
        with _ops_context(), interrupts_deferred():       # Ctrl-C lands between steps
            loss_value, y_pred, reg_grads, finite = self._loss_and_backward(
                xs, y, sample_weight=sample_weight)
            if finite:
                self.optimizer.apply_gradients(self._gradients_and_weights(reg_grads))
        return loss_value, y_pred, finite

    def _test_loss(self, xs, y, sample_weight=None):
        y_preds = self._forward(xs, training=False)
        penalty, _ = self._regularization(with_grads=False)
        if self._multi_output:
            values = self._output_loss_values(y, y_preds, sample_weight)
            return sum(w * v for w, v in zip(self._loss_weights, values)) + penalty, y_preds
        scale = self._loss_weights[0] if self._loss_weights else 1.0
        return _scaled(float(self.loss(y, y_preds[0], sample_weight)), scale) + penalty, \
            y_preds[0]

    def _update_metrics(self, y, y_pred, sample_weight=None) -> None:
        pairs = zip(self._output_metrics, y, y_pred) if self._multi_output else \
            [(self.compiled_metrics, y, y_pred)]
        for metrics, target, pred in pairs:
            for m in metrics:
                if sample_weight is not None and id(m) in self._weighted_metric_ids:
                    m.update_state(target, pred, sample_weight=sample_weight)
                else:
                    m.update_state(target, pred)

    def _reset_metrics(self) -> None:
        for m in self.compiled_metrics + self._output_loss_trackers:
            m.reset_state()

    # ------------------------------------------------------------------------- fit
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1):
        """Train for ``epochs - initial_epoch`` epochs of mini-batch gradient descent.

        ``x``: ``(N, H, W, C)`` images (a list of arrays for a model with several inputs);
        ``y``: targets for the loss, e.g. ``(N,)`` integer labels for
        ``sparse_categorical_crossentropy`` (a list or a dict by output name for several
        outputs). ``x`` may instead be a :class:`~convkit.utils.PyDataset` or a generator of
        ``(x, y)`` / ``(x, y, sample_weight)`` batches (then give ``steps_per_epoch`` for a
        generator that loops forever). ``validation_split`` keeps the LAST fraction of the
        samples (before shuffling) for validation, as Keras does; ``validation_data`` is
        ``(x_val, y_val)``, ``(x_val, y_val, sample_weight_val)`` or a dataset.
        ``sample_weight`` ``(N,)`` and ``class_weight`` ``{class: weight}`` weigh each
        sample's loss. Returns a :class:`~convkit.callbacks.History` whose ``history`` maps
        ``"loss"``, each metric and their ``"val_"`` versions to one value per epoch.

        A NaN or infinite loss stops training at once (the step is not applied) and prints
        the epoch and batch; ``model.stop_reason`` keeps the message.

        >>> history = model.fit(x_train, y_train, batch_size=128, epochs=3)
        >>> history.history["loss"]          # three values, decreasing
        """
        where = f"{self._kind()} {self.name!r}: fit"
        self._require_compiled(where)
        batch_size = 32 if batch_size is None else \
            _check_int(batch_size, "batch_size", where, minimum=1)
        epochs = _check_int(epochs, "epochs", where, minimum=0)
        initial_epoch = _check_int(initial_epoch, "initial_epoch", where, minimum=0)
        validation_freq = _check_int(validation_freq, "validation_freq", where, minimum=1)
        if steps_per_epoch is not None:
            steps_per_epoch = _check_int(steps_per_epoch, "steps_per_epoch", where, minimum=1)
        val_batch_size = batch_size if validation_batch_size is None else \
            _check_int(validation_batch_size, "validation_batch_size", where, minimum=1)
        source = None
        if is_batch_source(x):
            if y is not None or sample_weight is not None or validation_split:
                raise ConvkitError(f"{where}: with a dataset or generator as x, the targets "
                                   f"and sample weights come from its batches; y, "
                                   f"sample_weight and validation_split cannot be given")
            source = BatchSource(x, steps_per_epoch, where)
            steps = source.steps
        else:
            xs, y = self._prepare_data(x, y, where)
            weights = self._sample_weights(y, sample_weight, class_weight, len(xs[0]), where)
        val = None
        if validation_data is not None:
            if is_batch_source(validation_data):
                val = BatchSource(validation_data, validation_steps, where + " (validation_data)")
            elif isinstance(validation_data, (tuple, list)) and len(validation_data) in (2, 3):
                val_where = where + " (validation_data)"
                val = self._prepare_data(validation_data[0], validation_data[1], val_where)
                if len(validation_data) == 3 and validation_data[2] is not None:
                    val = val + (self._sample_weights(val[1], validation_data[2], None,
                                                      len(val[0][0]), val_where),)
            else:
                raise ConvkitError(f"{where}: validation_data must be a pair (x_val, y_val), a "
                                   f"triple (x_val, y_val, sample_weight_val) or a dataset")
        elif validation_split and source is None:
            split_at = validation_split_index(len(xs[0]), validation_split, where)
            val = ([a[split_at:] for a in xs], _take(y, slice(split_at, None)))
            if weights is not None:
                val = val + (weights[split_at:],)
                weights = weights[:split_at]
            xs, y = [a[:split_at] for a in xs], _take(y, slice(None, split_at))

        if source is None:
            n = len(xs[0])
            batches_per_pass = -(-n // batch_size)
            steps = steps_per_epoch or batches_per_pass
        cbs = self._callback_list(callbacks, verbose=verbose, epochs=epochs, steps=steps,
                                  add_history=True)

        def epoch_batches():
            if source is None:
                return _array_batches(xs, y, weights,
                                      self._batch_indices(n, batch_size, shuffle, steps))
            return self._prepared_batches(source, class_weight, where)

        def train_step(batch):
            xb, yb, swb = batch
            loss_value, y_pred, finite = self._train_step(xb, yb, swb)
            if finite:
                self._update_metrics(yb, y_pred, swb)
            return loss_value, len(xb[0]), finite

        def validate(epoch):
            if val is None or (epoch + 1) % validation_freq != 0:
                return None
            if isinstance(val, BatchSource):
                val_logs = self._evaluate_batches(self._prepared_batches(val, None, where))
                val.end_epoch()
                return val_logs
            if len(val) == 3:
                return self._evaluate_arrays(val[0], val[1], val_batch_size,
                                             sample_weight=val[2])
            return self._evaluate_arrays(val[0], val[1], val_batch_size)

        return self._run_epochs(cbs, where, initial_epoch, epochs, epoch_batches, train_step,
                                validate, after_batches=None if source is None
                                else source.end_epoch)

    def _run_epochs(self, cbs, where: str, initial_epoch: int, epochs: int, epoch_batches,
                    train_step, validate, after_batches=None):
        """The epoch loop of ``fit`` (and of :func:`convkit.distributed.fit`), around the
        parts that differ: ``epoch_batches()`` gives one epoch's batches (called after
        ``on_epoch_begin``); ``train_step(batch)`` trains on one and returns ``(loss,
        samples, finite)``, having applied the update and the metrics only when the loss is
        finite; ``after_batches()`` runs after each epoch's batches, even a stopped one;
        ``validate(epoch)`` returns the validation logs or None (not called after a
        non-finite loss). Running means of the loss go to the callbacks; a non-finite loss
        stops training with ``stop_reason`` set. Returns the callbacks' History."""
        self.stop_training = False
        self.stop_reason = None
        cbs.on_train_begin()
        epoch_logs = {}
        for epoch in range(initial_epoch, epochs):
            self._reset_metrics()
            cbs.on_epoch_begin(epoch)
            loss_sum, seen = 0.0, 0
            finite = True
            for step, batch in enumerate(epoch_batches()):
                cbs.on_train_batch_begin(step)
                loss_value, count, finite = train_step(batch)
                loss_sum += loss_value * count
                seen += count
                if not finite:
                    self.stop_reason = (f"{where}: the loss became {loss_value} at epoch "
                                        f"{epoch + 1}, batch {step + 1}; training stopped "
                                        f"(this step's update was not applied)")
                    print(self.stop_reason, file=sys.stderr)
                    self.stop_training = True
                    break
                logs = {"loss": loss_sum / seen}
                logs.update(self._metric_results())
                cbs.on_train_batch_end(step, logs)
                if self.stop_training:
                    break
            if after_batches is not None:
                after_batches()
            epoch_logs = {"loss": loss_sum / max(seen, 1)}
            epoch_logs.update(self._metric_results())
            val_logs = validate(epoch) if finite else None
            if val_logs is not None:
                epoch_logs.update({"val_" + k: v for k, v in val_logs.items()})
            cbs.on_epoch_end(epoch, epoch_logs)
            if self.stop_training:
                if self.stop_reason is None:
                    self.stop_reason = f"{where}: stopped by a callback after epoch {epoch + 1}"
                break
        cbs.on_train_end(epoch_logs)
        self.history = cbs.history
        return cbs.history

    def _prepared_batches(self, source, class_weight, where: str):
        """The batches of one epoch of ``source``, each checked and converted:
        ``(xs, y, sample_weight)``."""
        for xb, yb, swb in source.epoch():
            xs, y = self._prepare_data(xb, yb, where)
            yield xs, y, self._sample_weights(y, swb, class_weight, len(xs[0]), where)

    def _metric_results(self) -> dict:
        if not self._multi_output:
            return {m.name: float(m.result()) for m in self.compiled_metrics}
        # Keras lists the several outputs' values in name order
        results = {m.name: float(m.result())
                   for m in self._output_loss_trackers + self.compiled_metrics}
        return dict(sorted(results.items()))

    def _batch_indices(self, n: int, batch_size: int, shuffle: bool, steps: int):
        """``steps`` index arrays of ``batch_size`` samples (the last one may be smaller);
        a new pass (reshuffled) starts whenever the data runs out."""
        out = []
        order = None
        position = n
        for _ in range(steps):
            if position >= n:
                order = self._rng.permutation(n) if shuffle else np.arange(n)
                position = 0
            out.append(order[position:position + batch_size])
            position += batch_size
        return out

    def _callback_list(self, callbacks, verbose, epochs, steps, add_history):
        user = list(callbacks or [])
        if add_history and not any(isinstance(c, _callbacks.DivergenceMonitor) for c in user):
            user.append(_callbacks.DivergenceMonitor())        # warns once on divergence
        return _callbacks.CallbackList(user, model=self, add_history=add_history,
                                       add_progbar=bool(verbose), verbose=verbose,
                                       epochs=epochs, steps=steps)

    # ------------------------------------------------------------------------- evaluate
    def _evaluate_arrays(self, xs, y, batch_size, cbs=None, sample_weight=None) -> dict:
        """Loss and metrics over arrays, ``batch_size`` samples at a time (each batch
        converted to the model's dtype on its own: ``xs`` may be memmaps of any dtype)."""
        n = len(xs[0])
        where = f"{self._kind()} {self.name!r}: evaluate"
        batches = ((self._convert_batch(xs, start, start + batch_size, where),
                    _take(y, slice(start, start + batch_size)),
                    None if sample_weight is None else sample_weight[start:start + batch_size])
                   for start in range(0, n, batch_size))
        return self._evaluate_batches(batches, cbs)

    def _evaluate_batches(self, batches, cbs=None) -> dict:
        self._reset_metrics()
        loss_sum, seen = 0.0, 0
        for step, (xb, yb, swb) in enumerate(batches):
            if cbs is not None:
                cbs.on_test_batch_begin(step)
            loss_value, y_pred = self._test_loss(xb, yb, swb)
            count = len(xb[0])
            loss_sum += loss_value * count
            seen += count
            self._update_metrics(yb, y_pred, swb)
            if cbs is not None:
                logs = {"loss": loss_sum / seen}
                logs.update(self._metric_results())
                cbs.on_test_batch_end(step, logs)
        logs = {"loss": loss_sum / max(seen, 1)}
        logs.update(self._metric_results())
        return logs

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False):
        """Loss (plus regularization penalties) and metrics on ``(x, y)`` in inference mode.

        Returns the loss alone when there are no metrics, else ``[loss, *metrics]`` in
        compile order (several outputs: ``[loss, *output losses, *metrics]``, see
        ``model.metrics_names``), or a dict ``{"loss": ..., "accuracy": ...}`` with
        ``return_dict=True``. ``x`` may be a dataset or a generator of batches (with
        ``steps`` for one that never ends). Arrays are converted one batch at a time, so
        a large ``uint8`` memmap is never copied whole.
        """
        where = f"{self._kind()} {self.name!r}: evaluate"
        self._require_compiled(where)
        batch_size = 32 if batch_size is None else \
            _check_int(batch_size, "batch_size", where, minimum=1)
        if is_batch_source(x):
            source = BatchSource(x, steps, where)
            batches = self._prepared_batches(source, None, where)
            steps = source.steps
        else:
            raw = self._raw_inputs(x, where)
            n = len(raw[0])
            y = self._prepare_targets(y, n, np.dtype(self.dtype), where, raw[0].shape)
            weights = self._sample_weights(y, sample_weight, None, n, where)
            steps = -(-n // batch_size)
        cbs = self._callback_list(callbacks, verbose=verbose, epochs=1, steps=steps,
                                  add_history=False)
        cbs.on_test_begin()
        if is_batch_source(x):
            logs = self._evaluate_batches(batches, cbs)
        else:
            weighted = {} if weights is None else {"sample_weight": weights}
            logs = self._evaluate_arrays(raw, y, batch_size, cbs, **weighted)
        cbs.on_test_end(logs)
        if return_dict:
            return dict(logs)
        names = self.metrics_names
        if len(names) == 1:
            return logs["loss"]
        return [logs[name] for name in names]

    # ------------------------------------------------------------------------- predict
    def predict(self, x, batch_size=None, verbose=0, steps=None, callbacks=None):
        """Outputs for ``x`` in inference mode (dropout off, batch norm on its moving
        statistics), ``batch_size`` samples at a time, concatenated: e.g. ``(N, 10)``
        class probabilities. A list of arrays for a model with several outputs.
        ``verbose=1`` draws a progress bar over the batches. A batch whose activations
        would be large runs in a few equal parts (see ``INFERENCE_BLOCK_BYTES``).

        Arrays are converted to the model's dtype one batch at a time, so the memory used
        does not grow with the size of a ``uint8`` (or any) memmap beyond the outputs.
        ``x`` may also be a dataset or a generator of batches (``x`` or ``(x, y)``)."""
        if type(x) is np.ndarray and steps is None and callbacks is None and not verbose \
                and (batch_size is None or type(batch_size) is int and batch_size > 0):
            y = self._lane_output(x)            # (a lane's x holds one sample)
            if y is not None:
                return y
        where = f"{self._kind()} {self.name!r}: predict"
        batch_size = 32 if batch_size is None else \
            _check_int(batch_size, "batch_size", where, minimum=1)
        if is_batch_source(x):
            return self._predict_batches(BatchSource(x, steps, where), verbose, callbacks,
                                         where)
        if callbacks is None and not verbose and type(x) is np.ndarray \
                and self.n_inputs == 1 and 0 < len(x) <= batch_size:
            one = self._predict_one_batch(x, batch_size, where)
            if one is not None:
                return one
        raw = self._raw_inputs(x, where)
        n = len(raw[0])
        steps = -(-n // batch_size)
        cbs = self._callback_list(callbacks, verbose=verbose, epochs=1, steps=steps,
                                  add_history=False)
        cbs.on_predict_begin()
        pieces = []
        rows = self._inference_rows(batch_size)
        for step in range(steps):
            cbs.on_predict_batch_begin(step)
            start = step * batch_size
            stop = min(start + batch_size, n)
            with _inference_context():
                # a large batch runs in a few equal parts whose activations stay in cache
                parts = -(-(stop - start) // rows)
                bounds = [start + (stop - start) * i // parts for i in range(parts + 1)]
                outs = [self._inference_forward(self._convert_batch(raw, lo, hi, where))
                        for lo, hi in zip(bounds[:-1], bounds[1:])]
            pieces.append(outs[0] if parts == 1 else
                          [np.concatenate([o[i] for o in outs], axis=0)
                           for i in range(len(outs[0]))])
            cbs.on_predict_batch_end(step, {"outputs": pieces[-1]})
        cbs.on_predict_end()
        if len(pieces) == 1:      # one batch: its outputs, unless one is the input itself
            outputs = _apart_from(pieces[0], raw)
        else:
            outputs = [np.concatenate([p[i] for p in pieces], axis=0)
                       for i in range(len(pieces[0]))]
        return outputs[0] if len(outputs) == 1 else outputs

    def _lane_output(self, x: np.ndarray):
        """The output for one sample ``x`` (an array) of the shape and dtype of the last
        checked, chained single sample, straight through that chain (a server or an app
        asking for one image at a time: the checks and the lookups cost a tenth of a small
        convnet's arithmetic); ``None`` when there is no such lane or it no longer applies
        (the layers changed, the fast paths were switched off, ``x`` is not C-contiguous, or
        another thread holds the chain): the full path then runs."""
        lane = self.__dict__.get("_lane")
        if lane is None or x.shape != lane[0] or x.dtype != lane[1]:
            return None
        _, _, state, run = lane
        if not x.flags.c_contiguous or self.__dict__.get("_chains") is not state \
                or not _dispatch.allowed() or state.layers != self._chain_layers():
            return None
        y = run(x, state.weights())
        return None if y is None else _apart_from([y], [x])[0]

    def _predict_one_batch(self, x: np.ndarray, batch_size: int, where: str):
        """:meth:`predict` of one batch with no callbacks and no progress bar (a server or
        an app asking for one image): the same checks and numbers, without the batching's
        bookkeeping, which cost half as much as a small convnet's arithmetic. ``None``
        when the batch would be split into parts (the usual loop then runs)."""
        if len(x) > 1 and len(x) > self._inference_rows(batch_size):
            return None
        xs = self._prepare_inputs(x, where)
        if len(x) > 1:
            with _inference_context():
                outputs = self._inference_forward(xs)
        else:
            outputs = self._inference_forward(xs)
        outputs = _apart_from(outputs, [x])
        return outputs[0] if len(outputs) == 1 else outputs

    def _predict_batches(self, source, verbose, callbacks, where: str):
        cbs = self._callback_list(callbacks, verbose=verbose, epochs=1, steps=source.steps,
                                  add_history=False)
        cbs.on_predict_begin()
        pieces = []
        for step, (xb, _, _) in enumerate(source.epoch()):
            cbs.on_predict_batch_begin(step)
            with _ops_context():
                pieces.append(self._inference_forward(self._prepare_inputs(xb, where)))
            cbs.on_predict_batch_end(step, {"outputs": pieces[-1]})
        cbs.on_predict_end()
        outputs = [np.concatenate([p[i] for p in pieces], axis=0)
                   for i in range(len(pieces[0]))]
        return outputs[0] if len(outputs) == 1 else outputs

    def _raw_inputs(self, x, where: str) -> list:
        """The input arrays as given (memmaps and integer dtypes kept as they are), their
        shapes checked against the model's inputs without converting any data."""
        if isinstance(x, dict) and hasattr(self, "_inputs"):   # functional: by input name
            x = self._inputs_by_name(x, where)
        if self.n_inputs == 1:
            if isinstance(x, (list, tuple)) and len(x) == 1 and hasattr(x[0], "shape"):
                x = x[0]
            parts = [x]
        else:
            parts = list(x) if isinstance(x, (list, tuple)) else [x]
        raw = []
        for part in parts:
            if part is None:
                self._prepare_inputs(x, where)           # raises the "x is None" error
            arr = part if isinstance(part, np.ndarray) else None
            if arr is None:
                try:
                    arr = np.asarray(part)
                except Exception:
                    arr = None
            if arr is None or arr.dtype.kind not in "biuf":
                return self._prepare_inputs(x, where)    # raises, or converts once
            raw.append(arr)
        # shape-only stand-ins: a broadcast zero has the shapes and no memory
        stand_ins = [np.broadcast_to(np.zeros((), self.dtype), arr.shape) for arr in raw]
        self._prepare_inputs(stand_ins[0] if self.n_inputs == 1 else stand_ins, where)
        for i, arr in enumerate(raw[1:], 1):
            if len(arr) != len(raw[0]):
                raise ShapeError(f"{where}: all inputs must have the same number of samples; "
                                 f"input 0 has {len(raw[0])}, input {i} has {len(arr)}")
        return raw

    def _convert_batch(self, raw: list, start: int, stop: int, where: str) -> list:
        """Rows ``start:stop`` of every input, converted to the model's dtype."""
        rows = [arr[start:stop] for arr in raw]
        return self._prepare_inputs(rows[0] if len(rows) == 1 else rows, where)

    def _inference_rows(self, batch_size: int) -> int:
        """Samples per forward pass in :meth:`predict`: ``batch_size``, or fewer when one
        layer's output for the whole batch would exceed ``INFERENCE_BLOCK_BYTES``. Inference
        is per sample, so the results are the same up to float32 rounding (a matrix product
        of another height may round differently); the activations then stay in the cache
        and their memory is reused instead of being mapped afresh."""
        largest = 0
        unwritten = self._chain_unwritten()
        for layer in self.layers:
            if layer in unwritten:
                continue
            shapes = getattr(layer, "output_shape", None)
            if shapes is None:
                continue
            shapes = shapes if isinstance(shapes, list) else [shapes]
            for shape in shapes:
                try:
                    cells = math.prod(int(v) for v in tuple(shape)[1:])
                except (TypeError, ValueError):      # unknown sizes: no splitting
                    return batch_size
                largest = max(largest, cells)
        if largest == 0:
            return batch_size
        largest *= np.dtype(self.dtype).itemsize
        budget = CHAIN_BLOCK_BYTES if unwritten else INFERENCE_BLOCK_BYTES
        return max(1, min(batch_size, budget // largest))

    # ------------------------------------------------------------------------- one batch
    def train_on_batch(self, x, y, sample_weight=None, class_weight=None, return_dict=False):
        """One gradient step on exactly this batch. Returns the loss, or ``[loss,
        *metrics]`` (metrics of this batch alone), or a dict with ``return_dict=True``."""
        where = f"{self._kind()} {self.name!r}: train_on_batch"
        self._require_compiled(where)
        xs, y = self._prepare_data(x, y, where)
        weights = self._sample_weights(y, sample_weight, class_weight, len(xs[0]), where)
        self._reset_metrics()
        loss_value, y_pred, finite = self._train_step(xs, y, weights)
        return self._batch_result(loss_value, y, y_pred, return_dict, weights)

    def test_on_batch(self, x, y, sample_weight=None, return_dict=False):
        """Loss and metrics of one batch in inference mode, without updating anything."""
        where = f"{self._kind()} {self.name!r}: test_on_batch"
        self._require_compiled(where)
        xs, y = self._prepare_data(x, y, where)
        weights = self._sample_weights(y, sample_weight, None, len(xs[0]), where)
        self._reset_metrics()
        loss_value, y_pred = self._test_loss(xs, y, weights)
        return self._batch_result(loss_value, y, y_pred, return_dict, weights)

    def predict_on_batch(self, x):
        """Outputs for one batch in inference mode (no batching, no progress bar)."""
        xs = self._prepare_inputs(x, f"{self._kind()} {self.name!r}: predict_on_batch")
        outputs = self._inference_forward(xs)
        return outputs[0] if len(outputs) == 1 else outputs

    def _inference_forward(self, xs: list) -> list:
        """The outputs for ``xs`` in inference mode, for :meth:`predict`: through the
        model's prepared chain when it has one (:meth:`_chain_outputs`), else layer by
        layer. The same numbers either way; the chain sets no layer's ``cache``."""
        outputs = self._chain_outputs(xs)
        return outputs if outputs is not None else self._forward(xs, training=False)

    def _chain_layers(self):
        """The model's layers in the order they run when they form one straight chain
        from its one input to its one output (each layer reading the previous one's
        output only): the candidates for an inference chain; else ``None`` (here: never;
        see ``Sequential`` and the functional ``Model``)."""
        return None

    def _chain_input_shape(self):
        """The shape of the model's one input, ``(None, ...)``, or ``None`` while unknown."""
        return None

    def _chain_state(self):
        """The inference chains for the current chain of layers (afresh when layers were
        added or removed, or when 16 input shapes have been prepared), or ``None`` when the
        layers form no straight chain."""
        layers = self._chain_layers()
        if layers is None:
            return None
        state = self.__dict__.get("_chains")
        if state is None or state.layers != layers or len(state.runs) >= 16:
            state = self._chains = _ChainState(layers)
        return state

    def _chain_outputs(self, xs: list):
        """``[y]`` through the layers' prepared chain (:mod:`convkit.fast.chain`: the set-up
        of every layer done once per input shape, a convolution and the max pool after it
        run together), or ``None`` when the layers form no straight chain, a layer has no
        chain step, the fast paths are off or still compiling, or another thread is using
        the chain."""
        x = xs[0]
        if len(xs) != 1 or type(x) is not np.ndarray or not x.flags.c_contiguous \
                or not _dispatch.allowed():
            return None
        state = self._chain_state()
        if state is None:
            return None
        key = (x.shape, x.dtype)
        run = state.runs.get(key)
        if run is None:
            run = _dispatch.prepare("chain", "forward", x.shape, x.dtype, state.steps)
            if run is None:             # no chain for these shapes, or not yet compiled
                return None
            state.runs[key] = run
        elif run is False:              # a layer's output made the chain give up before
            return None
        y = run(x, state.weights())
        if y is None:
            if run.gave_up:
                state.runs[key] = False
            return None
        if len(x) == 1:                 # checked and chained: predict's lane for this shape
            self._lane = (x.shape, x.dtype, state, run)
        return [y]

    def _chain_unwritten(self) -> tuple:
        """The layers whose outputs the chain keeps in a scratch buffer (a convolution fused
        with the max pool after it): ``predict`` sizes its parts without them."""
        shape = self._chain_input_shape()
        if not _dispatch.allowed() or shape is None:
            return ()
        state = self._chain_state()
        if state is None:
            return ()
        if state.unwritten is None:
            state.unwritten = tuple(
                state.layers[i] for i in _chain.fused_steps((1, *shape[1:]), state.steps))
        return state.unwritten

    def _batch_result(self, loss_value, y, y_pred, return_dict, sample_weight=None):
        for m in self.compiled_metrics:
            m.reset_state()
        self._update_metrics(y, y_pred, sample_weight)
        logs = {"loss": float(loss_value)}
        logs.update(self._metric_results())
        if return_dict:
            return logs
        names = self.metrics_names
        if len(names) == 1:
            return logs["loss"]
        return [logs[name] for name in names]


#: :meth:`predict` splits a batch so that no layer's output exceeds about this many bytes
INFERENCE_BLOCK_BYTES = 8 << 20
#: ... and when the model's inference chain fuses its convolutions with their pools: then
#: the largest activations stay in a per-thread scratch buffer, what is written out is the
#: pooled maps, and each part is a chain of its own shape (with its own helper thread), so
#: fewer, larger parts (MNIST convnet, batch 1000: parts of 387 images 28.8-40.7 ms, the
#: whole batch 23.1-23.6 ms)
CHAIN_BLOCK_BYTES = 32 << 20


def _apart_from(outputs: list, inputs: list) -> list:
    """``outputs`` with a copy of any that shares memory with one of ``inputs`` (a model
    whose output is its input, or a reshape of it): ``predict`` never hands back the
    caller's own array. An output that owns its memory and is none of the inputs shares
    none (the quick test first: ``may_share_memory`` costs about a microsecond)."""
    if len(outputs) == 1 and len(inputs) == 1:      # one of each (a lane's sample): no loops
        o = outputs[0]
        if o.base is None and o is not inputs[0]:
            return outputs
    return [o if o.base is None and all(o is not x for x in inputs)
            else o.copy() if any(np.may_share_memory(o, x) for x in inputs) else o
            for o in outputs]


#: microseconds the ops' pool threads stay awake after each chunk during inference
#: (:func:`_inference_context`): the next layer's hand-off then finds them running
INFERENCE_SPIN_US = 300.0


def _inference_context():
    """:func:`_ops_context` for inference, with the pool's threads kept awake between the
    layers (:func:`convkit.fast.runtime.spin.spinning`): waking a sleeping thread costs
    30-60 us per hand-off on a small VM, several per layer (MNIST convnet, batch 32:
    ``predict`` 1.26 -> 1.08 ms)."""
    if not fast_backend.threaded():
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(_ops_context())
    stack.enter_context(fast_spin.spinning(INFERENCE_SPIN_US))
    return stack


def _ops_context():
    """One one-thread-BLAS block around a whole step when the ops run their own threads
    (backend ``"auto"``): every op inside limits the BLAS to one thread anyway, and setting
    that limit once per step instead of once per op saves ~15 calls into threadpoolctl."""
    if fast_backend.threaded():
        return fast_threads.blas_limit(1)
    return contextlib.nullcontext()


def validation_split_index(n: int, validation_split, where: str) -> int:
    """Where ``validation_split`` cuts ``n`` samples: the first ``split_at`` train, the
    LAST ``n - split_at`` validate (Keras's rule, before any shuffling), e.g. ``n=10,
    validation_split=0.25`` gives 7. Both parts must be non-empty."""
    if not 0.0 < float(validation_split) < 1.0:
        raise ConvkitError(f"{where}: validation_split must be in (0, 1), got "
                           f"{validation_split!r}")
    split_at = int(math.floor(n * (1.0 - float(validation_split))))
    if split_at == 0 or split_at == n:
        raise ConvkitError(f"{where}: {n} samples are too few to keep "
                           f"validation_split={validation_split} of them for validation")
    return split_at


def _check_int(value, name: str, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConvkitError(f"{where}: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _scaled(value, scale: float):
    """``value * scale``, untouched when ``scale`` is 1 (no extra rounding by default)."""
    if scale == 1.0:
        return value
    if isinstance(value, np.ndarray):
        return value * value.dtype.type(scale)
    return value * scale


def _take(y, rows):
    """Rows of the targets: an array, or each array of a list (several outputs)."""
    return [part[rows] for part in y] if isinstance(y, list) else y[rows]


def _array_batches(xs, y, weights, index_batches):
    """``(x rows, y rows, weight rows)`` for each index array."""
    for idx in index_batches:
        yield [a[idx] for a in xs], _take(y, idx), None if weights is None else weights[idx]


def _per_output(value, names: list, what: str, where: str, broadcast: bool) -> list:
    """A compile argument as one entry per output: from a list/tuple (output order), a dict
    (by output name) or, with ``broadcast``, one value for every output."""
    if isinstance(value, dict):
        unknown = [key for key in value if key not in names]
        if unknown:
            raise ConvkitError(f"{where}: {what} names unknown output(s) {unknown}; the outputs "
                               f"are {names}")
        missing = [name for name in names if name not in value]
        if missing:
            raise ConvkitError(f"{where}: {what} has no entry for output(s) {missing}")
        return [value[name] for name in names]
    if isinstance(value, (list, tuple)) and (len(names) > 1 or not broadcast or
                                             len(value) == 1):
        if len(value) != len(names):
            raise ConvkitError(f"{where}: {what} has {len(value)} entries for "
                               f"{len(names)} output(s) {names}")
        return list(value)
    if not broadcast:
        raise ConvkitError(f"{where}: {what} must be a list or a dict with one entry per "
                           f"output, got {value!r}")
    return [value] * len(names)


def _metric_lists(metrics, names: list, where: str) -> list:
    """Metrics as one list per output: a list of lists, a dict by output name, or one flat
    list (for every output)."""
    if metrics is None:
        return [[] for _ in names]
    if isinstance(metrics, dict):
        unknown = [key for key in metrics if key not in names]
        if unknown:
            raise ConvkitError(f"{where}: metrics names unknown output(s) {unknown}; the "
                               f"outputs are {names}")
        return [_as_metric_list(metrics.get(name)) for name in names]
    metrics = _as_metric_list(metrics)
    if len(names) > 1 and metrics and all(isinstance(m, (list, tuple)) or m is None
                                          for m in metrics):
        if len(metrics) != len(names):
            raise ConvkitError(f"{where}: metrics has {len(metrics)} lists for {len(names)} "
                               f"outputs {names}")
        return [_as_metric_list(m) for m in metrics]
    return [list(metrics) for _ in names]


def _as_metric_list(metrics) -> list:
    if metrics is None:
        return []
    if isinstance(metrics, (str, dict)) or not isinstance(metrics, (list, tuple)):
        return [metrics]
    return list(metrics)
