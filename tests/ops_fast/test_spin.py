"""The thread pool's spin-waits (convkit.fast.runtime.spin) and the BLAS limit's fast path."""
import threading
import time

import numpy as np
import pytest

from convkit.fast.runtime import threads as _threads
from convkit.fast import kernels as accel
from convkit.fast.runtime import spin

needs_spin = pytest.mark.skipif(not spin.usable(), reason="requires numba (the spin kernels)")


@needs_spin
def test_wait_flag_sees_a_set_flag_and_gives_up_on_an_unset_one():
    flags = np.array([3, 7], np.int64)
    assert spin.wait_flag(flags, 0, 3, 0)            # already there: no round needed
    assert spin.wait_flag(flags, 1, 5, 2)            # ">=": a later sequence number counts
    assert not spin.wait_flag(flags, 0, 4, 5)
    assert not spin.wait_flag(flags, 1, 8, 0)


@needs_spin
def test_signal_then_wait_stores_done_then_watches_go():
    flags = np.array([4, 0], np.int64)
    assert spin.signal_then_wait(flags, 9, 4, 3)
    assert flags.tolist() == [4, 9]
    assert not spin.signal_then_wait(flags, 10, 5, 3)
    assert flags.tolist() == [4, 10]


def _rounds_for_seconds(seconds: float) -> int:
    """Rounds of the waiting loop lasting about ``seconds``, from the fastest of several
    timings: one timing (what ``spin.rounds_for`` does) can include a moment when a loaded
    machine took the core away, and then gives far too few rounds."""
    flags = np.zeros(2, np.int64)
    best = float("inf")
    for _ in range(7):
        start = time.perf_counter()
        spin.wait_flag(flags, 0, 1, 20_000)
        best = min(best, time.perf_counter() - start)
    return int(20_000 * seconds / max(best, 1e-7))


@needs_spin
def test_wait_flag_sees_another_threads_store_while_it_spins():
    # the flag is read afresh every round: a load hoisted out of the loop would spin out
    # its whole bound (about 20 s here) and only then see the store; the margins leave room
    # for a machine so loaded that the setting thread waits seconds for a core
    flags = np.zeros(2, np.int64)
    # at least a million rounds (each 32 pauses and a sched_yield, >= 0.4 us): the timed
    # calibration alone can come out short on a loaded machine and end before the store
    rounds = max(_rounds_for_seconds(20.0), 10 ** 6)

    def set_later():
        time.sleep(0.05)
        flags[1] = 1
    setter = threading.Thread(target=set_later)
    start = time.perf_counter()
    setter.start()
    assert spin.wait_flag(flags, 1, 1, rounds)
    elapsed = time.perf_counter() - start
    setter.join()
    assert elapsed < 10.0, elapsed


@needs_spin
def test_spin_releases_the_gil():
    # another Python thread keeps running while one thread spins
    flags = np.zeros(2, np.int64)
    counted = []

    def count():
        deadline = time.perf_counter() + 0.1
        n = 0
        while time.perf_counter() < deadline:
            n += 1
        counted.append(n)
        flags[0] = 1
    other = threading.Thread(target=count)
    other.start()
    assert spin.wait_flag(flags, 0, 1, _rounds_for_seconds(20.0))
    other.join()
    assert counted and counted[0] > 1000


def test_worker_spin_time_from_the_environment(monkeypatch):
    monkeypatch.delenv("CONVKIT_SPIN_US", raising=False)
    assert spin.worker_spin_us() == spin.DEFAULT_WORKER_SPIN_US == 0.0     # off by default
    assert _threads._spin_plan() is None
    monkeypatch.setenv("CONVKIT_SPIN_US", "250")
    assert spin.worker_spin_us() == 250.0
    monkeypatch.setenv("CONVKIT_SPIN_US", "-3")
    assert spin.worker_spin_us() == 0.0
    monkeypatch.setenv("CONVKIT_SPIN_US", "fast")
    assert spin.worker_spin_us() == spin.DEFAULT_WORKER_SPIN_US
    monkeypatch.setenv("CONVKIT_SPIN_US", "0")
    assert _threads._spin_plan() is None
    assert _threads._spin is None               # what the pool thread reads is off too
    monkeypatch.setenv("CONVKIT_SPIN_US", "100")
    assert (_threads._spin_plan() is not None) == spin.usable()
    monkeypatch.setenv("CONVKIT_SPIN_US", "0")  # back to a setting already seen: still off
    assert _threads._spin_plan() is None and _threads._spin is None
    monkeypatch.setenv("CONVKIT_SPIN_US", "100")
    plan = _threads._spin_plan()
    if spin.usable():
        assert plan is not None and plan.worker_rounds > 0
        assert plan.caller_rounds >= plan.worker_rounds     # calibrated by timing
    else:
        assert plan is None
    with accel.use_backend("numpy"):                    # the NumPy ops: no compiled waits
        assert _threads._spin_plan() is None
    assert (_threads._spin_plan() is not None) == spin.usable()
    monkeypatch.setenv("CONVKIT_SPIN_US", "0")
    assert _threads._spin_plan() is None
    assert _threads._spin is None               # what the pool thread reads is off too
    monkeypatch.setenv("CONVKIT_SPIN_US", "100")
    assert (_threads._spin_plan() is not None) == spin.usable()
    monkeypatch.setenv("CONVKIT_SPIN_US", "0")  # back to a setting already seen: still off
    assert _threads._spin_plan() is None and _threads._spin is None


