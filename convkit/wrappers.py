"""scikit-learn estimators around a model-building function, so ``GridSearchCV``,
``RandomizedSearchCV``, ``cross_val_score`` and pipelines can train convkit models, and with
``joblib.parallel_backend("dask")`` spread the fits over a Dask cluster.

    from sklearn.model_selection import GridSearchCV
    from convkit.wrappers import ConvkitClassifier

    def build(filters=8, meta=None):
        L = ck.layers
        return ck.Sequential([L.Input(meta["input_shape"]),
                              L.Conv2D(filters, 3, activation="relu"),
                              L.Flatten(), L.Dense(meta["n_classes"], activation="softmax")])

    search = GridSearchCV(ConvkitClassifier(build, optimizer="adam", epochs=3, random_state=0),
                          {"model__filters": [8, 16], "optimizer__learning_rate": [1e-3, 1e-2]},
                          cv=3)
    with joblib.parallel_backend("dask"):          # needs a distributed.Client
        search.fit(x_train, y_train)               # (N, H, W, C) images, (N,) labels

Parameters are routed by prefix: ``model__name`` goes to the building function,
``optimizer__name`` to the optimizer (built afresh for every fit), ``fit__name`` to
``model.fit`` and ``predict__name`` to ``model.predict``. The building function also gets
any of ``meta`` (``{"input_shape", "n_classes", "classes", "n_outputs"}``), ``optimizer``,
``loss`` and ``metrics`` that it names in its signature. It returns a model; a model that is
not compiled yet is compiled with the estimator's ``optimizer``, ``loss`` and ``metrics``.
"""
from __future__ import annotations

import inspect

import numpy as np

from .errors import ConvkitError, ShapeError

__all__ = ["ConvkitClassifier", "ConvkitRegressor"]

_ROUTES = ("model__", "optimizer__", "fit__", "predict__")


def _require_sklearn():
    try:
        import sklearn.base as base
    except ImportError:
        raise ConvkitError("convkit.wrappers needs scikit-learn; pip install scikit-learn") \
            from None
    return base


_base = _require_sklearn()


class _ConvkitEstimator(_base.BaseEstimator):
    """What the classifier and the regressor share: routing, building, fitting."""

    _default_loss = None

    def __init__(self, model=None, *, optimizer="rmsprop", loss=None, metrics=None,
                 batch_size=32, epochs=1, verbose=0, validation_split=0.0, shuffle=True,
                 callbacks=None, random_state=None, **kwargs):
        self.model = model
        self.optimizer = optimizer
        self.loss = loss
        self.metrics = metrics
        self.batch_size = batch_size
        self.epochs = epochs
        self.verbose = verbose
        self.validation_split = validation_split
        self.shuffle = shuffle
        self.callbacks = callbacks
        self.random_state = random_state
        self._check_routed(kwargs)
        for name, value in kwargs.items():
            setattr(self, name, value)

    # ------------------------------------------------------------------ parameters
    def _check_routed(self, params):
        for name in params:
            if not name.startswith(_ROUTES):
                raise ConvkitError(f"{type(self).__name__}: unknown parameter {name!r}; routed "
                                   f"parameters start with {', '.join(_ROUTES)}")

    def _routed_names(self):
        return sorted(k for k in vars(self) if k.startswith(_ROUTES))

    def get_params(self, deep=True):
        params = super().get_params(deep=False)
        params.update({name: getattr(self, name) for name in self._routed_names()})
        return params

    def set_params(self, **params):
        routed = {k: v for k, v in params.items() if k.startswith(_ROUTES)}
        for name, value in routed.items():
            setattr(self, name, value)
        rest = {k: v for k, v in params.items() if k not in routed}
        if rest:
            super().set_params(**rest)
        return self

    def _routed(self, prefix):
        return {k[len(prefix):]: getattr(self, k) for k in self._routed_names()
                if k.startswith(prefix)}

    # ------------------------------------------------------------------ building
    def _build(self, meta):
        import convkit as ck
        where = f"{type(self).__name__}.fit"
        if self.random_state is not None:
            ck.set_seed(int(self.random_state))
        if callable(self.model) and not hasattr(self.model, "fit"):
            accepted = inspect.signature(self.model).parameters
            takes_all = any(p.kind == p.VAR_KEYWORD for p in accepted.values())
            kwargs = dict(self._routed("model__"))
            offered = {"meta": meta, "optimizer": self.optimizer, "loss": self.loss,
                       "metrics": self.metrics}
            kwargs.update({k: v for k, v in offered.items()
                           if k in accepted or (takes_all and k == "meta")})
            model = self.model(**kwargs)
        elif hasattr(self.model, "fit") and hasattr(self.model, "get_config"):
            from .models.saving import model_from_config
            kind = "Sequential" if type(self.model).__name__ == "Sequential" else "Functional"
            model = model_from_config(self.model.get_config(), kind)   # fresh weights
        else:
            raise ConvkitError(f"{where}: model must be a function returning a convkit model "
                               f"(or a model to copy), got {type(self.model).__name__}")
        if not hasattr(model, "compile"):
            raise ConvkitError(f"{where}: the model function returned "
                               f"{type(model).__name__}, not a convkit model")
        if not model.compiled or self._routed("optimizer__"):
            model.compile(optimizer=self._make_optimizer(), loss=self._loss(model, meta),
                          metrics=self.metrics)
        return model

    def _make_optimizer(self):
        from . import optimizers
        base = optimizers.get(self.optimizer)
        return type(base).from_config({**base.get_config(), **self._routed("optimizer__")})

    def _loss(self, model, meta):
        return self.loss if self.loss is not None else self._default_loss

    def _fit_model(self, x, y, meta):
        self.model_ = self._build(meta)
        kwargs = dict(batch_size=self.batch_size, epochs=self.epochs, verbose=self.verbose,
                      validation_split=self.validation_split, shuffle=self.shuffle,
                      callbacks=list(self.callbacks) if self.callbacks else None)
        kwargs.update(self._routed("fit__"))
        self.history_ = self.model_.fit(x, y, **kwargs).history
        return self

    def _predict_raw(self, x):
        from sklearn.utils.validation import check_is_fitted
        check_is_fitted(self, "model_")
        kwargs = {"batch_size": self.batch_size, "verbose": 0}
        kwargs.update(self._routed("predict__"))
        return np.asarray(self.model_.predict(_as_images(x, type(self).__name__), **kwargs))


