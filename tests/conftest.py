import numpy as np
import pytest


def pytest_configure(config):
    # Matplotlib never opens a window in tests.
    import os
    os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def torch():
    """PyTorch as a reference, or skip; limited to the machine's two threads."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(2)
    return torch


@pytest.fixture(autouse=True)
def _float32_default():
    """Every test starts with float32 weights, whatever an earlier test set."""
    from convkit import config
    config.set_floatx("float32")
    yield
    config.set_floatx("float32")
