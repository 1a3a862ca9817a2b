"""Callbacks: code that ``fit`` runs at fixed points of training, Keras's classes and hooks.

The model a callback sees (``self.model``) offers ``stop_training`` (set it to True to end
``fit`` after the current epoch), ``optimizer`` (with a settable ``learning_rate``),
``get_weights()`` / ``set_weights()``, ``save(path)`` and ``save_weights(path)``.
``self.params`` holds ``{"verbose": ..., "epochs": ..., "steps": ...}``.

The hooks and the ``logs`` they get, as in Keras:

* ``on_train_begin(logs)`` / ``on_train_end(logs)``;
* ``on_epoch_begin(epoch, logs)`` / ``on_epoch_end(epoch, logs)``: ``epoch`` counts from 0;
  the end-of-epoch logs hold the epoch's means (``loss``, metrics, ``val_*``). Callbacks run in
  list order on the same dict, so a value one adds (``learning_rate``) is seen by the next;
* ``on_train_batch_begin(batch, logs)`` / ``on_train_batch_end(batch, logs)``: ``batch``
  counts from 0 within the epoch; the end-of-batch logs hold the running means so far;
* ``on_test_*`` and ``on_predict_*``: the same for ``evaluate`` (and validation) and
  ``predict``.

Write your own by subclassing :class:`Callback`, or with :class:`LambdaCallback`::

    stop_at_95 = LambdaCallback(on_epoch_end=lambda epoch, logs:
                                setattr(model, "stop_training", logs["accuracy"] > 0.95))
"""
from __future__ import annotations

import csv
import inspect
import io
import math
import os
import sys
import warnings

import numpy as np

from .errors import ConvkitError
from .progress import ProgressBar

__all__ = ["Callback", "CallbackList", "History", "EarlyStopping", "ModelCheckpoint",
           "ReduceLROnPlateau", "LearningRateScheduler", "CSVLogger", "LambdaCallback",
           "TerminateOnNaN", "DivergenceMonitor", "DivergenceWarning", "ProgressBarLogger"]

_HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
          "on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end",
          "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
          "on_predict_begin", "on_predict_end", "on_predict_batch_begin",
          "on_predict_batch_end")