def _as_images(x, where):
    try:
        x = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"{where}: X is not an array ({exc})") from None
    if x.ndim < 2:
        raise ShapeError(f"{where}: X must have a sample axis and features, got shape "
                         f"{x.shape}")
    return x


class ConvkitClassifier(_base.ClassifierMixin, _ConvkitEstimator):
    """A scikit-learn classifier training a convkit model (see the module docstring).

    Labels may be any sortable values (``classes_`` keeps them); the model sees their
    positions ``0..n_classes-1``. The default loss is ``sparse_categorical_crossentropy``, or
    ``binary_crossentropy`` when the model ends in one unit (then ``predict_proba`` returns
    ``[1 - p, p]``). ``score`` is accuracy.
    """

    _default_loss = "sparse_categorical_crossentropy"

    def fit(self, X, y):
        x = _as_images(X, "ConvkitClassifier.fit")
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(x):
            raise ShapeError(f"ConvkitClassifier.fit: y must be ({len(x)},) labels, got shape "
                             f"{y.shape}")
        self.classes_, encoded = np.unique(y, return_inverse=True)
        self.n_classes_ = len(self.classes_)
        self.n_features_in_ = int(np.prod(x.shape[1:]))
        meta = {"input_shape": tuple(x.shape[1:]), "n_classes": self.n_classes_,
                "classes": self.classes_, "n_outputs": self.n_classes_}
        return self._fit_model(x, encoded.astype(np.int64), meta)

    def _loss(self, model, meta):
        if self.loss is not None:
            return self.loss
        out = model._output_shapes()[0]
        return "binary_crossentropy" if out[-1] == 1 else self._default_loss

    def predict_proba(self, X):
        """``(N, n_classes)`` class probabilities, columns in ``classes_`` order."""
        probs = self._predict_raw(X)
        if probs.ndim == 2 and probs.shape[1] == 1:
            probs = np.hstack([1.0 - probs, probs])      # (N, 1) -> (N, 2)
        return probs

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class ConvkitRegressor(_base.RegressorMixin, _ConvkitEstimator):
    """A scikit-learn regressor training a convkit model (see the module docstring). The
    default loss is ``mean_squared_error``; ``predict`` returns ``(N,)`` for a one-unit
    output; ``score`` is R²."""

    _default_loss = "mean_squared_error"

    def fit(self, X, y):
        x = _as_images(X, "ConvkitRegressor.fit")
        y = np.asarray(y, dtype=np.float64)
        if len(y) != len(x):
            raise ShapeError(f"ConvkitRegressor.fit: X has {len(x)} samples, y has {len(y)}")
        self.n_features_in_ = int(np.prod(x.shape[1:]))
        outputs = 1 if y.ndim == 1 else int(np.prod(y.shape[1:]))
        meta = {"input_shape": tuple(x.shape[1:]), "n_classes": None, "classes": None,
                "n_outputs": outputs}
        return self._fit_model(x, y, meta)

    def predict(self, X):
        out = self._predict_raw(X)
        return out[:, 0] if out.ndim == 2 and out.shape[1] == 1 else out
