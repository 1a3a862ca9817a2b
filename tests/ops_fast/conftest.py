import pytest

from convkit.ops import accel


@pytest.fixture
def need_accel():
    """Skip when the compiled kernels cannot run (numba missing or CONVKIT_ACCEL=0)."""
    if not accel.available():
        pytest.skip("numba is not available")
