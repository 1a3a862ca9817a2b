"""Nonsense gets one clear line: bad CLI numbers, diverging training (a warning, once), a
diverged epoch never checkpointed, and `convkit bench` tied to the package's own checkout."""
import math
import os
import warnings

import numpy as np
import pytest

import convkit as ck
from convkit import cli
from convkit.callbacks import DivergenceMonitor, DivergenceWarning, ModelCheckpoint
from convkit.errors import ConvkitError
from tests.fuzz.crafting import small_convnet, small_data


@pytest.mark.parametrize("argv, fragment", [
    (["--batch-size", "0"], "--batch-size must be a positive"),
    (["--batch-size", "-3"], "--batch-size must be a positive"),
    (["--learning-rate", "nan"], "--learning-rate must be a positive finite"),
    (["--learning-rate", "-1"], "--learning-rate must be a positive finite"),
    (["--learning-rate", "inf"], "--learning-rate must be a positive finite"),
])
def test_train_refuses_bad_numbers_in_one_line(capsys, argv, fragment):
    code = cli.main(["train", "--epochs", "1", "--quiet", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("convkit: error: ")
    assert fragment in err[0]


@pytest.mark.parametrize("make", [
    lambda: ck.optimizers.SGD(learning_rate=float("nan")),
    lambda: ck.optimizers.Adam(learning_rate=-1e-3),
    lambda: ck.optimizers.RMSprop(learning_rate=float("inf")),
    lambda: ck.optimizers.get({"class_name": "AdamW", "config": {"learning_rate": "x"}}),
])
def test_optimizers_refuse_bad_learning_rates(make):
    with pytest.raises(ConvkitError, match="learning_rate"):
        make()


def test_a_schedule_that_gives_a_bad_rate_fails_at_the_first_step():
    w = np.ones(2)
    optimizer = ck.optimizers.SGD(learning_rate=ck.schedules.ExponentialDecay(
        float("nan"), decay_steps=10, decay_rate=0.9))
    with pytest.raises(ConvkitError, match="gave nan at iteration 0"):
        optimizer.apply_gradients([(w, w)])
    np.testing.assert_array_equal(w, 1.0)


def test_file_format_error_is_a_convkit_error_and_a_value_error():
    from convkit.errors import FileFormatError
    assert issubclass(FileFormatError, ConvkitError) and issubclass(FileFormatError, ValueError)


def test_bench_uses_the_package_checkout_not_the_current_directory(tmp_path, monkeypatch):
    trap = tmp_path / "benchmarks"
    trap.mkdir()
    (trap / "run.py").write_text("raise SystemExit('ran a stranger file')\n")
    monkeypatch.chdir(tmp_path)
    root = cli._find_benchmarks()
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(cli.__file__)))
    assert root in (package_root, None) and root != str(tmp_path)


def _fit(model, lr, epochs=2, **kwargs):
    model.optimizer.learning_rate = lr
    x, y = small_data(32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, **kwargs)
    return [w for w in caught if issubclass(w.category, DivergenceWarning)]


def test_a_huge_learning_rate_warns_once():
    model = small_convnet()
    model.compile(optimizer=ck.optimizers.SGD(), loss="sparse_categorical_crossentropy")
    caught = _fit(model, 1e6, epochs=3)
    assert len(caught) == 1 and "diverging" in str(caught[0].message)


def test_normal_training_does_not_warn():
    assert _fit(small_convnet(), 1e-3, epochs=3) == []


def test_the_monitor_sees_a_loss_that_grows_by_orders_of_magnitude():
    monitor = DivergenceMonitor(check_every=0)
    monitor.set_model(small_convnet())
    monitor.on_train_begin()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for batch, loss in enumerate([2.0, 1.0, 0.5, 40.0, 600.0, 1e6]):
            monitor.on_train_batch_end(batch, {"loss": loss})
    assert len(caught) == 1 and "from 0.5 to 600" in str(caught[0].message)


def test_non_finite_weights_warn():
    model = small_convnet()
    monitor = DivergenceMonitor()
    monitor.set_model(model)
    monitor.on_train_begin()
    model.layers[-1]._weight("kernel")[0, 0] = np.nan
    with pytest.warns(DivergenceWarning, match="NaN or infinite"):
        monitor.on_epoch_end(0)


@pytest.mark.parametrize("save_best_only", [False, True])
def test_checkpoint_never_saves_a_non_finite_epoch(tmp_path, save_best_only):
    model = small_convnet()
    path = tmp_path / "ckpt.convkit"
    checkpoint = ModelCheckpoint(str(path), monitor="loss", save_best_only=save_best_only)
    checkpoint.set_model(model)
    checkpoint.on_train_begin()
    with pytest.warns(UserWarning, match="not saving a diverged model"):
        checkpoint.on_epoch_end(0, {"loss": math.inf})
    assert not path.exists()
    checkpoint.on_epoch_end(1, {"loss": float("nan")})         # warned once already
    assert not path.exists()
    checkpoint.on_epoch_end(2, {"loss": 0.5})
    assert path.exists()


def test_checkpoint_in_a_diverging_fit_keeps_the_last_finite_epoch(tmp_path):
    model = small_convnet()
    model.compile(optimizer=ck.optimizers.SGD(learning_rate=0.01),
                  loss="sparse_categorical_crossentropy")
    x, y = small_data(32)
    path = tmp_path / "ckpt-{epoch}.convkit"
    x_bad = x.copy()
    x_bad[5] = np.inf                        # the second epoch's batches hit it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y, batch_size=8, epochs=1, verbose=0,
                  callbacks=[ModelCheckpoint(str(path), monitor="loss")])
        model.fit(x_bad, y, batch_size=32, epochs=3, initial_epoch=1, verbose=0,
                  shuffle=False, callbacks=[ModelCheckpoint(str(path), monitor="loss")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-1.convkit"]