def test_spinning_blocks_turn_the_spin_on_inside_only(monkeypatch):
    monkeypatch.delenv("CONVKIT_SPIN_US", raising=False)
    assert _threads._spin_plan() is None
    with spin.spinning(150):
        assert spin.worker_spin_us() == 150.0
        plan = _threads._spin_plan()
        assert (plan is not None) == spin.usable()
        with spin.spinning(0):                         # nested: the inner block wins
            assert _threads._spin_plan() is None
        assert (_threads._spin_plan() is not None) == spin.usable()
        monkeypatch.setenv("CONVKIT_SPIN_US", "0")     # the environment wins
        assert _threads._spin_plan() is None
        monkeypatch.delenv("CONVKIT_SPIN_US")
    assert spin.worker_spin_us() == 0.0 and _threads._spin_plan() is None
    with pytest.raises(RuntimeError):
        with spin.spinning(100):
            raise RuntimeError("left by an exception")
    assert _threads._spin_plan() is None


def test_inference_spins_and_training_does_not(monkeypatch):
    """predict and model(x) on a batch keep the pool awake between layers; a training step
    does not (its pooling rows slowed other libraries' threads in the benchmark). With the
    fast paths off (``CONVKIT_ACCEL=0``, or no numba) the ops run no threads of their own,
    and nothing spins."""
    import convkit as ck
    from convkit.fast.runtime import backend
    from convkit.models import training
    monkeypatch.delenv("CONVKIT_SPIN_US", raising=False)
    seen = []
    real = spin.spinning

    def spy(us):
        seen.append(us)
        return real(us)
    monkeypatch.setattr(spin, "spinning", spy)
    L = ck.layers
    model = ck.Sequential([L.Input((8, 8, 1)), L.Conv2D(16, 3, activation="relu"),
                           L.Flatten(), L.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((4, 8, 8, 1), np.float32)
    model.fit(x, np.zeros((4, 2), np.float32), epochs=1, verbose=0)
    assert seen == []
    model.predict(x, verbose=0)
    model(x)
    assert seen == ([training.INFERENCE_SPIN_US] * 2 if backend.threaded() else [])
    assert _threads._spin_plan() is None


@pytest.mark.parametrize("spin_us", ["0", "100", "1"])
def test_back_to_back_calls_cover_every_row_once(monkeypatch, spin_us):
    # many calls in a row, with and without spinning, and with a spin so short that the
    # pool thread is mostly asleep on its lock when the next task comes
    monkeypatch.setenv("CONVKIT_NUM_THREADS", "2")
    monkeypatch.setenv("CONVKIT_SPIN_US", spin_us)
    seen = np.zeros((300, 7), int)
    workers = set()
    for call in range(300):
        def work(start, stop, call=call):
            workers.add(threading.current_thread().name)
            seen[call, start:stop] += 1
        _threads.run_chunks(work, 7, single_blas=False)
        if call % 50 == 0:
            time.sleep(0.002)       # longer than the pool thread's spin
    np.testing.assert_array_equal(seen, 1)
    assert len(workers) == 2


@pytest.mark.parametrize("spin_us", ["0", "100"])
def test_errors_reach_the_caller_with_and_without_spinning(monkeypatch, spin_us):
    monkeypatch.setenv("CONVKIT_NUM_THREADS", "2")
    monkeypatch.setenv("CONVKIT_SPIN_US", spin_us)

    def work(start, stop):
        if start > 0:
            raise ValueError(f"chunk {start}")
    for _ in range(3):
        with pytest.raises(ValueError, match="chunk 2"):
            _threads.run_chunks(work, 4)
    out = np.zeros(4)

    def fill(start, stop):
        out[start:stop] = 1
    _threads.run_chunks(fill, 4)                      # the pool still works afterwards
    assert out.tolist() == [1, 1, 1, 1]


def test_blas_limit_sets_one_thread_and_restores_the_count():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not _threads.can_limit_blas():
        pytest.skip("threadpoolctl does not see NumPy's BLAS")

    def blas_threads():
        return sorted({info["num_threads"] for info in threadpoolctl.threadpool_info()
                       if info["user_api"] == "blas"})
    before = blas_threads()
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        assert blas_threads() == [2]
        with _threads.blas_limit(1):
            assert blas_threads() == [1]
            with _threads.blas_limit(1):                # nested: nothing to do
                assert blas_threads() == [1]
            assert blas_threads() == [1]
        assert blas_threads() == [2]
        try:
            with _threads.blas_limit(1):
                raise KeyError("inside")
        except KeyError:
            pass
        assert blas_threads() == [2]                     # restored after an exception too
    assert blas_threads() == before


def test_a_spinning_block_is_its_own_threads(monkeypatch):
    """Another thread's hand-offs do not spin, and two threads' blocks each restore their
    own setting (two predicts at once used to leave the spin on)."""
    import threading
    monkeypatch.delenv("CONVKIT_SPIN_US", raising=False)
    inside, done, seen = threading.Event(), threading.Event(), []

    def other():
        inside.wait(5)
        seen.append(spin.worker_spin_us())
        with spin.spinning(50):
            done.wait(5)
    t = threading.Thread(target=other)
    t.start()
    with spin.spinning(150):
        inside.set()
        assert spin.worker_spin_us() == 150.0
    done.set()
    t.join()
    assert seen == [0.0]
    assert spin.worker_spin_us() == 0.0 and _threads._spin_plan() is None
