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


def check_vjp(forward, backward, inputs, rng, n_dirs=3, eps=1e-6, rtol=1e-5, atol=1e-8):
    """Check every gradient a backward function returns.

    ``forward(*inputs) -> y``; ``backward(g, *inputs)`` returns one gradient per input
    (``None`` to skip one) for ``L = sum(y * g)``. Each is checked along random directions
    with :func:`directional_check`, after its shape is compared with its input's.
    """
    inputs = [np.asarray(v, dtype=np.float64) for v in inputs]
    g = rng.standard_normal(np.shape(forward(*inputs)))
    grads = backward(g, *inputs)
    assert len(grads) == len(inputs), f"{len(grads)} gradients for {len(inputs)} inputs"
    for index, grad in enumerate(grads):
        if grad is None:
            continue
        assert grad.shape == inputs[index].shape, (
            f"gradient {index} has shape {grad.shape}, input {inputs[index].shape}")

        def partial(value, index=index):
            args = list(inputs)
            args[index] = value
            return forward(*args)

        directional_check(partial, inputs[index], grad, g, rng, n_dirs, eps, rtol, atol)