class Callback:
    """Base class: every hook does nothing. ``self.model`` and ``self.params`` are set by
    ``fit`` (through :meth:`set_model` / :meth:`set_params`) before training starts."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = dict(params or {})

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_batch_begin(self, batch, logs=None): pass
    def on_batch_end(self, batch, logs=None): pass

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs=logs)       # Keras: the old name still works

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs=logs)

    def on_test_begin(self, logs=None): pass
    def on_test_end(self, logs=None): pass
    def on_test_batch_begin(self, batch, logs=None): pass
    def on_test_batch_end(self, batch, logs=None): pass
    def on_predict_begin(self, logs=None): pass
    def on_predict_end(self, logs=None): pass
    def on_predict_batch_begin(self, batch, logs=None): pass
    def on_predict_batch_end(self, batch, logs=None): pass

    def _require_model(self, *attributes):
        name = type(self).__name__
        if self.model is None:
            raise ConvkitError(f"{name}: no model; call set_model(model) first (fit does)")
        for attribute in attributes:
            if not hasattr(self.model, attribute):
                raise ConvkitError(f"{name}: the model has no {attribute!r}")

    def __repr__(self):
        return f"<{type(self).__name__}>"


class CallbackList:
    """Fans every hook out to a list of callbacks, in order, passing the same ``logs`` dict.

    ``CallbackList(callbacks, add_history=True, add_progbar=True, model=model,
    verbose=1, epochs=10, steps=125)`` is what ``fit`` builds: it appends a :class:`History`
    and a :class:`ProgressBarLogger` unless the list already has one, then calls
    ``set_model`` / ``set_params`` on each callback.
    """

    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None,
                 **params):
        if isinstance(callbacks, Callback):
            callbacks = [callbacks]
        self.callbacks = list(callbacks or [])
        for index, callback in enumerate(self.callbacks):
            if not isinstance(callback, Callback):
                raise ConvkitError(f"CallbackList: item {index} is not a Callback, got "
                                   f"{type(callback).__name__}")
        if add_history and not any(isinstance(c, History) for c in self.callbacks):
            self.callbacks.append(History())
        if add_progbar and not any(isinstance(c, ProgressBarLogger) for c in self.callbacks):
            self.callbacks.append(ProgressBarLogger())
        self.model = None
        self.params = {}
        if model is not None:
            self.set_model(model)
        if params:
            self.set_params(params)

    def append(self, callback: Callback) -> None:
        self.callbacks.append(callback)
        if self.model is not None:
            callback.set_model(self.model)
        if self.params:
            callback.set_params(self.params)

    def set_model(self, model) -> None:
        self.model = model
        for callback in self.callbacks:
            callback.set_model(model)

    def set_params(self, params) -> None:
        self.params = dict(params)
        for callback in self.callbacks:
            callback.set_params(self.params)

    @property
    def history(self):
        """The :class:`History` in the list, or None."""
        return next((c for c in self.callbacks if isinstance(c, History)), None)

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self):
        return len(self.callbacks)

    def _call(self, hook, *args):
        for callback in self.callbacks:
            getattr(callback, hook)(*args)

    def on_train_begin(self, logs=None): self._call("on_train_begin", logs)
    def on_train_end(self, logs=None): self._call("on_train_end", logs)
    def on_epoch_begin(self, epoch, logs=None): self._call("on_epoch_begin", epoch, logs)
    def on_epoch_end(self, epoch, logs=None): self._call("on_epoch_end", epoch, logs)
    def on_batch_begin(self, batch, logs=None): self._call("on_train_batch_begin", batch, logs)
    def on_batch_end(self, batch, logs=None): self._call("on_train_batch_end", batch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._call("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._call("on_train_batch_end", batch, logs)

    def on_test_begin(self, logs=None): self._call("on_test_begin", logs)
    def on_test_end(self, logs=None): self._call("on_test_end", logs)

    def on_test_batch_begin(self, batch, logs=None):
        self._call("on_test_batch_begin", batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        self._call("on_test_batch_end", batch, logs)

    def on_predict_begin(self, logs=None): self._call("on_predict_begin", logs)
    def on_predict_end(self, logs=None): self._call("on_predict_end", logs)

    def on_predict_batch_begin(self, batch, logs=None):
        self._call("on_predict_batch_begin", batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._call("on_predict_batch_end", batch, logs)


class History(Callback):
    """Records the end-of-epoch logs: ``history.history = {"loss": [...], "val_loss": [...],
    ...}`` and ``history.epoch = [0, 1, ...]``. ``fit`` returns it; it also becomes
    ``model.history``."""

    def __init__(self):
        super().__init__()
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
        if self.model is not None:
            try:
                self.model.history = self
            except AttributeError:
                pass


# ------------------------------------------------------------------ monitoring helpers
_MAX_WORDS = ("acc", "auc", "precision", "recall", "f1", "fmeasure", "iou")


def _resolve_mode(where: str, monitor: str, mode: str, model=None) -> str:
    """``"min"`` or ``"max"``; ``"auto"`` reads the metric's ``direction`` when the model
    lists it, else: losses and errors fall, accuracy-like names rise."""
    if mode in ("min", "max"):
        return mode
    if mode != "auto":
        raise ConvkitError(f"{where}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    name = monitor[4:] if monitor.startswith("val_") else monitor
    if name == "loss" or name.endswith("loss"):
        return "min"
    for metric in getattr(model, "metrics", None) or ():
        if getattr(metric, "name", None) == name and getattr(metric, "direction", None):
            return "max" if metric.direction == "up" else "min"
    return "max" if any(word in name for word in _MAX_WORDS) else "min"


class _MonitorMixin:
    """A missing monitored key warns once (listing the keys there are), like Keras, but
    only once per callback."""

    def _monitor_value(self, logs, action="skipping this epoch"):
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            if not getattr(self, "_warned_missing", False):
                self._warned_missing = True
                warnings.warn(f"{type(self).__name__}: monitored value {self.monitor!r} is not "
                              f"in the logs ({action}); available: "
                              f"{', '.join(logs) or 'none'}", stacklevel=3)
            return None
        value = np.asarray(value)
        if value.ndim:
            raise ConvkitError(f"{type(self).__name__}: monitored value {self.monitor!r} must "
                               f"be a scalar, got shape {value.shape}")
        return float(value)


# ------------------------------------------------------------------ the standard callbacks
class EarlyStopping(_MonitorMixin, Callback):
    """Stop training when ``monitor`` has stopped improving (Keras's rules).

    An epoch improves when ``current + min_delta < best`` (mode "min") or
    ``current - min_delta > best`` ("max"); ``mode="auto"`` picks from the name. After
    ``patience`` epochs in a row without improvement (counted from ``start_from_epoch``),
    ``model.stop_training`` is set. An improvement that does not beat ``baseline`` does not
    reset the count. With ``restore_best_weights=True`` the weights of the best epoch are put
    back when training ends (also when it ran to the last epoch).

    After training: ``stopped_epoch`` (0 if it never stopped), ``best``, ``best_epoch``.
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = mode
        self.baseline = baseline
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = int(start_from_epoch)
        _resolve_mode("EarlyStopping", monitor, mode)           # validate early
        self._reset()

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0
        self._mode = None

    def _is_improvement(self, value, reference) -> bool:
        if reference is None:
            return True
        if self._mode == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        if self._mode is None:
            self._mode = _resolve_mode("EarlyStopping", self.monitor, self.mode, self.model)
        current = self._monitor_value(logs, "not stopping early")
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self._require_model("get_weights")
            self.best_weights = self.model.get_weights()   # the first weights seen are best
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")
            self._require_model("set_weights")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(_MonitorMixin, Callback):
    """Save the model (``model.save(path)``) or its weights (``model.save_weights(path)``)
    after every epoch, or every ``save_freq`` batches.

    ``filepath`` may hold ``str.format`` placeholders filled from ``epoch`` (counted from 1)
    and the logs: ``"ckpt-{epoch:02d}-{val_loss:.2f}.convkit"``. The extension picks the
    format as in ``model.save``: ``.keras`` / ``.h5`` (``.weights.h5`` with
    ``save_weights_only=True``) write files Keras opens, anything else convkit's archive
    (with optimizer state, for resuming). With ``save_best_only=True`` it
    saves only when ``monitor`` beats the best value so far (strictly; ``mode`` as in
    :class:`EarlyStopping`; ``initial_value_threshold`` is the value to beat at first).
    Missing directories are created.
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch",
                 initial_value_threshold=None):
        super().__init__()
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        if self.save_weights_only and self.filepath.lower().endswith(".keras"):
            raise ConvkitError(f"ModelCheckpoint: {self.filepath!r} ends in .keras, Keras's "
                               f"name for a whole model; with save_weights_only=True use "
                               f".weights.h5 (or .convkit)")
        self.mode = mode
        if save_freq != "epoch" and not (isinstance(save_freq, int) and save_freq > 0):
            raise ConvkitError(f"ModelCheckpoint: save_freq must be 'epoch' or a positive "
                               f"number of batches, got {save_freq!r}")
        self.save_freq = save_freq
        self.initial_value_threshold = initial_value_threshold
        _resolve_mode("ModelCheckpoint", monitor, mode)
        self._mode = None
        self.best = None
        self._batches_seen = 0
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self._mode = _resolve_mode("ModelCheckpoint", self.monitor, self.mode, self.model)
        if self.initial_value_threshold is not None:
            self.best = float(self.initial_value_threshold)
        else:
            self.best = math.inf if self._mode == "min" else -math.inf
        self._batches_seen = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq != "epoch":
            self._batches_seen += 1
            if self._batches_seen % self.save_freq == 0:
                self._save(self._epoch, logs, batch=batch)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, logs)

    def _finite(self, logs, epoch) -> bool:
        """False (with a warning, once) when the loss or the monitored value is NaN or
        infinite: a diverged model is never saved, as Keras never counts a NaN monitor as
        an improvement."""
        bad = [key for key in dict.fromkeys(("loss", self.monitor))
               if isinstance((logs or {}).get(key), (int, float, np.number))
               and not math.isfinite(float(logs[key]))]
        if bad and not getattr(self, "_warned_nonfinite", False):
            self._warned_nonfinite = True
            warnings.warn(f"ModelCheckpoint: {', '.join(f'{k}={logs[k]}' for k in bad)} at "
                          f"epoch {epoch + 1}; not saving a diverged model", stacklevel=3)
        return not bad

    def _file_path(self, epoch, logs, batch=None):
        fields = dict(logs or {})
        fields["epoch"] = epoch + 1
        if batch is not None and "batch" not in fields:
            fields["batch"] = batch + 1
        try:
            return self.filepath.format(**fields)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConvkitError(f"ModelCheckpoint: cannot fill in the file path "
                               f"{self.filepath!r} from epoch and logs "
                               f"({', '.join(fields)}): {exc!r}") from None

    def _save(self, epoch, logs, batch=None):
        if self._mode is None:                      # used without on_train_begin
            self.on_train_begin()
        if not self._finite(logs, epoch):
            return
        if self.save_best_only:
            current = self._monitor_value(logs, "not saving")
            if current is None:
                return
            better = current < self.best if self._mode == "min" else current > self.best
            if not better:
                if self.verbose > 0:
                    print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from "
                          f"{self.best:.5f}")
                return
            path = self._file_path(epoch, logs, batch)
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to "
                      f"{current:.5f}, saving model to {path}")
            self.best = current
        else:
            path = self._file_path(epoch, logs, batch)
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: saving model to {path}")
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        if self.save_weights_only:
            self._require_model("save_weights")
            self.model.save_weights(path)
        else:
            self._require_model("save")
            self.model.save(path)


class ReduceLROnPlateau(_MonitorMixin, Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved (by more
    than ``min_delta``) for ``patience`` epochs; then wait ``cooldown`` epochs before counting
    again; never go below ``min_lr``. Keras's rules; it sets
    ``model.optimizer.learning_rate`` and adds ``learning_rate`` to the epoch's logs.
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        super().__init__()
        if not 0 <= factor < 1.0:
            raise ConvkitError(f"ReduceLROnPlateau: factor must be in [0, 1), got {factor!r}")
        self.monitor = monitor
        self.factor = float(factor)
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = mode
        self.min_delta = float(min_delta)
        self.cooldown = int(cooldown)
        self.min_lr = float(min_lr)
        _resolve_mode("ReduceLROnPlateau", monitor, mode)
        self._reset()

    def _reset(self):
        self._mode = None
        self.best = None
        self.wait = 0
        self.cooldown_counter = 0

    def _better(self, current) -> bool:
        if self._mode == "min":
            return current < self.best - self.min_delta
        return current > self.best + self.min_delta

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        self._require_model("optimizer")
        if self._mode is None:
            self._mode = _resolve_mode("ReduceLROnPlateau", self.monitor, self.mode, self.model)
            self.best = math.inf if self._mode == "min" else -math.inf
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)
        current = self._monitor_value(logs, "not changing the learning rate")
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._better(current):
            self.best = current
            self.wait = 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = float(self.model.optimizer.learning_rate)
                if old_lr > np.float32(self.min_lr):
                    new_lr = max(old_lr * self.factor, self.min_lr)
                    self.model.optimizer.learning_rate = new_lr
                    if self.verbose > 0:
                        print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate "
                              f"to {new_lr}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class LearningRateScheduler(Callback):
    """At the start of every epoch set the learning rate to ``schedule(epoch, lr)``
    (``epoch`` from 0, ``lr`` the current rate); a one-argument ``schedule(epoch)`` works
    too. Adds ``learning_rate`` to the epoch's logs.

        >>> halve_after_10 = LearningRateScheduler(lambda epoch, lr: lr if epoch < 10 else lr / 2)
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise ConvkitError(f"LearningRateScheduler: schedule must be callable, got "
                               f"{schedule!r}")
        self.schedule = schedule
        self.verbose = verbose
        self._two_args = self._takes_two_args(schedule)

    @staticmethod
    def _takes_two_args(fn) -> bool:
        try:
            parameters = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            return True
        positional = [p for p in parameters
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        variadic = any(p.kind == p.VAR_POSITIONAL for p in parameters)
        return variadic or len(positional) >= 2

    def on_epoch_begin(self, epoch, logs=None):
        self._require_model("optimizer")
        lr = float(self.model.optimizer.learning_rate)
        new_lr = self.schedule(epoch, lr) if self._two_args else self.schedule(epoch)
        if isinstance(new_lr, (bool, np.bool_)) or not isinstance(
                new_lr, (int, float, np.integer, np.floating)):
            raise ConvkitError(f"LearningRateScheduler: the schedule must return a number, got "
                               f"{new_lr!r} for epoch {epoch}")
        if not math.isfinite(float(new_lr)) or new_lr < 0:
            raise ConvkitError(f"LearningRateScheduler: the schedule returned {new_lr!r} for "
                               f"epoch {epoch}; a learning rate is a finite number >= 0")
        self.model.optimizer.learning_rate = float(new_lr)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to "
                  f"{float(new_lr)}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


class CSVLogger(Callback):
    """Write one row per epoch to a CSV file: ``epoch`` (from 0) then the logs' keys in sorted
    order (the ``val_`` columns are reserved from the first row on, so a first epoch without
    validation still gets them; missing values are written as ``NA``). ``append=True`` adds
    to an existing file, writing the header only if the file was empty.

    The file is rewritten atomically after every epoch (a temporary file moved over it, see
    :func:`convkit.io.archive.atomic_writer`): a reader, or a crash in the middle of a write,
    only ever sees the complete log up to some epoch, never half a row. Until the first epoch
    ends an existing file is left as it was.
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = bool(append)
        self.keys = None
        self.writer = None
        self.csv_file = None            # kept for Keras compatibility; no file stays open
        self.append_header = True
        self._previous = ""             # what the file held before this run (append=True)
        self._text = None               # this run's header and rows so far

    def on_train_begin(self, logs=None):
        self._previous = ""
        self.append_header = True
        if self.append and os.path.exists(self.filename):
            with open(self.filename, encoding="utf-8", newline="") as existing:
                self._previous = existing.read()
            if self._previous and not self._previous.endswith("\n"):
                self._previous += "\n"           # a cut-off last line stays on its own line
            self.append_header = not self._previous.strip()
        self._text = io.StringIO()
        self.writer = None
        self.keys = None

    @staticmethod
    def _cell(value):
        if isinstance(value, str):
            return value
        array = np.asarray(value)
        if array.ndim:
            return "[" + ", ".join(str(v) for v in array.ravel().tolist()) + "]"
        return array.item() if hasattr(array, "item") else value

    def on_epoch_end(self, epoch, logs=None):
        from .io.archive import atomic_writer
        logs = logs or {}
        if self._text is None:
            self.on_train_begin()
        if self.keys is None:
            self.keys = sorted(logs)
            if not any(key.startswith("val_") for key in self.keys):
                self.keys += ["val_" + key for key in self.keys]
        if self.writer is None:
            self.writer = csv.DictWriter(self._text, fieldnames=["epoch"] + self.keys,
                                         delimiter=self.sep, extrasaction="ignore",
                                         lineterminator="\n")
            if self.append_header:
                self.writer.writeheader()
        row = {"epoch": epoch}
        row.update((key, self._cell(logs.get(key, "NA"))) for key in self.keys)
        self.writer.writerow(row)
        directory = os.path.dirname(self.filename)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with atomic_writer(self.filename, "w", encoding="utf-8", newline="") as handle:
            handle.write(self._previous + self._text.getvalue())

    def on_train_end(self, logs=None):
        self._text = None
        self.writer = None


class LambdaCallback(Callback):
    """A callback from plain functions, one per hook::

        LambdaCallback(on_epoch_end=lambda epoch, logs: print(epoch, logs["loss"]),
                       on_train_end=lambda logs: print("done"))

    Any hook name is accepted as a keyword (``on_test_end=...``, ``on_predict_batch_end=...``);
    the functions take the hook's arguments (``epoch``/``batch`` and ``logs``, or ``logs``).
    """

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None, on_train_batch_begin=None, on_train_batch_end=None,
                 **kwargs):
        super().__init__()
        unknown = sorted(set(kwargs) - set(_HOOKS))
        if unknown:
            raise ConvkitError(f"LambdaCallback: unknown hook(s) {', '.join(unknown)}; hooks "
                               f"are {', '.join(_HOOKS)}")
        hooks = dict(kwargs, on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                     on_train_begin=on_train_begin, on_train_end=on_train_end,
                     on_train_batch_begin=on_train_batch_begin,
                     on_train_batch_end=on_train_batch_end)
        for name, fn in hooks.items():
            if fn is None:
                continue
            if not callable(fn):
                raise ConvkitError(f"LambdaCallback: {name} must be callable, got {fn!r}")
            setattr(self, name, fn)


class TerminateOnNaN(Callback):
    """Stop training as soon as a batch's ``loss`` is NaN or infinite."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            print(f"Batch {batch}: invalid loss, terminating training", file=sys.stdout)
            self.model.stop_training = True


class DivergenceWarning(RuntimeWarning):
    """Training is diverging: the loss grew by orders of magnitude or weights exploded."""


class DivergenceMonitor(Callback):
    """Warn once per ``fit`` when training diverges, instead of running every epoch on
    nonsense: ``fit`` adds one to its callbacks unless the list already has one.

    Diverging means any of: a batch loss above ``factor`` times the smallest batch loss
    seen so far (at least ``factor * 1e-3``); a weight that is NaN or infinite; or the
    largest absolute weight above ``factor`` times its value when training began (at least
    ``factor``). Weights are checked every ``check_every`` batches and at each epoch's
    end. Nothing is stopped (use :class:`TerminateOnNaN` or a lower learning rate)::

        with warnings.catch_warnings():
            warnings.simplefilter("error", DivergenceWarning)    # make it fatal
            model.fit(x, y, epochs=10)
    """

    def __init__(self, factor: float = 1e3, check_every: int = 20):
        super().__init__()
        self.factor = float(factor)
        self.check_every = int(check_every)
        self.warned = False
        self._min_loss = math.inf
        self._start_scale = None

    def _largest_weight(self) -> float:
        largest = 0.0
        for weight in getattr(self.model, "trainable_weights", None) or []:
            value = weight.value if hasattr(weight, "value") else weight
            if value.size:
                current = float(np.max(np.abs(value)))
                if not math.isfinite(current):            # NaN would lose every max()
                    return math.inf
                largest = max(largest, current)
        return largest

    def _warn(self, reason: str) -> None:
        if not self.warned:
            self.warned = True
            warnings.warn(f"fit: training is diverging: {reason}; lower the learning rate "
                          f"(or clip gradients with clipnorm=...)", DivergenceWarning,
                          stacklevel=4)

    def on_train_begin(self, logs=None):
        self.warned = False
        self._min_loss = math.inf
        self._start_scale = self._largest_weight()

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and math.isfinite(float(loss)):
            loss = float(loss)
            floor = max(self._min_loss, 1e-3)
            if math.isfinite(self._min_loss) and loss > self.factor * floor:
                self._warn(f"the loss rose from {self._min_loss:.4g} to {loss:.4g}")
            self._min_loss = min(self._min_loss, loss)
        if self.check_every > 0 and (batch + 1) % self.check_every == 0:
            self._check_weights()

    def on_epoch_end(self, epoch, logs=None):
        self._check_weights()

    def _check_weights(self) -> None:
        if self.warned or self._start_scale is None:
            return
        largest = self._largest_weight()
        if not math.isfinite(largest):
            self._warn("a weight became NaN or infinite")
        elif largest > self.factor * max(self._start_scale, 1.0):
            self._warn(f"the largest weight grew from {self._start_scale:.3g} to "
                       f"{largest:.3g}")


class ProgressBarLogger(Callback):
    """The callback that prints ``Epoch 3/10`` and drives a :class:`ProgressBar` with the
    running means in ``logs`` (Keras's ``ProgbarLogger``); ``fit`` adds one when
    ``verbose > 0``.

    It reads ``params["verbose"]`` (1 or 2; ``"auto"`` means 1), ``params["epochs"]`` and
    ``params["steps"]`` (batches per epoch, or None). As in Keras 3, ``Epoch k/n`` is printed
    only when there is more than one epoch, and inside ``fit`` the validation pass draws no
    bar of its own (its ``val_`` values appear on the epoch's final line).
    """

    def __init__(self, stream=None):
        super().__init__()
        self.stream = stream
        self.verbose = 1
        self.epochs = 1
        self.target = None
        self.seen = 0
        self.progbar = None
        self._called_in_fit = False

    def set_params(self, params):
        super().set_params(params)
        verbose = params.get("verbose", 1)
        self.verbose = 1 if verbose == "auto" else int(verbose)
        self.epochs = params.get("epochs", 1) or 1
        self.target = params.get("steps")

    def _out(self):
        return self.stream if self.stream is not None else sys.stdout

    def _reset(self):
        self.seen = 0
        self.progbar = None

    def _bar(self):
        if self.progbar is None:
            self.progbar = ProgressBar(self.target, verbose=self.verbose, unit="step",
                                       stream=self.stream)
        return self.progbar

    def _update(self, batch, logs):
        self.seen = batch + 1
        bar = self._bar()
        if self.verbose == 1:
            bar.update(self.seen, logs or {})

    def _finalize(self, logs):
        bar = self._bar()
        if bar.target is None:
            bar.target = self.seen
        bar.finish(logs or {})

    def on_train_begin(self, logs=None):
        self._called_in_fit = True

    def on_train_end(self, logs=None):
        self._called_in_fit = False

    def on_epoch_begin(self, epoch, logs=None):
        self._reset()
        if self.verbose and self.epochs > 1:
            out = self._out()
            out.write(f"Epoch {epoch + 1}/{self.epochs}\n")
            if hasattr(out, "flush"):
                out.flush()

    def on_train_batch_end(self, batch, logs=None):
        self._update(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.verbose:
            self._finalize(logs)

    def on_test_begin(self, logs=None):
        if not self._called_in_fit:
            self._reset()

    def on_test_batch_end(self, batch, logs=None):
        if not self._called_in_fit:
            self._update(batch, logs)

    def on_test_end(self, logs=None):
        if not self._called_in_fit and self.verbose:
            self._finalize(logs)

    def on_predict_begin(self, logs=None):
        self._reset()

    def on_predict_batch_end(self, batch, logs=None):
        self._update(batch, None)

    def on_predict_end(self, logs=None):
        if self.verbose:
            self._finalize(None)
