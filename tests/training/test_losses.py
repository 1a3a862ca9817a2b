"""Losses: hand-computed values, PyTorch, finite differences, stability, label checks."""
import json
import warnings

import numpy as np
import pytest

from convkit import losses
from convkit.errors import ShapeError
from tests.gradcheck import numeric_grad


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


# ------------------------------------------------------------------ hand-computed values
def test_categorical_crossentropy_hand_value():
    y = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    p = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]])
    expected = (-np.log(0.7) - np.log(0.5)) / 2
    assert losses.CategoricalCrossentropy()(y, p) == pytest.approx(expected, rel=1e-12)
    # Keras rescales rows to sum to 1 before the log
    assert losses.CategoricalCrossentropy()(y, 0.5 * p) == pytest.approx(expected, rel=1e-12)


def test_label_smoothing_hand_value():
    y = np.array([[0.0, 1.0]])
    p = np.array([[0.2, 0.8]])
    # smoothed labels: y * 0.8 + 0.2 / 2 = [[0.1, 0.9]]
    expected = -(0.1 * np.log(0.2) + 0.9 * np.log(0.8))
    got = losses.CategoricalCrossentropy(label_smoothing=0.2)(y, p)
    assert got == pytest.approx(expected, rel=1e-12)
    bce = losses.BinaryCrossentropy(label_smoothing=0.2)([[1.0]], [[0.8]])
    assert bce == pytest.approx(-(0.9 * np.log(0.8) + 0.1 * np.log(0.2)), rel=1e-12)


def test_sparse_matches_categorical_and_accepts_column_labels():
    rng = np.random.default_rng(0)
    p = _softmax(rng.standard_normal((6, 4)))
    labels = np.array([0, 3, 1, 2, 2, 0])
    onehot = np.eye(4)[labels]
    cce = losses.CategoricalCrossentropy()(onehot, p)
    assert losses.SparseCategoricalCrossentropy()(labels, p) == pytest.approx(cce, rel=1e-12)
    assert losses.SparseCategoricalCrossentropy()(labels[:, None], p) == pytest.approx(cce)
    assert losses.SparseCategoricalCrossentropy()(labels.astype(float), p) == pytest.approx(cce)


def test_binary_mse_mae_hand_values():
    y = np.array([[1.0, 0.0], [0.0, 1.0]])
    p = np.array([[0.9, 0.2], [0.4, 0.6]])
    bce = -np.mean([np.log(0.9), np.log(0.8), np.log(0.6), np.log(0.6)])
    assert losses.BinaryCrossentropy()(y, p) == pytest.approx(bce, rel=1e-12)
    assert losses.get("mse")(y, p) == pytest.approx(np.mean((y - p) ** 2))
    assert losses.get("mae")(y, p) == pytest.approx(np.mean(np.abs(y - p)))
    # (N,) labels against (N, 1) predictions are reconciled
    assert losses.BinaryCrossentropy()([1.0, 0.0], [[0.9], [0.2]]) == pytest.approx(
        -np.mean([np.log(0.9), np.log(0.8)]))


def test_probability_clipping_is_keras_epsilon():
    # a confident wrong prediction costs -log(1e-7), not infinity
    got = losses.CategoricalCrossentropy()([[1.0, 0.0]], [[0.0, 1.0]])
    assert got == pytest.approx(-np.log(1e-7), rel=1e-6)
    got = losses.BinaryCrossentropy()([[1.0]], [[0.0]])
    assert got == pytest.approx(-np.log(1e-7), rel=1e-6)


def test_sample_weight_is_sum_over_batch_size():
    y = np.array([0, 1, 1])
    p = np.array([[0.8, 0.2], [0.3, 0.7], [0.5, 0.5]])
    per = -np.log([0.8, 0.7, 0.5])
    w = np.array([1.0, 0.0, 2.0])
    loss = losses.SparseCategoricalCrossentropy()
    assert loss(y, p, sample_weight=w) == pytest.approx(np.sum(per * w) / 3)
    grad = loss.gradient(y, p, sample_weight=w)
    assert np.all(grad[1] == 0) and np.all(grad[0] != 0)


