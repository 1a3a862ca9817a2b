"""The first run: the NumPy code serves while a fast path's kernels compile in the
background, and a slow compile shows a one-line notice."""
import time

import numpy as np
import pytest

from convkit import ops
from convkit.fast import dispatch
from convkit.fast.runtime import compiling


@pytest.fixture
def background(monkeypatch, need_accel):
    monkeypatch.setattr(compiling, "_mode", "background")
    monkeypatch.setattr(compiling, "_ready", set())
    monkeypatch.setattr(compiling, "_pending", set())
    monkeypatch.setattr(compiling, "_shown", True)          # no notice in these tests
    yield
    assert compiling.wait_idle(timeout=60)


def test_numpy_serves_until_the_background_run_has_compiled_the_path(rng, background):
    x = rng.standard_normal((2, 9, 9, 16)).astype(np.float32)
    k = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
    geo_args = (x, k)
    s = ops.conv._setup("conv2d", *geo_args, 1, "same", 1, 1, "zeros", "channels_last")
    assert dispatch.lookup("conv2d", "forward", s, None, False) is None   # queued
    assert compiling.wait_idle(timeout=60)
    fast = dispatch.lookup("conv2d", "forward", s, None, False)
    assert fast is not None
    np.testing.assert_allclose(fast(s, None, False), ops.conv2d(x, k, padding="same"),
                               rtol=1e-4, atol=1e-4)


def test_results_match_the_reference_on_either_side_of_the_switch(rng, background):
    x = rng.standard_normal((3, 8, 8, 4)).astype(np.float32)
    results = [ops.max_pool2d(x, 2)]                           # NumPy while compiling
    assert compiling.wait_idle(timeout=60)
    results.append(ops.max_pool2d(x, 2))                       # the compiled kernel
    np.testing.assert_array_equal(results[0], results[1])


def test_wait_mode_serves_the_fast_path_at_once(rng, monkeypatch, need_accel):
    monkeypatch.setattr(compiling, "_mode", "wait")
    monkeypatch.setattr(compiling, "_ready", set())
    x = rng.standard_normal((3, 8, 8, 4)).astype(np.float32)
    geo = ops.pool._setup("max_pool2d", x, 2, None, "valid", 1, False, "channels_last")[2]
    assert dispatch.lookup("max_pool2d", "forward", x, geo) is not None


def test_a_slow_compile_shows_the_notice_once(capsys, monkeypatch):
    monkeypatch.setattr(compiling, "_shown", False)
    monkeypatch.setattr(compiling, "_compiled", set())
    monkeypatch.setattr(compiling, "NOTICE_AFTER_S", 0.05)

    class Slow:
        def compile(self, sig):
            time.sleep(0.2)
            return sig
    slow = compiling.notice_on_compile(Slow())
    assert slow.compile("f4") == "f4" and slow.compile("f8") == "f8"
    err = capsys.readouterr().err
    assert err.count("convkit: compiling kernels (first run only)") == 1


def test_a_fast_compile_shows_nothing(capsys, monkeypatch):
    monkeypatch.setattr(compiling, "_shown", False)

    class Quick:
        def compile(self, sig):
            return sig
    compiling.notice_on_compile(Quick()).compile("f4")
    time.sleep(compiling.NOTICE_AFTER_S + 0.1)
    assert capsys.readouterr().err == ""


def test_compile_mode_is_checked():
    from convkit.errors import ConvkitError
    with pytest.raises(ConvkitError, match="set_compile_mode: mode must be one of"):
        compiling.set_compile_mode("later")


def _fresh_queue(monkeypatch, registered):
    import queue
    monkeypatch.setattr(compiling, "_mode", "background")
    monkeypatch.setattr(compiling, "_ready", set())
    monkeypatch.setattr(compiling, "_pending", set())
    monkeypatch.setattr(compiling, "_shown", True)
    monkeypatch.setattr(compiling, "_jobs", queue.Queue())
    monkeypatch.setattr(compiling, "_worker", None)
    monkeypatch.setattr(compiling.atexit, "register", registered.append)


def test_exit_lets_the_running_compile_finish_and_drops_the_queue(monkeypatch):
    registered, ran = [], []
    _fresh_queue(monkeypatch, registered)

    def slow():
        time.sleep(0.3)
        ran.append("slow")
    assert not compiling.ready("slow", slow)
    time.sleep(0.05)                                  # the thread has taken it
    assert not compiling.ready("queued", lambda: ran.append("queued"))
    assert registered == [compiling._finish_at_exit]  # registered once, at the first start
    compiling._finish_at_exit(timeout=10)
    assert ran == ["slow"] and "slow" in compiling._ready
    assert "queued" not in compiling._ready and not compiling._pending
    assert not compiling._worker.is_alive()


def test_a_process_exiting_mid_compile_waits_for_it(tmp_path):
    import subprocess
    import sys
    done = tmp_path / "done"
    code = (
        "import time, pathlib\n"
        "from convkit.fast.runtime import compiling\n"
        "compiling.set_compile_mode('background')\n"
        "def slow():\n"
        "    time.sleep(0.5)\n"
        f"    pathlib.Path({str(done)!r}).write_text('ok')\n"
        "compiling._cold = True\n"
        "compiling.ready('slow', slow)\n"
        "time.sleep(0.05)\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert done.read_text() == "ok"
