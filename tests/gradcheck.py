"""Finite-difference gradient checks in float64 along random directions (autograd's idea):
for a scalar ``L(x) = sum(f(x) * g)`` with a fixed random ``g``, the analytic directional
derivative ``<dL/dx, v>`` must match ``(L(x + eps v) - L(x - eps v)) / (2 eps)``."""
import numpy as np


def directional_check(f, x, analytic_grad, g, rng, n_dirs=3, eps=1e-6, rtol=1e-5, atol=1e-8):
    """``f`` maps an array shaped like ``x`` to an output shaped like ``g``;
    ``analytic_grad`` is dL/dx for ``L = sum(f(x) * g)``. Raises AssertionError on mismatch."""
    x = np.asarray(x, dtype=np.float64)
    for _ in range(n_dirs):
        v = rng.standard_normal(x.shape)
        numeric = (np.sum(f(x + eps * v) * g) - np.sum(f(x - eps * v) * g)) / (2 * eps)
        analytic = float(np.sum(analytic_grad * v))
        assert np.isclose(analytic, numeric, rtol=rtol, atol=atol), (
            f"directional derivative mismatch: analytic {analytic!r}, numeric {numeric!r}")


def numeric_grad(f, x, eps=1e-6):
    """Full central-difference gradient of the scalar function ``f`` at ``x`` (small x only)."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        up = f(x)
        x[i] = old - eps
        down = f(x)
        x[i] = old
        grad[i] = (up - down) / (2 * eps)
    return grad