def test_spatial_predictions_average_over_pixels():
    rng = np.random.default_rng(1)
    p = _softmax(rng.standard_normal((2, 3, 3, 4)))
    labels = rng.integers(0, 4, size=(2, 3, 3))
    per = -np.log(np.take_along_axis(p, labels[..., None], -1)[..., 0])
    assert losses.SparseCategoricalCrossentropy()(labels, p) == pytest.approx(per.mean())


# ------------------------------------------------------------------ PyTorch
@pytest.mark.torch
def test_against_torch(torch, rng):
    F = torch.nn.functional
    z = rng.standard_normal((8, 5)) * 3
    labels = rng.integers(0, 5, 8)
    onehot = np.eye(5)[labels]
    tz = torch.tensor(z)
    tl = torch.tensor(labels)
    ref_ce = F.cross_entropy(tz, tl).item()
    assert losses.CategoricalCrossentropy(from_logits=True)(onehot, z) == pytest.approx(ref_ce)
    assert losses.SparseCategoricalCrossentropy(from_logits=True)(labels, z) == \
        pytest.approx(ref_ce)
    assert losses.CategoricalCrossentropy()(onehot, _softmax(z)) == pytest.approx(ref_ce)
    ref_ls = F.cross_entropy(tz, tl, label_smoothing=0.1).item()
    assert losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)(onehot, z) == \
        pytest.approx(ref_ls)

    y = rng.integers(0, 2, (8, 3)).astype(float)
    zb = rng.standard_normal((8, 3)) * 4
    ref_bce_logits = F.binary_cross_entropy_with_logits(torch.tensor(zb), torch.tensor(y))
    assert losses.BinaryCrossentropy(from_logits=True)(y, zb) == \
        pytest.approx(ref_bce_logits.item())
    pb = np.clip(_sigmoid(zb), 1e-7, 1 - 1e-7)
    ref_bce = F.binary_cross_entropy(torch.tensor(pb), torch.tensor(y)).item()
    assert losses.BinaryCrossentropy()(y, pb) == pytest.approx(ref_bce)

    a, b = rng.standard_normal((2, 8, 3))
    assert losses.MeanSquaredError()(a, b) == pytest.approx(
        F.mse_loss(torch.tensor(b), torch.tensor(a)).item())
    assert losses.MeanAbsoluteError()(a, b) == pytest.approx(
        F.l1_loss(torch.tensor(b), torch.tensor(a)).item())


@pytest.mark.torch
def test_gradients_against_torch_autograd(torch, rng):
    z = rng.standard_normal((6, 4))
    labels = rng.integers(0, 4, 6)
    tz = torch.tensor(z, requires_grad=True)
    torch.nn.functional.cross_entropy(tz, torch.tensor(labels)).backward()
    ours = losses.SparseCategoricalCrossentropy(from_logits=True).gradient(labels, z)
    np.testing.assert_allclose(ours, tz.grad.numpy(), rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------ finite differences
CASES = [
    (losses.CategoricalCrossentropy(), "onehot", "probs"),
    (losses.CategoricalCrossentropy(label_smoothing=0.1), "onehot", "probs"),
    (losses.CategoricalCrossentropy(from_logits=True), "onehot", "logits"),
    (losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2), "onehot", "logits"),
    (losses.SparseCategoricalCrossentropy(), "sparse", "probs"),
    (losses.SparseCategoricalCrossentropy(from_logits=True), "sparse", "logits"),
    (losses.BinaryCrossentropy(), "binary", "sigmoid"),
    (losses.BinaryCrossentropy(from_logits=True), "binary", "logits"),
    (losses.BinaryCrossentropy(label_smoothing=0.1), "binary", "sigmoid"),
    (losses.MeanSquaredError(), "real", "logits"),
    (losses.MeanAbsoluteError(), "real", "logits"),
]


