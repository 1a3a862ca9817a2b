"""Metrics on hand-made predictions, weighted by batch size."""
import numpy as np
import pytest

from convkit import losses, metrics
from convkit.errors import ShapeError

PROBS = np.array([[0.1, 0.7, 0.2],      # predicts 1
                  [0.5, 0.3, 0.2],      # predicts 0
                  [0.2, 0.3, 0.5],      # predicts 2
                  [0.4, 0.35, 0.25]])   # predicts 0
LABELS = np.array([1, 1, 2, 1])          # right, wrong, right, wrong


def test_sparse_and_categorical_accuracy():
    m = metrics.SparseCategoricalAccuracy()
    m.update_state(LABELS, PROBS)
    assert m.result() == 0.5
    m.update_state(LABELS[:, None], PROBS)                  # (N, 1) labels work too
    assert m.result() == 0.5
    c = metrics.CategoricalAccuracy()
    c.update_state(np.eye(3)[LABELS], PROBS)
    assert c.result() == 0.5
    assert m.name == "sparse_categorical_accuracy" and c.name == "categorical_accuracy"


def test_batch_size_weighting_equals_dataset_metric():
    # batches of 3 and 1: the epoch result is 2/4, not the mean of batch results (1/3+1)/2
    m = metrics.SparseCategoricalAccuracy()
    m.update_state(LABELS[:3], PROBS[:3])
    assert m.result() == pytest.approx(2 / 3)
    m.update_state(LABELS[3:], PROBS[3:])
    assert m.result() == pytest.approx(0.5)
    m.reset_state()
    assert m.result() == 0.0
    loss_tracker = metrics.Mean(name="loss")
    loss_tracker.update_state(0.9, sample_weight=3)
    loss_tracker.update_state(0.1, sample_weight=1)
    assert loss_tracker.result() == pytest.approx((0.9 * 3 + 0.1) / 4)


def test_binary_accuracy_threshold():
    y = np.array([[1.0], [0.0], [1.0], [0.0]])
    p = np.array([[0.9], [0.6], [0.55], [0.1]])
    assert metrics.BinaryAccuracy()(y, p) == 0.75
    assert metrics.BinaryAccuracy(threshold=0.95)(y, p) == 0.5
    # several outputs per sample: the mean over the last axis, then over samples
    m = metrics.BinaryAccuracy()
    m.update_state([[1, 0], [1, 1]], [[0.8, 0.2], [0.1, 0.9]])
    assert m.result() == 0.75


def test_top_k():
    scores = np.array([[0.1, 0.2, 0.3, 0.4],
                       [0.4, 0.3, 0.2, 0.1],
                       [0.25, 0.25, 0.25, 0.25]])
    labels = np.array([1, 1, 3])
    # sample 0: label's score 0.2 is 3rd; sample 1: 2nd; sample 2: tie, counts as in
    assert metrics.SparseTopKCategoricalAccuracy(k=2)(labels, scores) == pytest.approx(2 / 3)
    assert metrics.SparseTopKCategoricalAccuracy(k=3)(labels, scores) == 1.0
    # k=1: only the all-tied sample counts
    assert metrics.TopKCategoricalAccuracy(k=1)(np.eye(4)[labels], scores) == \
        pytest.approx(1 / 3)
    assert metrics.SparseTopKCategoricalAccuracy().k == 5


def test_regression_metrics():
    y = np.array([[0.0, 1.0], [2.0, 2.0]])
    p = np.array([[1.0, 1.0], [2.0, 5.0]])
    assert metrics.get("mse")(y, p) == pytest.approx((0.5 + 4.5) / 2)
    assert metrics.get("mae")(y, p) == pytest.approx((0.5 + 1.5) / 2)
    assert metrics.get("mse").name == "mse"
    assert metrics.MeanSquaredError().direction == "down"


@pytest.mark.parametrize("loss,expected", [
    ("sparse_categorical_crossentropy", metrics.SparseCategoricalAccuracy),
    (losses.SparseCategoricalCrossentropy(from_logits=True), metrics.SparseCategoricalAccuracy),
    ("categorical_crossentropy", metrics.CategoricalAccuracy),
    ("binary_crossentropy", metrics.BinaryAccuracy),
])
def test_accuracy_follows_the_loss(loss, expected):
    for name in ("accuracy", "acc"):
        metric = metrics.get(name, loss=loss)
        assert type(metric) is expected and metric.name == name
        assert metric.direction == "up"


def test_binary_accuracy_from_logits_thresholds_at_zero():
    metric = metrics.get("accuracy", loss=losses.BinaryCrossentropy(from_logits=True))
    assert metric([[1.0], [0.0]], [[0.3], [-0.2]]) == 1.0


def test_accuracy_without_a_telling_loss_uses_shapes():
    m = metrics.get("accuracy", loss="mse")
    m.update_state(LABELS, PROBS)                              # lower rank -> sparse
    assert m.result() == 0.5
    m = metrics.get("accuracy")
    m.update_state([[1.0], [0.0]], [[0.8], [0.9]])             # last axis 1 -> binary
    assert m.result() == 0.5
    m = metrics.get("accuracy")
    m.update_state(np.eye(3)[LABELS], PROBS)                   # same shape -> categorical
    assert m.result() == 0.5


def test_get_other_names_and_callables():
    assert type(metrics.get("top_k_categorical_accuracy")) is metrics.TopKCategoricalAccuracy
    assert type(metrics.get("sparse_top_k_categorical_accuracy")) is \
        metrics.SparseTopKCategoricalAccuracy
    m = metrics.get(lambda t, p: np.abs(np.asarray(t) - p).max(axis=-1))
    m.update_state([[0.0, 0.0]], [[1.0, -3.0]])
    assert m.result() == 3.0
    ce = metrics.get("sparse_categorical_crossentropy")
    ce.update_state(LABELS, PROBS)
    assert ce.result() == pytest.approx(losses.SparseCategoricalCrossentropy()(LABELS, PROBS))
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.get("accuracy_of_doom")
    again = metrics.deserialize(metrics.serialize(metrics.BinaryAccuracy(threshold=0.3)))
    assert again.threshold == 0.3


def test_shape_errors():
    with pytest.raises(ShapeError, match="sparse labels are class indices of shape"):
        metrics.SparseCategoricalAccuracy().update_state(np.eye(3)[LABELS][:, :2], PROBS)
    with pytest.raises(ShapeError, match="use the sparse variant"):
        metrics.CategoricalAccuracy().update_state(LABELS, PROBS)
