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
