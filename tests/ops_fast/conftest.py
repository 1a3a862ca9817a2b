import pytest

from convkit.fast import kernels as accel


@pytest.fixture
def need_accel():
    """Skip when the compiled kernels cannot run (numba missing or CONVKIT_ACCEL=0)."""
    if not accel.available():
        pytest.skip("requires numba (the compiled kernels)")


def pytest_collection_modifyitems(config, items):
    """Every test here is marked ``fast_paths``: the pure NumPy CI step deselects them with
    ``-m "not fast_paths"``."""
    for item in items:
        if "ops_fast" in item.nodeid.split("::")[0]:
            item.add_marker(pytest.mark.fast_paths)


@pytest.fixture(autouse=True)
def _threads_even_for_small_work(monkeypatch):
    """The kernels' chunking over threads is tested on small arrays too: the calling thread
    takes small work alone only outside these tests."""
    from convkit.fast.runtime import backend as fast_backend
    monkeypatch.setattr(fast_backend, "SMALL_WORK_BYTES", 0)
