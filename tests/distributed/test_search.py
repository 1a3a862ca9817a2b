"""convkit.wrappers: scikit-learn estimators (clone, get/set_params, GridSearchCV) and the
search spread over the cluster with joblib's dask backend."""
import numpy as np
import pytest

import convkit as ck

from .conftest import toy_data

sklearn = pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

from convkit.wrappers import ConvkitClassifier, ConvkitRegressor  # noqa: E402


def build_convnet(filters=4, meta=None):
    L = ck.layers
    return ck.Sequential([L.Input(meta["input_shape"]),
                          L.Conv2D(filters, 3, activation="relu"),
                          L.Flatten(),
                          L.Dense(meta["n_outputs"], activation="softmax")])


def build_regressor(units=4, meta=None):
    L = ck.layers
    return ck.Sequential([L.Input(meta["input_shape"]), L.Flatten(),
                          L.Dense(units, activation="relu"), L.Dense(1)])


def test_params_clone_and_routing():
    est = ConvkitClassifier(build_convnet, optimizer="sgd", epochs=2, model__filters=3,
                            optimizer__learning_rate=0.05)
    params = est.get_params()
    assert params["model__filters"] == 3 and params["epochs"] == 2
    twin = clone(est).set_params(model__filters=5, optimizer__momentum=0.9, batch_size=8)
    assert twin.get_params()["model__filters"] == 5 and est.model__filters == 3
    assert twin.batch_size == 8 and twin.optimizer__momentum == 0.9
    x, _ = toy_data(48)
    y = np.arange(48) % 3
    twin.fit(x, np.array(["a", "b", "c"])[y])
    assert twin.model_.layers[0].filters == 5
    assert twin.model_.optimizer.get_config()["momentum"] == 0.9
    assert twin.model_.optimizer.get_config()["learning_rate"] == pytest.approx(0.05)
    assert set(twin.predict(x)) <= {"a", "b", "c"}
    proba = twin.predict_proba(x)
    assert proba.shape == (48, 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert 0.0 <= twin.score(x, np.array(["a", "b", "c"])[y]) <= 1.0
    with pytest.raises(ck.errors.ConvkitError, match="unknown parameter 'filters'"):
        ConvkitClassifier(build_convnet, filters=3)


def test_same_random_state_same_model_and_binary_proba():
    x, y = toy_data(40)
    y = (y > 0).astype(int)

    def one_unit(meta=None):
        L = ck.layers
        return ck.Sequential([L.Input(meta["input_shape"]), L.Flatten(),
                              L.Dense(1, activation="sigmoid")])

    a = ConvkitClassifier(one_unit, epochs=2, random_state=7).fit(x, y)
    b = ConvkitClassifier(one_unit, epochs=2, random_state=7).fit(x, y)
    np.testing.assert_array_equal(a.predict_proba(x), b.predict_proba(x))
    assert a.model_.loss.name == "binary_crossentropy" and a.predict_proba(x).shape == (40, 2)


def test_regressor_fits_a_line():
    rng = np.random.default_rng(0)
    x = rng.random((200, 4, 4, 1)).astype(np.float32)
    y = 3.0 * x.mean(axis=(1, 2, 3)) - 1.0
    reg = ConvkitRegressor(build_regressor, optimizer="adam", epochs=40, batch_size=16,
                           optimizer__learning_rate=0.02, random_state=0).fit(x, y)
    assert reg.predict(x).shape == (200,)
    assert reg.score(x, y) > 0.8


def test_grid_search_on_the_cluster_with_joblib_dask(two_workers):
    """Four settings x 2 folds run as joblib tasks on the cluster's workers."""
    joblib = pytest.importorskip("joblib")
    x, y = toy_data(96)
    search = GridSearchCV(ConvkitClassifier(build_convnet, optimizer="adam", epochs=3,
                                            batch_size=16, random_state=0),
                          {"model__filters": [2, 6], "optimizer__learning_rate": [1e-3, 3e-2]},
                          cv=2, n_jobs=-1)
    def executed(dask_worker):
        return dask_worker.state.executed_count

    before = sum(two_workers.run(executed).values())
    with joblib.parallel_backend("dask"):
        search.fit(x, y)
    assert sum(two_workers.run(executed).values()) - before >= 4 * 2     # settings x folds
    assert len(search.cv_results_["params"]) == 4
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    # the same search in this process gives the same scores (seeded, deterministic)
    local = GridSearchCV(clone(search.estimator), search.param_grid, cv=2, n_jobs=1).fit(x, y)
    np.testing.assert_allclose(search.cv_results_["mean_test_score"],
                               local.cv_results_["mean_test_score"])
    assert search.best_estimator_.predict(x).shape == (96,)
