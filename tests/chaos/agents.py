"""The processes the chaos tests torment: ``python -m tests.chaos.agents KIND TRIALS DIR``.

Each prints one JSON line of counts on stdout when it is done:

``save``        forks a child that saves version 1, 2, 3, ... of a model (every weight equal
                to the version number) to one file in a loop, SIGKILLs it at a random
                moment, and checks that the file loads and holds a single complete version
                (the old one or a newer one); several files at once.
``checkpoint``  the same with a child that trains with ``ModelCheckpoint(save_freq=1)``:
                the file must always load, as the old model or a trained one.
``fit``         Ctrl-C (a real SIGINT from a timer thread) at a random moment of ``fit``:
                the weights must equal those of a reference run after exactly
                ``optimizer.iterations`` steps, and the next ``fit`` and ``predict`` must
                be right.
``predict``     Ctrl-C at a random moment of ``predict``: the next ``predict`` must equal
                the reference.
``evaluate``    Ctrl-C at a random moment of ``evaluate``: the next ``evaluate`` (loss and
                accuracy) and ``predict`` must equal the reference.

Forking keeps every trial free of Python's start-up time.
"""
from __future__ import annotations

import glob
import json
import os
import random
import signal
import sys
import threading
import time
import warnings

import numpy as np


# ------------------------------------------------------------------------------ kill -9
def _save_model(seed=0):
    import convkit as ck
    L = ck.layers
    ck.set_seed(seed)
    model = ck.Sequential([L.Input((32, 32, 3)), L.Conv2D(16, 3), L.Flatten(),
                           L.Dense(32)])                      # 461k weights, 1.8 MB
    model.compile(optimizer="sgd", loss="mse")
    return model


def _fill(model, version: float) -> None:
    for weight in model.weights:
        weight.value[...] = version


def _single_version(path) -> float:
    """The version a saved file holds; raises if it is not loadable or mixes versions."""
    import convkit as ck
    model = ck.load_model(path)
    values = {float(v) for w in model.get_weights() for v in np.unique(w)}
    if len(values) != 1:
        raise AssertionError(f"{path} mixes versions {sorted(values)[:5]}")
    return values.pop()


def _forked(work) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            work()
        finally:
            os._exit(0)
    return pid


def _temps(path) -> list:
    directory, name = os.path.split(path)
    return glob.glob(os.path.join(directory, f".{name}.*.tmp"))


def _kill_trials(paths, trials: int, window: float, seed: int, worker_for, judge) -> dict:
    """Start ``worker_for(path)()`` in a forked child per path, SIGKILL them all at a
    random moment within ``window`` seconds, and let ``judge(path)`` say whether the file
    left is the ``"old"`` or a ``"new"`` model (raising if it is neither); ``trials``
    kills in all."""
    counts = {"kills": 0, "old": 0, "new": 0, "corrupt": 0, "killed_mid_write": 0,
              "errors": []}
    rng = random.Random(seed)
    while counts["kills"] < trials:
        round_paths = paths[:min(len(paths), trials - counts["kills"])]
        children = {path: _forked(worker_for(path)) for path in round_paths}
        time.sleep(rng.uniform(0.0, window))
        for path, pid in children.items():
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            counts["kills"] += 1
            counts["killed_mid_write"] += bool(_temps(path))
            try:
                counts[judge(path)] += 1
            except Exception as exc:  # noqa: BLE001 - any failure to load is corruption
                counts["corrupt"] += 1
                counts["errors"].append(f"{type(exc).__name__}: {exc}"[:200])
    return counts


def kill_during_save(trials: int, directory: str, parallel: int = 5) -> dict:
    model = _save_model()
    paths = [os.path.join(directory, f"model-{i}.convkit") for i in range(parallel)]
    versions = {path: 0.0 for path in paths}
    for path in paths:
        _fill(model, 0.0)
        model.save(path)
    start = time.perf_counter()                 # kills land within ~3 saves, whatever the load
    model.save(os.path.join(directory, "timing.convkit"))
    window = 3 * (time.perf_counter() - start)

    def worker_for(path):
        def work(version=versions[path] + 1):
            while True:
                _fill(model, version)
                model.save(path)
                version += 1
        return work

    def judge(path):
        version = _single_version(path)
        if version < versions[path]:
            raise AssertionError(f"{path} went back from version {versions[path]} to {version}")
        old = version == versions[path]
        versions[path] = version
        return "old" if old else "new"

    counts = _kill_trials(paths, trials, window, 0, worker_for, judge)
    for path in paths:                                  # the next save cleans up
        model.save(path)
    counts["stale_temps_left"] = sum(len(_temps(path)) for path in paths)
    return counts


