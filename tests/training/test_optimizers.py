"""Optimizers against torch.optim (where Keras and PyTorch formulas coincide) and against a
hand-written Keras reference (where they differ); schedules; state save/restore."""
import json
import math

import numpy as np
import pytest

from convkit import optimizers, schedules
from convkit.errors import ShapeError

# A small quadratic: L = sum(0.5 * a * w**2 + b * w), gradient a * w + b.
A = [np.array([1.0, 2.0, 0.5]), np.array([[3.0, 0.2], [1.0, 0.7]])]
B = [np.array([0.3, -1.0, 2.0]), np.array([[-0.5, 0.1], [0.4, -2.0]])]
W0 = [np.array([1.0, -1.5, 0.8]), np.array([[0.5, 2.0], [-1.0, 0.3]])]


def _grads(weights):
    return [a * w + b for a, w, b in zip(A, weights, B)]


def run_ours(opt, steps, dtype=np.float64, weights=None):
    weights = [w.astype(dtype) for w in W0] if weights is None else weights
    for _ in range(steps):
        opt.apply_gradients(zip(_grads(weights), weights))
    return weights


def run_torch(torch, make, steps):
    params = [torch.tensor(w.copy(), requires_grad=True) for w in W0]
    opt = make(params)
    for _ in range(steps):
        opt.zero_grad()
        loss = sum((0.5 * torch.tensor(a) * p * p + torch.tensor(b) * p).sum()
                   for a, b, p in zip(A, B, params))
        loss.backward()
        opt.step()
    return [p.detach().numpy() for p in params]


TORCH_CASES = [
    ("sgd", lambda: optimizers.SGD(0.1), lambda t, p: t.optim.SGD(p, lr=0.1)),
    ("sgd-momentum", lambda: optimizers.SGD(0.05, momentum=0.9),
     lambda t, p: t.optim.SGD(p, lr=0.05, momentum=0.9)),
    ("sgd-nesterov", lambda: optimizers.SGD(0.05, momentum=0.9, nesterov=True),
     lambda t, p: t.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True)),
    # Adam: Keras adds epsilon to sqrt(v) before the bias correction, PyTorch after, so
    # they coincide only for epsilon = 0
    ("adam", lambda: optimizers.Adam(0.05, epsilon=0.0),
     lambda t, p: t.optim.Adam(p, lr=0.05, eps=0.0)),
    ("adam-amsgrad", lambda: optimizers.Adam(0.05, epsilon=0.0, amsgrad=True),
     lambda t, p: t.optim.Adam(p, lr=0.05, eps=0.0, amsgrad=True)),
    ("adamw", lambda: optimizers.AdamW(0.05, weight_decay=0.1, epsilon=0.0),
     lambda t, p: t.optim.AdamW(p, lr=0.05, weight_decay=0.1, eps=0.0)),
    # RMSprop: Keras puts epsilon inside the square root, PyTorch outside
    ("rmsprop", lambda: optimizers.RMSprop(0.01, epsilon=0.0),
     lambda t, p: t.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=0.0)),
    ("rmsprop-momentum", lambda: optimizers.RMSprop(0.01, momentum=0.5, epsilon=0.0),
     lambda t, p: t.optim.RMSprop(p, lr=0.01, alpha=0.9, momentum=0.5, eps=0.0)),
    ("rmsprop-centered", lambda: optimizers.RMSprop(0.01, centered=True, epsilon=0.0),
     lambda t, p: t.optim.RMSprop(p, lr=0.01, alpha=0.9, centered=True, eps=0.0)),
]


