"""The progress bar and its callback, captured in StringIO."""
import io
import re
import subprocess
import sys

import pytest

from convkit import callbacks
from convkit.callbacks import ProgressBarLogger
from convkit.progress import ProgressBar, progress_iter

FINAL_V1 = re.compile(r"^125/125 ━{20} \d+s \d+(us|ms|s)/step - loss: 0\.4210 - "
                      r"accuracy: 0\.8750$")
ANSI = re.compile(r"\x1b\[\d+m")


def drive(bar, steps=125):
    for step in range(1, steps + 1):
        bar.update(step, {"loss": 0.4210, "accuracy": 0.8750})
    bar.finish({"loss": 0.4210, "accuracy": 0.8750})


def test_verbose_0_prints_nothing():
    out = io.StringIO()
    drive(ProgressBar(125, verbose=0, stream=out))
    assert out.getvalue() == ""


def test_verbose_1_log_mode_prints_a_bounded_number_of_lines():
    out = io.StringIO()                                  # not a TTY
    drive(ProgressBar(125, verbose=1, stream=out))
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert 2 <= len(lines) <= 11
    assert FINAL_V1.match(lines[-1]), lines[-1]
    first = lines[0]
    assert re.match(r"^ ?\d+/125 ━+─+ \d+s \d+(us|ms|s)/step - loss: 0\.4210 - "
                    r"accuracy: 0\.8750$", first), first
    # a longer run still prints at most ~10 progress lines
    out = io.StringIO()
    drive(ProgressBar(10000, verbose=1, stream=out), steps=10000)
    assert len(out.getvalue().splitlines()) <= 11


def test_verbose_1_terminal_mode_redraws_one_line():
    out = io.StringIO()
    bar = ProgressBar(125, verbose=1, stream=out, dynamic=True, interval=0)
    bar.update(12, {"loss": 0.4210, "accuracy": 0.8750})
    text = out.getvalue()
    # Keras's terminal look: bold count, green done / grey to-do bar, bold time left
    assert text.startswith("\r\x1b[1m 12/125\x1b[0m \x1b[32m━\x1b[0m\x1b[37m" + "━" * 19)
    assert text.endswith(" - loss: 0.4210 - accuracy: 0.8750")
    drive(bar)
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    final = ANSI.sub("", text.split("\r")[-1].rstrip())
    assert FINAL_V1.match(final), final


def test_verbose_2_one_line_at_finish():
    out = io.StringIO()
    bar = ProgressBar(125, verbose=2, stream=out)
    for step in range(1, 126):
        bar.update(step, {"loss": 0.5})
    assert out.getvalue() == ""
    bar.finish({"loss": 0.5, "val_loss": 0.00001})
    assert re.match(r"^125/125 - \d+s - \d+(us|ms|s)/step - loss: 0\.5000 - "
                    r"val_loss: 1\.0000e-05\n$", out.getvalue()), out.getvalue()


def test_unknown_target():
    out = io.StringIO()
    bar = ProgressBar(None, stream=out)
    bar.update(3, {"loss": 1.0})
    bar.finish()
    assert re.match(r"^      3/Unknown \d+s \d+(us|ms|s)/step - loss: 1\.0000\n$",
                    out.getvalue())


def _fit_with_logger(epochs, verbose, steps=4):
    out = io.StringIO()
    logger = ProgressBarLogger(stream=out)
    cbs = callbacks.CallbackList([logger], epochs=epochs, steps=steps, verbose=verbose)
    cbs.on_train_begin()
    for epoch in range(epochs):
        cbs.on_epoch_begin(epoch)
        for batch in range(steps):
            cbs.on_train_batch_end(batch, {"loss": 1.0 / (batch + 1)})
        cbs.on_test_begin()                                  # validation draws no bar
        cbs.on_test_batch_end(0, {"loss": 9.0})
        cbs.on_test_end({"loss": 9.0})
        cbs.on_epoch_end(epoch, {"loss": 0.5, "val_loss": 0.75})
    cbs.on_train_end()
    return out.getvalue().splitlines()


def test_progress_bar_logger_verbose_1_and_2():
    lines = _fit_with_logger(epochs=3, verbose=1)
    assert [line for line in lines if line.startswith("Epoch")] == \
        ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    finals = [line for line in lines if line.startswith("4/4 ━")]
    assert len(finals) == 3
    assert all(line.endswith("- loss: 0.5000 - val_loss: 0.7500") for line in finals)
    assert not any("9.0000" in line for line in lines)

    lines = _fit_with_logger(epochs=2, verbose=2)
    assert len(lines) == 4 and lines[0] == "Epoch 1/2"
    assert re.match(r"^4/4 - \d+s - \d+(us|ms|s)/step - loss: 0\.5000 - val_loss: 0\.7500$",
                    lines[1])
    # one epoch: no "Epoch 1/1" line (Keras 3)
    assert not any(line.startswith("Epoch") for line in _fit_with_logger(1, 1))


def test_progress_bar_logger_evaluate_outside_fit():
    out = io.StringIO()
    logger = ProgressBarLogger(stream=out)
    logger.set_params({"verbose": 1, "epochs": 1, "steps": 2})
    logger.on_test_begin()
    logger.on_test_batch_end(0, {"loss": 2.0})
    logger.on_test_batch_end(1, {"loss": 1.5})
    logger.on_test_end({"loss": 1.5})
    assert out.getvalue().splitlines()[-1].startswith("2/2 ━━━━━━━━━━━━━━━━━━━━ ")


def test_progress_iter():
    out = io.StringIO()
    assert list(progress_iter(iter(range(5)), desc="load", stream=out)) == list(range(5))
    assert out.getvalue().splitlines()[-1].startswith("load: 5/5 ━")
    out = io.StringIO()
    assert sum(progress_iter(range(4), verbose=0, stream=out)) == 6
    assert out.getvalue() == ""


def test_progress_iter_tqdm():
    pytest.importorskip("tqdm")
    out = io.StringIO()
    assert sum(progress_iter(range(5), desc="tq", stream=out, use_tqdm=True)) == 10
    assert "5/5" in out.getvalue() and "tq" in out.getvalue()


def test_bad_verbose():
    with pytest.raises(ValueError, match="verbose"):
        ProgressBar(10, verbose=3)


def test_time_per_step_leaves_out_the_first_step_as_keras(monkeypatch):
    clock = iter([0.0, 10.0, 12.0])       # start; the first step ends at 10 s; the end at 12 s
    monkeypatch.setattr("convkit.progress.time.monotonic", lambda: next(clock))
    out = io.StringIO()
    bar = ProgressBar(3, verbose=2, stream=out)
    for step in (1, 2, 3):
        bar.update(step)
    bar.finish()
    assert out.getvalue() == "3/3 - 12s - 1s/step\n"     # not 12 s / 3 = 4s/step


def test_the_bar_module_does_not_import_the_callbacks():
    code = ("import sys, convkit.progress\n"
            "print('convkit.callbacks' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "False"
    assert callbacks.ProgressBarLogger.__module__ == "convkit.callbacks"
