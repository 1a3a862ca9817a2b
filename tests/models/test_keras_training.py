"""Keras's training features: several outputs, sample and class weights, datasets and
generators, compile's no-op options, and predict/evaluate on memmaps one batch at a time."""
import math
import tracemalloc

import numpy as np
import pytest

import convkit as ck
from convkit.errors import ConvkitError

L = ck.layers


def _two_output_model(seed=0):
    ck.set_seed(seed)
    a, b = L.Input((6,), name="a"), L.Input((3,), name="b")
    h = L.Dense(8, activation="relu")(L.Concatenate()([a, b]))
    out1 = L.Dense(3, activation="softmax", name="out1")(h)
    out2 = L.Dense(1, name="out2")(h)
    return ck.Model([a, b], [out1, out2])


def _two_output_data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    xa = rng.random((n, 6)).astype(np.float32)
    xb = rng.random((n, 3)).astype(np.float32)
    labels = (xa[:, :3].argmax(axis=1)).astype(np.int64)
    target = xb.sum(axis=1, keepdims=True).astype(np.float32)
    return [xa, xb], [labels, target]


def test_two_outputs_train_with_keras_log_names_and_weighted_loss():
    x, y = _two_output_data()
    model = _two_output_model()
    model.compile(optimizer=ck.optimizers.Adam(0.02),
                  loss=["sparse_categorical_crossentropy", "mse"], loss_weights=[1.0, 0.5],
                  metrics=[["accuracy"], ["mae"]])
    history = model.fit(x, y, batch_size=8, epochs=6, verbose=0, validation_split=0.25)
    assert list(history.history) == ["loss", "out1_accuracy", "out1_loss", "out2_loss",
                                     "out2_mae", "val_loss", "val_out1_accuracy",
                                     "val_out1_loss", "val_out2_loss", "val_out2_mae"]
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.metrics_names == ["loss", "out1_loss", "out2_loss", "out1_accuracy",
                                   "out2_mae"]
    loss, loss1, loss2, accuracy, mae = model.evaluate(x, y, verbose=0)
    assert loss == pytest.approx(loss1 + 0.5 * loss2, rel=1e-6)
    out1, out2 = model.predict(x)
    expected_mae = float(np.mean(np.abs(out2 - y[1])))
    assert mae == pytest.approx(expected_mae, rel=1e-5)
    assert accuracy == pytest.approx(float(np.mean(out1.argmax(axis=1) == y[0])))


def test_losses_and_targets_by_output_name_match_the_list_form():
    x, y = _two_output_data(n=16)
    results = []
    for as_dict in (False, True):
        model = _two_output_model(seed=3)
        loss = {"out1": "sparse_categorical_crossentropy", "out2": "mse"} if as_dict else \
            ["sparse_categorical_crossentropy", "mse"]
        model.compile(optimizer="sgd", loss=loss,
                      loss_weights={"out1": 2.0, "out2": 1.0} if as_dict else [2.0, 1.0])
        targets = {"out1": y[0], "out2": y[1]} if as_dict else y
        model.fit(x, targets, batch_size=4, epochs=1, verbose=0, shuffle=False)
        results.append(model.get_weights())
    for first, second in zip(*results):
        np.testing.assert_array_equal(first, second)
    with pytest.raises(ConvkitError, match="no entry for output"):
        _two_output_model().compile(loss={"out1": "mse"})


def _dense_classifier(seed=0):
    ck.set_seed(seed)
    model = ck.Sequential([L.Input((4,)), L.Dense(3, activation="softmax")])
    model.compile(optimizer=ck.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy",
                  weighted_metrics=["accuracy"])
    return model


