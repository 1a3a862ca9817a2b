"""One LocalCluster (2 worker processes, 1 thread each, loopback only) for every test here,
started once and closed at the end; every test is bounded in time."""
import _thread
import threading

import numpy as np
import pytest

#: seconds any one test may take
TEST_TIME_LIMIT = 60


@pytest.fixture(autouse=True)
def _time_limit():
    """Interrupt the test (KeyboardInterrupt in the main thread: pytest stops and shows
    where it was waiting) if it runs longer than TEST_TIME_LIMIT seconds."""
    timer = threading.Timer(TEST_TIME_LIMIT, _thread.interrupt_main)
    timer.daemon = True
    timer.start()
    yield
    timer.cancel()


@pytest.fixture(scope="package")
def client():
    pytest.importorskip("dask.array")
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                       silence_logs=40)
    client = distributed.Client(cluster, timeout=30)
    try:
        client.wait_for_workers(2, timeout=30)
        yield client
    finally:
        client.close(timeout=10)
        cluster.close(timeout=10)


@pytest.fixture
def two_workers(client):
    """The shared client once both workers are up (a test may have killed one)."""
    client.wait_for_workers(2, timeout=30)
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
