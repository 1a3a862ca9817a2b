"""Every test in tests/ops runs twice: on the plain NumPy ops (the reference code) and on the
default ``"auto"`` backend, which dispatches to the compiled kernels (when numba is
installed) and the threaded matrix products."""
import pytest

from convkit.fast import kernels as accel


@pytest.fixture(params=["numpy", "auto"], autouse=True)
def backend(request):
    with accel.use_backend(request.param):
        yield request.param


@pytest.fixture(autouse=True)
def _threads_even_for_small_work(monkeypatch):
    """The kernels' chunking over threads is tested on small arrays too: the calling thread
    takes small work alone only outside these tests."""
    from convkit.fast.runtime import backend as fast_backend
    monkeypatch.setattr(fast_backend, "SMALL_WORK_BYTES", 0)