@pytest.mark.torch
@pytest.mark.parametrize("name,ours,theirs", TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
def test_against_torch(torch, name, ours, theirs):
    got = run_ours(ours(), 12)
    expected = run_torch(torch, lambda p: theirs(torch, p), 12)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------ Keras-formula references
def keras_adam_reference(steps, lr=0.001, b1=0.9, b2=0.999, eps=1e-7, wd=None):
    weights = [w.copy() for w in W0]
    m = [np.zeros_like(w) for w in weights]
    v = [np.zeros_like(w) for w in weights]
    for t in range(1, steps + 1):
        grads = _grads(weights)
        for i, g in enumerate(grads):
            if wd:
                weights[i] = weights[i] - weights[i] * wd * lr
            m[i] = m[i] + (g - m[i]) * (1 - b1)
            v[i] = v[i] + (g * g - v[i]) * (1 - b2)
            alpha = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            weights[i] = weights[i] - m[i] * alpha / (np.sqrt(v[i]) + eps)
    return weights


def keras_rmsprop_reference(steps, lr=0.001, rho=0.9, eps=1e-7):
    weights = [w.copy() for w in W0]
    v = [np.zeros_like(w) for w in weights]
    for _ in range(steps):
        for i, g in enumerate(_grads(weights)):
            v[i] = rho * v[i] + (1 - rho) * g * g
            weights[i] = weights[i] - lr * g / np.sqrt(v[i] + eps)
    return weights


def test_adam_default_epsilon_matches_keras_formula():
    # tiny gradients make epsilon matter, where Keras and PyTorch differ
    got = run_ours(optimizers.Adam(0.1, epsilon=1e-2), 7)
    expected = keras_adam_reference(7, lr=0.1, eps=1e-2)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-12)
    got = run_ours(optimizers.AdamW(0.1, weight_decay=0.2, epsilon=1e-2), 7)
    expected = keras_adam_reference(7, lr=0.1, eps=1e-2, wd=0.2)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-12)


def test_rmsprop_epsilon_inside_sqrt():
    got = run_ours(optimizers.RMSprop(0.01, epsilon=0.5), 6)
    expected = keras_rmsprop_reference(6, lr=0.01, eps=0.5)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-12)


def test_sgd_weight_decay_is_decoupled():
    # Keras: w -= w * wd * lr, then w -= lr * g (g from the weights before the decay)
    w = np.array([2.0, -1.0])
    opt = optimizers.SGD(0.1, weight_decay=0.5)
    g = np.array([1.0, 1.0])
    opt.apply_gradients([(g, w)])
    np.testing.assert_allclose(w, np.array([2.0, -1.0]) * (1 - 0.05) - 0.1 * g)


def test_defaults_are_keras():
    assert optimizers.SGD().learning_rate == 0.01
    adam = optimizers.get("adam")
    assert (adam.learning_rate, adam.beta_1, adam.beta_2, adam.epsilon) == \
        (0.001, 0.9, 0.999, 1e-7)
    assert optimizers.get("AdamW").weight_decay == 0.004
    rms = optimizers.get("rmsprop")
    assert (rms.learning_rate, rms.rho, rms.momentum, rms.epsilon, rms.centered) == \
        (0.001, 0.9, 0.0, 1e-7, False)
    with pytest.raises(ValueError, match="unknown optimizer"):
        optimizers.get("adagrad_plus")


# ------------------------------------------------------------------ clipping, dtypes, errors
def test_clipping():
    w = np.zeros(2)
    optimizers.SGD(1.0, clipvalue=0.5).apply_gradients([(np.array([2.0, -0.1]), w)])
    np.testing.assert_allclose(w, [-0.5, 0.1])
    w = np.zeros(2)
    optimizers.SGD(1.0, clipnorm=1.0).apply_gradients([(np.array([3.0, 4.0]), w)])
    np.testing.assert_allclose(w, [-0.6, -0.8])
    w1, w2 = np.zeros(1), np.zeros(1)
    optimizers.SGD(1.0, global_clipnorm=2.5).apply_gradients(
        [(np.array([3.0]), w1), (np.array([4.0]), w2)])          # global norm 5 -> scale 0.5
    np.testing.assert_allclose([w1[0], w2[0]], [-1.5, -2.0])
    with pytest.raises(ValueError, match="at most one"):
        optimizers.SGD(clipnorm=1.0, clipvalue=1.0)


def test_in_place_dtypes_and_none_gradients():
    w32 = np.ones(3, dtype=np.float32)
    keep = w32
    opt = optimizers.Adam(0.1)
    opt.apply_gradients([(np.ones(3, dtype=np.float64), w32), (None, np.ones(2))])
    assert keep is w32 and w32.dtype == np.float32 and np.all(w32 < 1)
    assert opt.iterations == 1
    assert opt.get_state()["momentum/0"].dtype == np.float32
    assert "momentum/1" not in opt.get_state()


def test_bad_inputs():
    opt = optimizers.SGD(0.1, momentum=0.9)
    with pytest.raises(ShapeError, match=r"gradient 0 has shape \(2,\) but its weight has "
                                         r"shape \(3,\)"):
        opt.apply_gradients([(np.ones(2), np.ones(3))])
    with pytest.raises(ValueError, match="weight 0 must be a float NumPy array"):
        opt.apply_gradients([(np.ones(2), [1.0, 2.0])])
    opt.apply_gradients([(np.ones(3), np.ones(3))])
    with pytest.raises(ShapeError, match="same order"):
        opt.apply_gradients([(np.ones(4), np.ones(4))])
    with pytest.raises(ValueError, match="momentum"):
        optimizers.SGD(momentum=1.5)
    with pytest.raises(ValueError, match="learning_rate"):
        optimizers.Adam(learning_rate=-1.0)