def kill_during_checkpoint(trials: int, directory: str, parallel: int = 5) -> dict:
    import convkit as ck
    from convkit.io.archive import read_archive
    L = ck.layers
    ck.set_seed(0)
    model = ck.Sequential([L.Input((16, 16, 1)), L.Conv2D(16, 3, activation="relu"),
                           L.Flatten(), L.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng_data = np.random.default_rng(0)
    x = rng_data.random((64, 16, 16, 1), dtype=np.float32)
    y = rng_data.integers(0, 10, 64)
    paths = [os.path.join(directory, f"ckpt-{i}.convkit") for i in range(parallel)]
    for path in paths:
        model.save(path)                                # the old file: untrained
    warm = ck.load_model(paths[0])
    warm.fit(x, y, batch_size=16, epochs=1, verbose=0)  # compile the kernels before forking
    start = time.perf_counter()                 # kills land within ~6 steps, whatever the load
    warm.fit(x, y, batch_size=16, epochs=1, verbose=0,
             callbacks=[ck.callbacks.ModelCheckpoint(os.path.join(directory, "w.convkit"),
                                                     save_freq=1)])
    window = 1.5 * (time.perf_counter() - start)

    def worker_for(path):
        def work():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(x, y, batch_size=16, epochs=10_000, verbose=0,
                          callbacks=[ck.callbacks.ModelCheckpoint(path, save_freq=1)])
        return work

    def judge(path):
        ck.load_model(path)
        _, arrays = read_archive(path)
        return "new" if int(arrays.get("optimizer/iterations", np.array(0))) > 0 else "old"

    return _kill_trials(paths, trials, window, 1, worker_for, judge)


# ------------------------------------------------------------------------------ Ctrl-C
def _interrupt_after(seconds: float) -> threading.Timer:
    """A real Ctrl-C: SIGINT to this process from a timer thread."""
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    return timer


class _Watchdog:
    """Ends the agent with its counts so far (and ``"hung": true``) if one trial takes
    longer than ``seconds``: a call that hangs after an interrupt is a result, not a reason
    to keep the test suite waiting."""

    def __init__(self, counts: dict, seconds: float):
        self.counts, self.seconds, self.timer = counts, seconds, None

    def _fire(self):
        print(json.dumps({**self.counts, "hung": True}), flush=True)
        os._exit(3)

    def trial(self):
        self.stop()
        self.timer = threading.Timer(self.seconds, self._fire)
        self.timer.daemon = True
        self.timer.start()

    def stop(self):
        if self.timer is not None:
            self.timer.cancel()


def _interrupted(call, seconds) -> bool:
    # the timer starts inside the try: a signal due at once can land right after start()
    timer = None
    interrupted = False
    try:
        timer = _interrupt_after(seconds)
        call()
        timer.join()                      # a signal that came late still has to land
        time.sleep(0.01)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if timer is not None:
            timer.cancel()
            timer.join()                  # a fired timer's signal lands here, not later
    return interrupted


def _fit_model():
    import convkit as ck
    L = ck.layers
    ck.set_seed(0)
    model = ck.Sequential([L.Input((12, 12, 2)), L.Conv2D(8, 3, activation="relu"),
                           L.BatchNormalization(), L.MaxPooling2D(2), L.Flatten(),
                           L.Dense(4, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def _snapshot(model) -> list:
    state = model.optimizer.get_state() if model.optimizer is not None else {}
    return [w.copy() for w in model.get_weights()] + \
        [np.asarray(v).copy() for _, v in sorted(state.items())]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y)
                                    for x, y in zip(a, b))


def interrupt_fit(trials: int, directory: str) -> dict:
    """One batch per epoch and no shuffling, so step k+1 depends only on step k's state:
    the reference is one uninterrupted run, recorded after every step."""
    import convkit as ck
    rng_data = np.random.default_rng(0)
    x = rng_data.random((48, 12, 12, 2), dtype=np.float32)
    y = rng_data.integers(0, 4, 48)
    steps = 40                  # interrupts come within the time of 12: fit rarely finishes
    reference = _fit_model()
    snapshots = [_snapshot(reference)]
    record = ck.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: snapshots.append(_snapshot(reference)))
    reference.fit(x, y, batch_size=48, epochs=steps, shuffle=False, verbose=0,
                  callbacks=[record])
    start = time.perf_counter()                       # a warm run: how long 12 steps take
    _fit_model().fit(x, y, batch_size=48, epochs=12, shuffle=False, verbose=0)
    duration = time.perf_counter() - start
    probe = rng_data.random((5, 12, 12, 2), dtype=np.float32)
    counts = {"trials": 0, "interrupted": 0, "at_a_completed_step": 0, "mid_step": 0,
              "next_fit_right": 0, "next_predict_right": 0, "steps_seen": []}
    rng = random.Random(2)
    watchdog = _Watchdog(counts, 30 + 20 * duration)
    for _ in range(trials):
        watchdog.trial()
        model = _fit_model()
        counts["trials"] += 1
        interrupted = _interrupted(
            lambda: model.fit(x, y, batch_size=48, epochs=steps, shuffle=False, verbose=0),
            rng.uniform(0.0, duration))
        counts["interrupted"] += interrupted
        done = model.optimizer.iterations
        if done < len(snapshots) and _same(_snapshot(model), snapshots[done]):
            counts["at_a_completed_step"] += 1
        else:
            counts["mid_step"] += 1
            continue
        counts["steps_seen"].append(done)
        if done < steps:                                   # one more step, uninterrupted
            model.fit(x, y, batch_size=48, epochs=1, shuffle=False, verbose=0)
            counts["next_fit_right"] += _same(_snapshot(model), snapshots[done + 1])
            done += 1
        else:
            counts["next_fit_right"] += 1
        want = _predict_with(snapshots[done], probe)
        counts["next_predict_right"] += bool(np.allclose(model.predict(probe, verbose=0),
                                                         want, rtol=1e-5, atol=1e-6))
    watchdog.stop()
    counts["steps_seen"] = sorted(set(counts["steps_seen"]))
    return counts


def _predict_with(snapshot, x):
    model = _fit_model()
    n = len(model.get_weights())
    model.set_weights(snapshot[:n])
    return model.predict(x, verbose=0)


def interrupt_predict(trials: int, directory: str) -> dict:
    import convkit as ck
    L = ck.layers
    ck.set_seed(1)
    model = ck.Sequential([L.Input((24, 24, 3)), L.Conv2D(16, 3, activation="relu"),
                           L.Conv2D(16, 3, activation="relu"), L.GlobalAveragePooling2D(),
                           L.Dense(10, activation="softmax")])
    x = np.random.default_rng(3).random((96, 24, 24, 3), dtype=np.float32)
    want = model.predict(x, batch_size=16, verbose=0)
    start = time.perf_counter()
    model.predict(x, batch_size=16, verbose=0)
    duration = time.perf_counter() - start
    small = x[:2]
    want_small = want[:2]

    def close(batch, expected) -> bool:
        return bool(np.allclose(model.predict(batch, batch_size=16, verbose=0), expected,
                                rtol=1e-5, atol=1e-6))
    return _interrupt_trials(lambda: model.predict(x, batch_size=16, verbose=0),
                             {"next_small_right": lambda: close(small, want_small),
                              "next_right": lambda: close(x, want)},
                             duration, trials, seed=4)


def interrupt_evaluate(trials: int, directory: str) -> dict:
    """Ctrl-C at a random moment of ``evaluate`` (its batches, the metrics' updates, the
    ops' threads): the next ``evaluate`` must give the uninterrupted run's loss and
    accuracy, and ``predict`` its outputs."""
    model = _fit_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    rng_data = np.random.default_rng(5)
    x = rng_data.random((160, 12, 12, 2), dtype=np.float32)
    y = rng_data.integers(0, 4, 160)
    want = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    want_outputs = model.predict(x[:8], verbose=0)
    start = time.perf_counter()
    model.evaluate(x, y, batch_size=16, verbose=0)
    duration = time.perf_counter() - start

    def same_logs() -> bool:
        got = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
        return got.keys() == want.keys() and all(
            np.isclose(got[k], want[k], rtol=1e-6) for k in want)
    return _interrupt_trials(
        lambda: model.evaluate(x, y, batch_size=16, verbose=0),
        {"next_right": same_logs,
         "next_predict_right": lambda: bool(np.allclose(
             model.predict(x[:8], verbose=0), want_outputs, rtol=1e-5, atol=1e-6))},
        duration, trials, seed=6)


def _interrupt_trials(call, checks: dict, duration: float, trials: int, seed: int) -> dict:
    """``trials`` times: a Ctrl-C at a random moment within ``duration`` of ``call()``,
    then every check of ``checks`` (``{count name: () -> bool}``, in order). Counts the
    trials, the calls interrupted, each check's successes, and in ``"errors"`` whatever
    the interrupted call or a check raised."""
    counts = {"trials": 0, "interrupted": 0, **{name: 0 for name in checks}, "errors": []}
    rng = random.Random(seed)
    watchdog = _Watchdog(counts, 20 + 20 * duration)
    for _ in range(trials):
        watchdog.trial()
        counts["trials"] += 1
        try:
            counts["interrupted"] += _interrupted(call, rng.uniform(0.0, duration))
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - counted
            counts["errors"].append(f"interrupted call: {type(exc).__name__}: {exc}"[:200])
        for name, check in checks.items():
            try:
                counts[name] += bool(check())
            except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - counted
                counts["errors"].append(f"{name}: {type(exc).__name__}: {exc}"[:200])
    watchdog.stop()
    return counts


KINDS = {"save": kill_during_save, "checkpoint": kill_during_checkpoint,
         "fit": interrupt_fit, "predict": interrupt_predict, "evaluate": interrupt_evaluate}


if __name__ == "__main__":
    kind, trials, directory = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    print(json.dumps(KINDS[kind](trials, directory)), flush=True)
