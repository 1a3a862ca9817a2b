import os

# Real Keras 3 is a test reference here, on JAX's CPU backend; set before anything imports it.
os.environ.setdefault("KERAS_BACKEND", "jax")
# Kernels compile in the caller's thread: which path computed a result never depends on timing.
os.environ.setdefault("CONVKIT_COMPILE", "wait")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# In CI every optional package is installed, so a test skipped for a missing one is a
# failure there: these are the reasons pytest.importorskip and our own requirement skips use.
_MISSING_MARKERS = ("could not import", "No module named", "requires ")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not (os.environ.get("CI") and report.skipped):
        return
    reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else \
        str(report.longrepr)
    if any(marker in reason for marker in _MISSING_MARKERS):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every optional part must be present: {reason}"


def pytest_configure(config):
    # Matplotlib never opens a window in tests.
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


try:
    from hypothesis import settings as _hypothesis_settings
except ImportError:  # pragma: no cover - hypothesis is a dev extra
    pass
else:
    # On a loaded machine one example can take seconds: no per-example deadline, which
    # would otherwise fail a correct test now and then.
    _hypothesis_settings.register_profile("convkit", deadline=None)
    _hypothesis_settings.load_profile("convkit")