def test_sample_weight_is_keras_weighted_sum_over_batch_size(rng):
    x = rng.random((4, 4)).astype(np.float32)
    y = np.array([0, 1, 2, 1])
    # weights (2, 2, 0, 0) on 4 samples = the plain mean over the first two samples
    weighted, plain = _dense_classifier(), _dense_classifier()
    weighted.fit(x, y, sample_weight=np.array([2.0, 2.0, 0.0, 0.0]), batch_size=4, epochs=1,
                 verbose=0, shuffle=False)
    plain.fit(x[:2], y[:2], batch_size=2, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(weighted.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    w = np.array([1.0, 3.0, 0.5, 0.0])
    probs = weighted.predict(x)
    per_sample = -np.log(probs[np.arange(4), y])
    loss, accuracy = weighted.evaluate(x, y, sample_weight=w, verbose=0)
    assert loss == pytest.approx(float(np.sum(per_sample * w) / 4), rel=1e-6)
    hits = (probs.argmax(axis=1) == y).astype(float)
    assert accuracy == pytest.approx(float(np.sum(hits * w) / np.sum(w)), rel=1e-6)


def test_class_weight_equals_the_matching_sample_weight(rng):
    x = rng.random((12, 4)).astype(np.float32)
    y = rng.integers(0, 3, 12)
    by_class, by_sample = _dense_classifier(), _dense_classifier()
    by_class.fit(x, y, class_weight={0: 1.0, 1: 3.0, 2: 0.5}, batch_size=4, epochs=2,
                 verbose=0, shuffle=False)
    by_sample.fit(x, y, sample_weight=np.array([1.0, 3.0, 0.5])[y], batch_size=4, epochs=2,
                  verbose=0, shuffle=False)
    for a, b in zip(by_class.get_weights(), by_sample.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_validation_data_with_sample_weights(rng):
    x = rng.random((10, 4)).astype(np.float32)
    y = rng.integers(0, 3, 10)
    w = rng.random(10)
    model = _dense_classifier()
    history = model.fit(x, y, epochs=1, verbose=0, validation_data=(x, y, w))
    expected = model.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)
    assert history.history["val_loss"][0] == pytest.approx(expected["loss"], rel=1e-6)
    assert history.history["val_accuracy"][0] == pytest.approx(expected["accuracy"])


class _Batches(ck.utils.PyDataset):
    def __init__(self, x, y, batch_size, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size = x, y, batch_size
        self.epochs_ended = 0

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index):
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.x[rows], self.y[rows]

    def on_epoch_end(self):
        self.epochs_ended += 1


def test_pydataset_and_generators_train_like_arrays(rng):
    x = rng.random((24, 4)).astype(np.float32)
    y = rng.integers(0, 3, 24)
    from_arrays, from_dataset, from_generator = (_dense_classifier() for _ in range(3))
    from_arrays.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False)
    dataset = _Batches(x, y, 8)
    history = from_dataset.fit(dataset, epochs=3, verbose=0, validation_data=dataset)
    assert dataset.epochs_ended == 6 and "val_loss" in history.history

    def forever():
        while True:
            for start in range(0, 24, 8):
                yield x[start:start + 8], y[start:start + 8]
    from_generator.fit(forever(), steps_per_epoch=3, epochs=3, verbose=0)
    for a, b, c in zip(from_arrays.get_weights(), from_dataset.get_weights(),
                       from_generator.get_weights()):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(from_dataset.predict(dataset), from_arrays.predict(x))
    assert from_dataset.evaluate(dataset, verbose=0) == \
        pytest.approx(from_arrays.evaluate(x, y, batch_size=8, verbose=0))
    finite = (batch for batch in [(x[:8], y[:8])])
    from_generator.fit(finite, epochs=1, verbose=0)          # runs until the data ends
    with pytest.raises(ConvkitError, match="no more data"):
        from_generator.fit(finite, epochs=1, verbose=0)


def test_compile_accepts_kerass_execution_options_without_changing_anything(rng):
    x = rng.random((16, 4)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    runs = []
    for options in ({}, {"jit_compile": True, "steps_per_execution": 4, "run_eagerly": True,
                         "auto_scale_loss": False}):
        ck.set_seed(5)
        model = ck.Sequential([L.Input((4,)), L.Dense(3, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", **options)
        model.fit(x, y, batch_size=4, epochs=2, verbose=0)
        runs.append(model.get_weights())
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_predict_and_evaluate_on_a_uint8_memmap_use_memory_of_one_batch(tmp_path, rng):
    n = 6000                                    # 4.7 MB of uint8, 18.8 MB as float32
    images = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.uint8,
                                       shape=(n, 28, 28, 1))
    images[:] = rng.integers(0, 256, images.shape, dtype=np.uint8)
    images.flush()
    labels = rng.integers(0, 10, n)
    ck.set_seed(0)
    model = ck.Sequential([L.Input((28, 28, 1)), L.Flatten(),
                           L.Dense(10, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    reopened = np.load(tmp_path / "x.npy", mmap_mode="r")
    tracemalloc.start()
    try:
        probs = model.predict(reopened, batch_size=100)
        _, peak_predict = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        model.evaluate(reopened, labels, batch_size=100, verbose=0)
        _, peak_evaluate = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    whole = n * 28 * 28 * 4                     # what converting everything at once takes
    outputs = probs.nbytes
    assert peak_predict < 2 * outputs + whole / 8, (peak_predict, whole)
    assert peak_evaluate < whole / 8, (peak_evaluate, whole)
    expected = model.predict(np.asarray(reopened[:500], dtype=np.float32), batch_size=100)
    np.testing.assert_array_equal(probs[:500], expected)


def test_two_softmax_outputs_fused_gradients_match_finite_differences(rng):
    ck.set_floatx("float64")
    try:
        ck.set_seed(2)
        inputs = L.Input((4,))
        hidden = L.Dense(5, activation="tanh")(inputs)
        first = L.Dense(3, activation="softmax", name="first")(hidden)
        second = L.Dense(2, activation="softmax", name="second")(hidden)
        model = ck.Model(inputs, [first, second])
        model.compile(loss=["sparse_categorical_crossentropy", "categorical_crossentropy"],
                      loss_weights=[1.0, 0.3])
        assert model._fusable_output_layers() == [model.get_layer("first"),
                                                  model.get_layer("second")]
        x = rng.random((6, 4))
        ys = [rng.integers(0, 3, 6), np.eye(2)[rng.integers(0, 2, 6)]]
        weights = rng.random(6)
        model._loss_and_backward([x], ys, sample_weight=weights)
        analytic = model.grads

        def total_loss():
            return model._test_loss([x], ys, weights)[0]
        eps = 1e-6
        for w, g in zip(model.weights, analytic):
            flat = w.value.reshape(-1)
            for i in range(0, flat.size, 3):
                old = flat[i]
                flat[i] = old + eps
                up = total_loss()
                flat[i] = old - eps
                down = total_loss()
                flat[i] = old
                assert g.reshape(-1)[i] == pytest.approx((up - down) / (2 * eps), abs=1e-7)
    finally:
        ck.set_floatx("float32")


def _build_two_outputs(api):
    layers = api.layers
    a, b = api.Input((6,), name="a"), api.Input((3,), name="b")
    h = layers.Dense(8, activation="relu", name="hidden")(layers.Concatenate(name="cat")([a, b]))
    out1 = layers.Dense(3, activation="softmax", name="out1")(h)
    out2 = layers.Dense(1, name="out2")(h)
    model = api.Model([a, b], [out1, out2])
    model.compile(optimizer="sgd", loss=["sparse_categorical_crossentropy", "mse"],
                  loss_weights=[1.0, 0.5], metrics=[["accuracy"], ["mae"]])
    return model


def test_two_outputs_and_sample_weights_match_keras():
    keras = pytest.importorskip("keras")
    x, y = _two_output_data(n=24, seed=4)
    weights = np.random.default_rng(4).random(24).astype(np.float32)
    ours, theirs = _build_two_outputs(ck), _build_two_outputs(keras)
    for name in ("hidden", "out1", "out2"):
        theirs.get_layer(name).set_weights(ours.get_layer(name).get_weights())
    got = ours.evaluate(x, y, sample_weight=weights, batch_size=24, verbose=0,
                        return_dict=True)
    want = theirs.evaluate(x, y, sample_weight=weights, batch_size=24, verbose=0,
                           return_dict=True)
    assert set(got) == set(want)
    for key in want:
        assert got[key] == pytest.approx(float(want[key]), rel=1e-5, abs=1e-6), key
    # one SGD step with the same weighted loss moves the weights the same way
    ours.train_on_batch(x, y, sample_weight=weights)
    theirs.train_on_batch(x, y, sample_weight=weights)
    for name in ("hidden", "out1", "out2"):
        for a, b in zip(ours.get_layer(name).get_weights(),
                        theirs.get_layer(name).get_weights()):
            np.testing.assert_allclose(a, np.asarray(b), rtol=1e-5, atol=1e-6)


def test_single_output_loss_weight_scales_loss_and_gradient(rng):
    x = rng.random((8, 4)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    plain, weighted = _dense_classifier(), _dense_classifier()
    weighted.compile(optimizer=ck.optimizers.SGD(0.05), loss=["sparse_categorical_crossentropy"],
                     loss_weights=[2.0])
    plain.compile(optimizer=ck.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    assert weighted.evaluate(x, y, verbose=0) == pytest.approx(
        2 * plain.evaluate(x, y, verbose=0), rel=1e-6)
    plain.fit(x, y, batch_size=8, epochs=1, verbose=0)        # rate 0.1 = 2 x 0.05
    weighted.fit(x, y, batch_size=8, epochs=1, verbose=0)
    for a, b in zip(plain.get_weights(), weighted.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