def _case_data(kind, pred, rng, shape=(5, 4)):
    z = rng.standard_normal(shape)
    if kind == "onehot":
        y = np.eye(shape[-1])[rng.integers(0, shape[-1], shape[:-1])]
    elif kind == "sparse":
        y = rng.integers(0, shape[-1], shape[:-1])
    elif kind == "binary":
        y = rng.integers(0, 2, shape).astype(float)
    else:
        y = rng.standard_normal(shape)
    if pred == "probs":
        # unnormalised positive scores exercise the row-rescaling part of the gradient
        p = rng.uniform(0.1, 1.0, shape)
    elif pred == "sigmoid":
        p = _sigmoid(z)
    else:
        p = z
    return y, p


@pytest.mark.parametrize("loss,kind,pred", CASES, ids=lambda v: repr(v) if isinstance(
    v, losses.Loss) else str(v))
def test_gradient_matches_finite_differences(loss, kind, pred, rng):
    for shape in [(5, 4), (2, 3, 3)]:
        y, p = _case_data(kind, pred, rng, shape)
        analytic = loss.gradient(y, p)
        assert analytic.shape == p.shape and analytic.dtype == np.float64
        numeric = numeric_grad(lambda x: loss(y, x), p)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("loss,kind,activation", [
    (losses.CategoricalCrossentropy(), "onehot", "softmax"),
    (losses.CategoricalCrossentropy(label_smoothing=0.1), "onehot", "softmax"),
    (losses.SparseCategoricalCrossentropy(), "sparse", "softmax"),
    (losses.BinaryCrossentropy(), "binary", "sigmoid"),
    (losses.BinaryCrossentropy(label_smoothing=0.2), "binary", "sigmoid"),
])
def test_fused_gradient_wrt_logits(loss, kind, activation, rng):
    assert loss.fusable_with(activation)
    assert not loss.fusable_with("relu") and not loss.fusable_with(None)
    act = _softmax if activation == "softmax" else _sigmoid
    y, z = _case_data(kind, "logits", rng, (6, 3))
    fused = loss.gradient_wrt_logits(y, act(z))
    numeric = numeric_grad(lambda x: loss(y, act(x)), z)
    np.testing.assert_allclose(fused, numeric, rtol=1e-5, atol=1e-8)
    # and it is what the chain rule through the activation gives
    chained = loss.gradient(y, act(z))
    if activation == "softmax":
        s = act(z)
        chained = s * (chained - np.sum(chained * s, axis=-1, keepdims=True))
    else:
        chained = chained * act(z) * (1 - act(z))
    np.testing.assert_allclose(fused, chained, rtol=1e-7, atol=1e-12)


def test_not_fusable_when_from_logits_or_regression():
    assert not losses.CategoricalCrossentropy(from_logits=True).fusable_with("softmax")
    assert not losses.BinaryCrossentropy().fusable_with("softmax")
    assert not losses.MeanSquaredError().fusable_with("sigmoid")
    with pytest.raises(ValueError, match="no fused gradient"):
        losses.MeanSquaredError().gradient_wrt_logits([[1.0]], [[0.5]])


def test_float32_stays_float32():
    y = np.array([0, 2])
    p = np.array([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]], dtype=np.float32)
    for loss, target in [(losses.SparseCategoricalCrossentropy(), y),
                         (losses.CategoricalCrossentropy(), np.eye(3)[y]),
                         (losses.MeanSquaredError(), np.eye(3)[y])]:
        assert loss.gradient(target, p).dtype == np.float32
    assert losses.CategoricalCrossentropy().gradient_wrt_logits(np.eye(3)[y], p).dtype == \
        np.float32


# ------------------------------------------------------------------ stability
def test_extreme_logits_stay_finite():
    z = np.array([[1000.0, -1000.0, 0.0], [-5e4, 5e4, 3.0]])
    onehot = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    for dtype in (np.float32, np.float64):
        zd = z.astype(dtype)
        ce = losses.CategoricalCrossentropy(from_logits=True)
        value = ce(onehot, zd)
        assert np.isfinite(value) and value == pytest.approx((2000 + 1e5) / 2, rel=1e-5)
        assert np.all(np.isfinite(ce.gradient(onehot, zd)))
        bce = losses.BinaryCrossentropy(from_logits=True)
        yb = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
        assert np.isfinite(bce(yb, zd))
        assert np.all(np.isfinite(bce.gradient(yb, zd)))
        # probabilities exactly 0 and 1
        p = np.array([[0.0, 1.0, 0.0]], dtype=dtype)
        assert np.isfinite(losses.CategoricalCrossentropy()([[1.0, 0, 0]], p))
        assert np.all(np.isfinite(losses.CategoricalCrossentropy().gradient([[1.0, 0, 0]], p)))
        assert np.all(np.isfinite(losses.BinaryCrossentropy().gradient([[1.0, 0, 0]], p)))


