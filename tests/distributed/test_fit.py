"""convkit.distributed.fit: synchronous data-parallel training equals model.fit (same seed,
same global batch) and keeps callbacks, validation and History (a lost worker:
test_worker_loss.py)."""
import numpy as np
import pytest

import convkit as ck

from .conftest import small_convnet, toy_data

da = pytest.importorskip("dask.array")
ckd = pytest.importorskip("convkit.distributed")


def _max_relative(a, b):
    return max(float(np.max(np.abs(u - v)) / np.max(np.abs(u))) for u, v in zip(a, b))


def _assert_same_history(local, remote, rel):
    assert local.history.keys() == remote.history.keys()
    for key, values in local.history.items():
        assert remote.history[key] == pytest.approx(values, rel=rel, abs=rel), key


class _Counter(ck.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = 0
        self.epochs = []

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(dict(logs))


def test_float64_equals_fit_after_20_steps(two_workers):
    x, y = toy_data(160, dtype="float64")
    local, remote = small_convnet("float64"), small_convnet("float64")
    h_local = local.fit(x, y, batch_size=16, epochs=2, verbose=0,
                        validation_data=(x[:30], y[:30]))
    counter = _Counter()
    h_remote = ckd.fit(remote, da.from_array(x, chunks=40), da.from_array(y, chunks=40),
                       batch_size=16, epochs=2, verbose=0, callbacks=[counter],
                       validation_data=(x[:30], y[:30]), client=two_workers)
    assert counter.batches == 20 and len(counter.epochs) == 2
    assert _max_relative(local.get_weights(), remote.get_weights()) < 1e-10
    _assert_same_history(h_local, h_remote, 1e-10)
    assert remote.history is h_remote
    # the optimizer state moved on the client exactly as in fit: training goes on the same
    local.fit(x, y, batch_size=16, epochs=1, verbose=0)
    ckd.fit(remote, x, y, batch_size=16, epochs=1, verbose=0, client=two_workers)
    assert _max_relative(local.get_weights(), remote.get_weights()) < 1e-10


def test_float32_with_regularizer_and_momentum(two_workers, monkeypatch):
    """The L2 penalty's gradient is added once on the client (added per worker it would be
    counted twice and the weights would drift far beyond 1e-5). The weights are scattered
    here, as for a large model (the float64 test sends them inside a task)."""
    monkeypatch.setattr(ckd, "_INLINE_WEIGHTS_BYTES", 0)
    x, y = toy_data(160)
    opt = lambda: ck.optimizers.SGD(learning_rate=0.1, momentum=0.9)   # noqa: E731
    local = small_convnet(optimizer=opt(), regularizer=ck.regularizers.L2(0.05))
    remote = small_convnet(optimizer=opt(), regularizer=ck.regularizers.L2(0.05))
    h_local = local.fit(x, y, batch_size=16, epochs=2, verbose=0, validation_split=0.25)
    h_remote = ckd.fit(remote, da.from_array(x, chunks=(50, 8, 4, 1)), y, batch_size=16,
                       epochs=2, verbose=0, validation_split=0.25, client=two_workers)
    assert len(h_remote.history["loss"]) == 2 and "val_accuracy" in h_remote.history
    assert _max_relative(local.get_weights(), remote.get_weights()) < 1e-5
    _assert_same_history(h_local, h_remote, 1e-5)


def test_progress_bar_and_dask_validation(two_workers, capsys):
    x, y = toy_data(96)
    model = small_convnet()
    history = ckd.fit(model, x, y, batch_size=32, epochs=1, verbose=1,
                      validation_data=(da.from_array(x[:40], chunks=20), y[:40]),
                      client=two_workers)
    out = capsys.readouterr().out
    assert "3/3" in out and "val_loss" in out
    want = model.evaluate(x[:40], y[:40], batch_size=32, verbose=0, return_dict=True)
    assert history.history["val_loss"][0] == pytest.approx(want["loss"], rel=1e-6)


def test_dropout_and_batchnorm_run_reproducibly(two_workers):
    """With Dropout and BatchNormalization the run is data-parallel, not equal to fit: masks
    come from per-(step, shard) generators and BN normalizes per shard. Two runs agree, and
    the moving statistics move on the client."""
    L = ck.layers
    x, y = toy_data(96)

    def build():
        return small_convnet(extra=[L.BatchNormalization(), L.Dropout(0.3)])

    first, second = build(), build()
    moving_before = first.layers[2].get_weights()[2].copy()
    ckd.fit(first, x, y, batch_size=24, epochs=1, verbose=0, client=two_workers)
    ckd.fit(second, x, y, batch_size=24, epochs=1, verbose=0, client=two_workers)
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(first.layers[2].get_weights()[2], moving_before)


def test_nan_loss_stops_without_applying(two_workers):
    x, y = toy_data(64)
    x[5] = np.nan
    model = small_convnet()
    before = model.get_weights()
    ckd.fit(model, x, y, batch_size=64, epochs=2, verbose=0, shuffle=False,
            client=two_workers)
    assert "the loss became nan" in model.stop_reason
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_bad_arguments(two_workers):
    from convkit.errors import ConvkitError, ShapeError
    model = small_convnet()
    x, y = toy_data(32)
    with pytest.raises(ShapeError, match="same number of samples"):
        ckd.fit(model, x, y[:20], client=two_workers, verbose=0)
    with pytest.raises(ShapeError, match="integer class labels"):
        ckd.fit(model, x, np.full(32, 0.5), client=two_workers, verbose=0)
    with pytest.raises(ConvkitError, match="validation_split must be in"):
        ckd.fit(model, x, y, validation_split=1.5, client=two_workers, verbose=0)
    uncompiled = ck.Sequential([ck.layers.Input((8, 8, 1)), ck.layers.Flatten(),
                                ck.layers.Dense(2)])
    with pytest.raises(ConvkitError, match="must be compiled"):
        ckd.fit(uncompiled, x, y, client=two_workers)


def test_step_bytes():
    model = small_convnet()
    sizes = ckd.step_bytes(model)
    assert sizes == {"weights": (3 * 3 * 4 + 4 + 36 * 3 + 3) * 4,
                     "gradients": (3 * 3 * 4 + 4 + 36 * 3 + 3) * 4}
