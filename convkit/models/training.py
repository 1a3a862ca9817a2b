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
``input_grads=False``) and ``_fusable_output_layer()``.

Training never needs the gradient with respect to the model's input, so the step calls
``_backward(..., input_grads=False)``: the first layer with trainable weights skips its
input gradient (``layer.input_gradient``) and the layers before it skip backward
altogether. ``model.backward(dy)`` still returns the input gradient.
"""
from __future__ import annotations

import contextlib
import math
import sys

import numpy as np

from .._interrupts import interrupts_deferred
from ..errors import ConvkitError, ShapeError
from ..random import make_rng

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
        # Shuffling draws from the model's own generator, so ``set_seed`` before building the
        # model fixes it, and its state is saved with the model (resuming stays identical).
        self._rng = make_rng()

    # ------------------------------------------------------------------------- compile
    def compile(self, optimizer="rmsprop", loss=None, metrics=None):
        """Choose the optimizer, the loss and the metrics (names or objects, as in Keras).

        >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
        ...               metrics=["accuracy"])
        """
        from .. import losses as _losses
        from .. import metrics as _metrics
        from .. import optimizers as _optimizers
        where = f"{self._kind()} {self.name!r}: compile"
        if loss is None:
            raise ConvkitError(f"{where}: a loss is required, e.g. "
                               f"loss='sparse_categorical_crossentropy'")
        self.optimizer = _optimizers.get(optimizer)
        self.loss = _losses.get(loss)
        if metrics is None:
            metrics = []
        elif isinstance(metrics, (str, dict)) or not isinstance(metrics, (list, tuple)):
            metrics = [metrics]
        self.compiled_metrics = [_metrics.get(m, loss=self.loss) for m in metrics]
        names = [m.name for m in self.compiled_metrics]
        if len(set(names)) != len(names):
            raise ConvkitError(f"{where}: two metrics have the same name ({names})")
        self._compile_args = {"loss": _to_config(self.loss if not isinstance(loss, str) else loss,
                                                 _losses),
                              "metrics": [_to_config(m, _metrics) for m in metrics]}
        self.compiled = True
        return None

    def get_compile_config(self) -> dict | None:
        """``{"optimizer": {"class_name", "config"}, "loss", "metrics"}``, or None if the
        model was never compiled."""
        if not self.compiled:
            return None
        return {"optimizer": {"class_name": type(self.optimizer).__name__,
                              "config": self.optimizer.get_config()},
                "loss": self._compile_args["loss"],
                "metrics": list(self._compile_args["metrics"])}

    def compile_from_config(self, config: dict) -> None:
        """Re-compile from :meth:`get_compile_config` (used when loading a saved model).
        A custom loss or metric that was saved by name only and is unknown here is reported:
        the loss as an error, a metric with a warning (it is left out)."""
        import warnings

        from .. import metrics as _metrics
        from .. import optimizers as _optimizers
        optimizer = _optimizers.deserialize(config["optimizer"])
        metrics = []
        for m in config.get("metrics") or []:
            try:
                _metrics.get(m, loss=config["loss"])
                metrics.append(m)
            except (ValueError, TypeError):
                warnings.warn(f"{self._kind()} {self.name!r}: the saved metric {m!r} is not a "
                              f"built-in metric and was left out; compile again to add it",
                              stacklevel=3)
        self.compile(optimizer=optimizer, loss=config["loss"], metrics=metrics or None)

    def _require_compiled(self, where: str) -> None:
        if not self.compiled:
            raise ConvkitError(f"{where}: the model must be compiled first; call "
                               f"model.compile(optimizer=..., loss=..., metrics=[...])")

    # ------------------------------------------------------------------------- data checks
    def _prepare_data(self, x, y, where: str):
        """x as a list of checked input arrays, y as an array; same number of samples."""
        xs = self._prepare_inputs(x, where)
        n = len(xs[0])
        for i, arr in enumerate(xs[1:], 1):
            if len(arr) != n:
                raise ShapeError(f"{where}: all inputs must have the same number of samples; "
                                 f"input 0 has {n}, input {i} has {len(arr)}")
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
                             f"{n} inputs (x shape {xs[0].shape}) and {y.shape[0]} targets "
                             f"(y shape {y.shape})")
        self._check_targets(y, where)
        if np.issubdtype(y.dtype, np.floating) and y.dtype != xs[0].dtype:
            y = y.astype(xs[0].dtype)   # one-hot or regression targets in the model's dtype
        return xs, y

    def _check_targets(self, y, where: str) -> None:
        """Refuse labels whose shape does not fit the loss and the model's output (for the
        built-in losses; a custom loss checks its own inputs)."""
        from .. import losses as _losses
        out_shape = self._single_output_shape(where)
        name = _loss_name(self.loss)
        n = y.shape[0]
        if isinstance(self.loss, _losses.SparseCategoricalCrossentropy):
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
        if not isinstance(self.loss, shaped_like_output):
            return
        expected = (n,) + tuple(out_shape[1:])
        if y.shape == expected:
            return
        # (N,) targets for an (N, 1) output are fine, as in Keras.
        if len(expected) == 2 and expected[1] == 1 and y.shape == (n,):
            return
        hint = ""
        if isinstance(self.loss, _losses.CategoricalCrossentropy) and y.ndim == 1:
            hint = (" (integer labels: use loss='sparse_categorical_crossentropy' or one-hot "
                    "encode them)")
        raise ShapeError(f"{where}: {name} expects targets shaped like the model's output "
                         f"{(None,) + tuple(out_shape[1:])}, got y of shape {y.shape}{hint}")

    def _single_output_shape(self, where: str):
        shapes = self._output_shapes()
        if len(shapes) != 1:
            raise ConvkitError(f"{where}: training a model with {len(shapes)} outputs is not "
                               f"supported; build one model per output")
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

    def _loss_and_backward(self, xs, y, training: bool = True):
        """Forward in training mode, the loss, and the backward pass filling layer.grads.
        Returns (loss value, prediction, finite?)."""
        y_pred = self._forward(xs, training=training)[0]
        penalty, reg_grads = self._regularization(with_grads=True)
        loss_value = float(self.loss(y, y_pred)) + penalty
        if not math.isfinite(loss_value):
            return loss_value, y_pred, reg_grads, False
        fused_layer = self._fusable_output_layer()
        activation = getattr(getattr(fused_layer, "activation", None), "name", None)
        # the inputs need no gradient: layers skip what only they would need
        if fused_layer is not None and activation and self.loss.fusable_with(activation):
            dy = self.loss.gradient_wrt_logits(y, y_pred)
            self._backward([dy], fuse=True, input_grads=False)
        else:
            dy = self.loss.gradient(y, y_pred)
            self._backward([dy], fuse=False, input_grads=False)
        return loss_value, y_pred, reg_grads, True

    def _gradients_and_weights(self, reg_grads):
        """``[(grad, weight array), ...]`` for every trainable weight, in model order."""
        pairs = []
        for layer in self.layers:
            if not layer.trainable:
                continue
            for w, g in zip(layer.weights, layer.grads):
                if not w.trainable:
                    continue
                extra = reg_grads.get(id(w.value))
                if extra is not None:
                    g = extra if g is None else g + extra
                pairs.append((g, w.value))
        return pairs

    def _train_step(self, xs, y):
        with _ops_context(), interrupts_deferred():       # Ctrl-C lands between steps
            loss_value, y_pred, reg_grads, finite = self._loss_and_backward(xs, y)
            if finite:
                self.optimizer.apply_gradients(self._gradients_and_weights(reg_grads))
        return loss_value, y_pred, finite

    def _test_loss(self, xs, y):
        y_pred = self._forward(xs, training=False)[0]
        penalty, _ = self._regularization(with_grads=False)
        return float(self.loss(y, y_pred)) + penalty, y_pred

    # ------------------------------------------------------------------------- fit
    def fit(self, x=None, y=None, batch_size=32, epochs=1, verbose=1, callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, initial_epoch=0,
            steps_per_epoch=None):
        """Train for ``epochs - initial_epoch`` epochs of mini-batch gradient descent.

        ``x``: ``(N, H, W, C)`` images (a list of arrays for a model with several inputs);
        ``y``: targets for the loss, e.g. ``(N,)`` integer labels for
        ``sparse_categorical_crossentropy``. ``validation_split`` keeps the LAST fraction of
        the samples (before shuffling) for validation, as Keras does. Returns a
        :class:`~convkit.callbacks.History` whose ``history`` maps ``"loss"``, each metric
        and their ``"val_"`` versions to one value per epoch.

        A NaN or infinite loss stops training at once (the step is not applied) and prints
        the epoch and batch; ``model.stop_reason`` keeps the message.

        >>> history = model.fit(x_train, y_train, batch_size=128, epochs=3)
        >>> history.history["loss"]          # three values, decreasing
        """
        where = f"{self._kind()} {self.name!r}: fit"
        self._require_compiled(where)
        batch_size = _check_int(batch_size, "batch_size", where, minimum=1)
        epochs = _check_int(epochs, "epochs", where, minimum=0)
        initial_epoch = _check_int(initial_epoch, "initial_epoch", where, minimum=0)
        if steps_per_epoch is not None:
            steps_per_epoch = _check_int(steps_per_epoch, "steps_per_epoch", where, minimum=1)
        xs, y = self._prepare_data(x, y, where)
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ConvkitError(f"{where}: validation_data must be a pair (x_val, y_val)")
            val = self._prepare_data(validation_data[0], validation_data[1],
                                     where + " (validation_data)")
        elif validation_split:
            if not 0.0 < float(validation_split) < 1.0:
                raise ConvkitError(f"{where}: validation_split must be in (0, 1), got "
                                   f"{validation_split!r}")
            n = len(y)
            split_at = int(math.floor(n * (1.0 - float(validation_split))))
            if split_at == 0 or split_at == n:
                raise ConvkitError(f"{where}: {n} samples are too few to keep "
                                   f"validation_split={validation_split} of them for validation")
            val = ([a[split_at:] for a in xs], y[split_at:])
            xs, y = [a[:split_at] for a in xs], y[:split_at]

        n = len(y)
        batches_per_pass = -(-n // batch_size)
        steps = steps_per_epoch or batches_per_pass
        cbs = self._callback_list(callbacks, verbose=verbose, epochs=epochs, steps=steps,
                                  add_history=True)
        self.stop_training = False
        self.stop_reason = None
        cbs.on_train_begin()
        epoch_logs = {}
        for epoch in range(initial_epoch, epochs):
            for m in self.compiled_metrics:
                m.reset_state()
            cbs.on_epoch_begin(epoch)
            loss_sum, seen = 0.0, 0
            batches = self._batch_indices(n, batch_size, shuffle, steps)
            finite = True
            for step, idx in enumerate(batches):
                cbs.on_train_batch_begin(step)
                xb = [a[idx] for a in xs]
                yb = y[idx]
                loss_value, y_pred, finite = self._train_step(xb, yb)
                count = len(yb)
                loss_sum += loss_value * count
                seen += count
                if not finite:
                    self.stop_reason = (f"{where}: the loss became {loss_value} at epoch "
                                        f"{epoch + 1}, batch {step + 1}; training stopped "
                                        f"(this step's update was not applied)")
                    print(self.stop_reason, file=sys.stderr)
                    self.stop_training = True
                    break
                for m in self.compiled_metrics:
                    m.update_state(yb, y_pred)
                logs = {"loss": loss_sum / seen}
                logs.update(self._metric_results())
                cbs.on_train_batch_end(step, logs)
                if self.stop_training:
                    break
            epoch_logs = {"loss": loss_sum / max(seen, 1)}
            epoch_logs.update(self._metric_results())
            if val is not None and finite:
                val_logs = self._evaluate_arrays(val[0], val[1], batch_size)
                epoch_logs.update({"val_" + k: v for k, v in val_logs.items()})
            cbs.on_epoch_end(epoch, epoch_logs)
            if self.stop_training:
                if self.stop_reason is None:
                    self.stop_reason = f"{where}: stopped by a callback after epoch {epoch + 1}"
                break
        cbs.on_train_end(epoch_logs)
        self.history = cbs.history
        return cbs.history

    def _metric_results(self) -> dict:
        return {m.name: float(m.result()) for m in self.compiled_metrics}

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
        from .. import callbacks as _callbacks
        user = list(callbacks or [])
        if add_history and not any(isinstance(c, _callbacks.DivergenceMonitor) for c in user):
            user.append(_callbacks.DivergenceMonitor())        # warns once on divergence
        return _callbacks.CallbackList(user, model=self, add_history=add_history,
                                       add_progbar=bool(verbose), verbose=verbose,
                                       epochs=epochs, steps=steps)

    # ------------------------------------------------------------------------- evaluate
    def _evaluate_arrays(self, xs, y, batch_size, cbs=None) -> dict:
        for m in self.compiled_metrics:
            m.reset_state()
        n = len(y)
        loss_sum = 0.0
        for step, start in enumerate(range(0, n, batch_size)):
            if cbs is not None:
                cbs.on_test_batch_begin(step)
            xb = [a[start:start + batch_size] for a in xs]
            yb = y[start:start + batch_size]
            loss_value, y_pred = self._test_loss(xb, yb)
            loss_sum += loss_value * len(yb)
            for m in self.compiled_metrics:
                m.update_state(yb, y_pred)
            if cbs is not None:
                logs = {"loss": loss_sum / min(start + batch_size, n)}
                logs.update(self._metric_results())
                cbs.on_test_batch_end(step, logs)
        logs = {"loss": loss_sum / n}
        logs.update(self._metric_results())
        return logs

    def evaluate(self, x=None, y=None, batch_size=32, verbose=1, return_dict=False,
                 callbacks=None):
        """Loss (plus regularization penalties) and metrics on ``(x, y)`` in inference mode.

        Returns the loss alone when there are no metrics, else ``[loss, *metrics]`` in
        compile order, or a dict ``{"loss": ..., "accuracy": ...}`` with ``return_dict=True``.
        """
        where = f"{self._kind()} {self.name!r}: evaluate"
        self._require_compiled(where)
        batch_size = _check_int(batch_size, "batch_size", where, minimum=1)
        xs, y = self._prepare_data(x, y, where)
        steps = -(-len(y) // batch_size)
        cbs = self._callback_list(callbacks, verbose=verbose, epochs=1, steps=steps,
                                  add_history=False)
        cbs.on_test_begin()
        logs = self._evaluate_arrays(xs, y, batch_size, cbs)
        cbs.on_test_end(logs)
        if return_dict:
            return dict(logs)
        if not self.compiled_metrics:
            return logs["loss"]
        return [logs["loss"]] + [logs[m.name] for m in self.compiled_metrics]

    # ------------------------------------------------------------------------- predict
    def predict(self, x, batch_size=32, verbose=0, callbacks=None):
        """Outputs for ``x`` in inference mode (dropout off, batch norm on its moving
        statistics), ``batch_size`` samples at a time, concatenated: e.g. ``(N, 10)``
        class probabilities. A list of arrays for a model with several outputs.
        ``verbose=1`` draws a progress bar over the batches. A batch whose activations
        would be large runs in a few equal parts (see ``INFERENCE_BLOCK_BYTES``)."""
        where = f"{self._kind()} {self.name!r}: predict"
        batch_size = _check_int(batch_size, "batch_size", where, minimum=1)
        xs = self._prepare_inputs(x, where)
        n = len(xs[0])
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
            with _ops_context():
                # a large batch runs in a few equal parts whose activations stay in cache
                parts = -(-(stop - start) // rows)
                bounds = [start + (stop - start) * i // parts for i in range(parts + 1)]
                outs = [self._forward([a[lo:hi] for a in xs], training=False)
                        for lo, hi in zip(bounds[:-1], bounds[1:])]
            pieces.append(outs[0] if parts == 1 else
                          [np.concatenate([o[i] for o in outs], axis=0)
                           for i in range(len(outs[0]))])
            cbs.on_predict_batch_end(step, {"outputs": pieces[-1]})
        cbs.on_predict_end()
        outputs = [np.concatenate([p[i] for p in pieces], axis=0)
                   for i in range(len(pieces[0]))]
        return outputs[0] if len(outputs) == 1 else outputs

    def _inference_rows(self, batch_size: int) -> int:
        """Samples per forward pass in :meth:`predict`: ``batch_size``, or fewer when one
        layer's output for the whole batch would exceed ``INFERENCE_BLOCK_BYTES``. Inference
        is per sample, so the results are the same up to float32 rounding (a matrix product
        of another height may round differently); the activations then stay in the cache
        and their memory is reused instead of being mapped afresh."""
        largest = 0
        for layer in self.layers:
            shapes = getattr(layer, "output_shape", None)
            if shapes is None:
                continue
            shapes = shapes if isinstance(shapes, list) else [shapes]
            for shape in shapes:
                try:
                    cells = int(np.prod([int(v) for v in tuple(shape)[1:]]))
                except (TypeError, ValueError):      # unknown sizes: no splitting
                    return batch_size
                largest = max(largest, cells * np.dtype(self.dtype).itemsize)
        if largest == 0:
            return batch_size
        return max(1, min(batch_size, INFERENCE_BLOCK_BYTES // largest))

    # ------------------------------------------------------------------------- one batch
    def train_on_batch(self, x, y, return_dict=False):
        """One gradient step on exactly this batch. Returns the loss, or ``[loss,
        *metrics]`` (metrics of this batch alone), or a dict with ``return_dict=True``."""
        where = f"{self._kind()} {self.name!r}: train_on_batch"
        self._require_compiled(where)
        xs, y = self._prepare_data(x, y, where)
        loss_value, y_pred, finite = self._train_step(xs, y)
        return self._batch_result(loss_value, y, y_pred, return_dict)

    def test_on_batch(self, x, y, return_dict=False):
        """Loss and metrics of one batch in inference mode, without updating anything."""
        where = f"{self._kind()} {self.name!r}: test_on_batch"
        self._require_compiled(where)
        xs, y = self._prepare_data(x, y, where)
        loss_value, y_pred = self._test_loss(xs, y)
        return self._batch_result(loss_value, y, y_pred, return_dict)

    def predict_on_batch(self, x):
        """Outputs for one batch in inference mode (no batching, no progress bar)."""
        xs = self._prepare_inputs(x, f"{self._kind()} {self.name!r}: predict_on_batch")
        outputs = self._forward(xs, training=False)
        return outputs[0] if len(outputs) == 1 else outputs

    def _batch_result(self, loss_value, y, y_pred, return_dict):
        for m in self.compiled_metrics:
            m.reset_state()
            m.update_state(y, y_pred)
        logs = {"loss": float(loss_value)}
        logs.update(self._metric_results())
        if return_dict:
            return logs
        if not self.compiled_metrics:
            return logs["loss"]
        return [logs["loss"]] + [logs[m.name] for m in self.compiled_metrics]


#: :meth:`predict` splits a batch so that no layer's output exceeds about this many bytes
INFERENCE_BLOCK_BYTES = 8 << 20


def _ops_context():
    """One one-thread-BLAS block around a whole step when the ops run their own threads
    (backend ``"auto"``): every op inside limits the BLAS to one thread anyway, and setting
    that limit once per step instead of once per op saves ~15 calls into threadpoolctl."""
    from ..ops import _threads, accel
    if accel.threaded():
        return _threads.blas_limit(1)
    return contextlib.nullcontext()


def _check_int(value, name: str, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConvkitError(f"{where}: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)