# ------------------------------------------------------------------ errors
def test_sparse_label_shape_error_message():
    p = np.full((32, 10), 0.1)
    with pytest.raises(ShapeError) as info:
        losses.SparseCategoricalCrossentropy()(np.zeros((32, 10)), p)
    assert str(info.value) == (
        "SparseCategoricalCrossentropy: labels of shape (32, 10) do not fit predictions of "
        "shape (32, 10); sparse labels are class indices of shape (32,)")


def test_label_errors():
    p = np.full((4, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\), got values in \[0, 3\]"):
        losses.SparseCategoricalCrossentropy()([0, 1, 2, 3], p)
    with pytest.raises(ValueError, match="integer class indices"):
        losses.SparseCategoricalCrossentropy()([0, 1.5, 2, 0], p)
    with pytest.raises(ShapeError, match="use SparseCategoricalCrossentropy"):
        losses.CategoricalCrossentropy()([0, 1, 2, 0], p)
    with pytest.raises(ShapeError, match=r"labels of shape \(4, 2\)"):
        losses.BinaryCrossentropy()(np.zeros((4, 2)), p)
    with pytest.raises(ShapeError, match=r"labels of shape \(3,\)"):
        losses.MeanSquaredError()(np.zeros(3), p)


def test_warns_once_about_logits_given_as_probabilities():
    loss = losses.CategoricalCrossentropy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss([[1.0, 0.0]], [[2.0, -1.0]])
        loss([[1.0, 0.0]], [[2.0, -1.0]])
    assert len([w for w in caught if "from_logits=True" in str(w.message)]) == 1


# ------------------------------------------------------------------ lookup and config
@pytest.mark.parametrize("name,cls", [
    ("categorical_crossentropy", losses.CategoricalCrossentropy),
    ("sparse_categorical_crossentropy", losses.SparseCategoricalCrossentropy),
    ("binary_crossentropy", losses.BinaryCrossentropy),
    ("mse", losses.MeanSquaredError), ("mean_squared_error", losses.MeanSquaredError),
    ("mae", losses.MeanAbsoluteError), ("mean_absolute_error", losses.MeanAbsoluteError),
    ("BinaryCrossentropy", losses.BinaryCrossentropy),
])
def test_get_strings(name, cls):
    assert type(losses.get(name)) is cls
    with pytest.raises(ValueError, match="unknown loss"):
        losses.get("hinge_of_doom")


def test_get_config_round_trip_json():
    loss = losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    config = json.loads(json.dumps(losses.serialize(loss)))
    again = losses.deserialize(config)
    assert type(again) is losses.CategoricalCrossentropy
    assert again.from_logits and again.label_smoothing == 0.1 and again.name == loss.name
    assert loss.get_config()["reduction"] == "sum_over_batch_size"


def test_custom_callable_loss_with_numeric_gradient(rng):
    def squared(y_true, y_pred):
        return np.mean((y_pred - y_true) ** 2, axis=-1)

    loss = losses.get(squared)
    assert loss.name == "squared"
    y, p = rng.standard_normal((2, 4, 3))
    assert loss(y, p) == pytest.approx(losses.MeanSquaredError()(y, p))
    np.testing.assert_allclose(loss.gradient(y, p), losses.MeanSquaredError().gradient(y, p),
                               rtol=1e-6, atol=1e-9)
    # the module's own functions map to the classes
    assert type(losses.get(losses.binary_crossentropy)) is losses.BinaryCrossentropy
