"""One LocalCluster (2 worker processes, 1 thread each, loopback only) for every test here,
started once and closed at the end; every test is bounded in time."""
import sys
import threading
import traceback

import numpy as np
import pytest

#: seconds any one test may take (generous: a loaded machine runs these several times slower)
TEST_TIME_LIMIT = 300
#: seconds the cluster may take to start, to close, or to get both its workers back
CLUSTER_TIMEOUT = 120


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """Run each test's body in a thread of its own and wait for it at most TEST_TIME_LIMIT
    seconds: a test that hangs (a lost task, a wait on a dead worker) fails alone, with the
    stack where it waits, and the run goes on. Nothing is interrupted: the main thread, the
    one pytest and pytest-xdist's worker run in, only waits."""
    test = pyfuncitem.obj
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    raised = []

    def body():
        try:
            test(**kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread as it is
            raised.append(exc)

    thread = threading.Thread(target=body, name=f"test {pyfuncitem.name}", daemon=True)
    thread.start()
    thread.join(TEST_TIME_LIMIT)
    if thread.is_alive():
        frame = sys._current_frames().get(thread.ident)
        stack = traceback.extract_stack(frame) if frame is not None else []
        where = "".join(traceback.format_list([f for f in stack
                                               if f.filename != threading.__file__]))
        pytest.fail(f"{pyfuncitem.name} still ran after {TEST_TIME_LIMIT} s; it was at:\n"
                    f"{where}", pytrace=False)
    if raised:
        raise raised[0]
    return True


@pytest.fixture(scope="package")
def client():
    pytest.importorskip("dask.array")
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                       silence_logs=40)
    client = distributed.Client(cluster, timeout=CLUSTER_TIMEOUT)
    try:
        client.wait_for_workers(2, timeout=CLUSTER_TIMEOUT)
        yield client
    finally:
        client.close(timeout=CLUSTER_TIMEOUT)
        cluster.close(timeout=CLUSTER_TIMEOUT)


@pytest.fixture
def two_workers(client):
    """The shared client once both workers are up (a test may have killed one)."""
    client.wait_for_workers(2, timeout=CLUSTER_TIMEOUT)
    return client


def small_convnet(dtype="float32", seed=0, optimizer="adam", extra=(), regularizer=None):
    """A convnet without BatchNormalization or Dropout, the same weights for the same seed."""
    import convkit as ck
    L = ck.layers
    ck.set_floatx(dtype)
    ck.set_seed(seed)
    model = ck.Sequential([L.Input((8, 8, 1)),
                           L.Conv2D(4, 3, activation="relu", kernel_regularizer=regularizer),
                           L.MaxPooling2D(2),
                           *extra,
                           L.Flatten(),
                           L.Dense(3, activation="softmax")])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def toy_data(n=160, dtype="float32", seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 8, 8, 1)).astype(dtype)
    y = (x[:, :4].mean(axis=(1, 2, 3)) * 6).astype(int) % 3    # learnable labels
    return x, y