# ------------------------------------------------------------------ learning rate
def test_learning_rate_settable_and_schedules():
    opt = optimizers.SGD(0.1)
    opt.learning_rate = 0.05
    assert opt.learning_rate == 0.05
    w = np.array([1.0])
    opt.apply_gradients([(np.array([1.0]), w)])
    assert w[0] == pytest.approx(0.95)

    schedule = schedules.PiecewiseConstantDecay([1], [1.0, 0.1])
    opt = optimizers.SGD(schedule)
    w = np.array([0.0])
    steps = []
    for _ in range(3):
        before = w[0]
        steps.append(opt.current_learning_rate())
        opt.apply_gradients([(np.array([1.0]), w)])
        assert before - w[0] == pytest.approx(steps[-1])
    assert steps == [1.0, 1.0, 0.1]                 # iterations 0, 1 (<= boundary), 2
    with pytest.raises(TypeError, match="schedule"):
        opt.learning_rate = 0.5
    assert optimizers.schedules is schedules


def test_schedules_against_hand_formulas():
    e = schedules.ExponentialDecay(0.1, decay_steps=100, decay_rate=0.96)
    assert e(250) == pytest.approx(0.1 * 0.96 ** 2.5)
    e = schedules.ExponentialDecay(0.1, 100, 0.96, staircase=True)
    assert e(250) == pytest.approx(0.1 * 0.96 ** 2)
    c = schedules.CosineDecay(0.2, decay_steps=1000, alpha=0.1)
    assert c(0) == pytest.approx(0.2)
    assert c(250) == pytest.approx(0.2 * (0.9 * 0.5 * (1 + math.cos(math.pi * 0.25)) + 0.1))
    assert c(5000) == pytest.approx(0.2 * 0.1)
    w = schedules.CosineDecay(0.0, decay_steps=100, warmup_target=1.0, warmup_steps=10)
    assert w(5) == pytest.approx(0.5)
    assert w(10) == pytest.approx(1.0)
    assert w(60) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert w(1000) == pytest.approx(0.0, abs=1e-12)
    p = schedules.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1])
    assert [p(0), p(10), p(11), p(20), p(21)] == [1.0, 1.0, 0.5, 0.5, 0.1]
    with pytest.raises(ValueError, match="one more entry"):
        schedules.PiecewiseConstantDecay([10, 20], [1.0, 0.5])
    for s in (e, c, w, p):
        again = schedules.deserialize(json.loads(json.dumps(schedules.serialize(s))))
        assert type(again) is type(s) and again.get_config() == s.get_config()


# ------------------------------------------------------------------ saving and resuming
@pytest.mark.parametrize("make", [
    lambda: optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    lambda: optimizers.Adam(0.01, amsgrad=True),
    lambda: optimizers.AdamW(schedules.ExponentialDecay(0.01, 3, 0.5)),
    lambda: optimizers.RMSprop(0.01, momentum=0.3, centered=True, weight_decay=0.01),
], ids=["sgd", "adam", "adamw-schedule", "rmsprop"])
def test_state_resume_is_bit_identical(make):
    straight = run_ours(make(), 10, dtype=np.float32)

    first = make()
    weights = run_ours(first, 4, dtype=np.float32)
    config = json.loads(json.dumps(optimizers.serialize(first)))
    state = {k: np.array(v) for k, v in first.get_state().items()}
    saved_weights = [w.copy() for w in weights]
    run_ours(first, 3, weights=weights)                  # the original goes on; no sharing

    second = optimizers.deserialize(config)
    second.set_state(state)
    assert second.iterations == 4
    resumed = run_ours(second, 6, weights=saved_weights)
    for a, b in zip(straight, resumed):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)


def test_state_keeps_a_changed_learning_rate():
    opt = optimizers.SGD(0.1)
    opt.learning_rate = 0.01
    other = optimizers.SGD(0.1)
    other.set_state(opt.get_state())
    assert other.learning_rate == 0.01
    with pytest.raises(ValueError, match="unexpected entry 'velocity/0'"):
        other.set_state({"iterations": np.array(0), "velocity/0": np.zeros(2)})
