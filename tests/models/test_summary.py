import numpy as np

import convkit as ck
from convkit.models.summary import format_summary, readable_size

from ._nets import L, mnist_convnet, residual_net

# Keras 3's output for the simple MNIST convnet at an 80-column terminal (line length 76),
# with the layer names Keras gives in a fresh session.
EXPECTED_MNIST = """\
Model: "sequential"
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓
┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩
│ conv2d (Conv2D)                 │ (None, 26, 26, 32)     │           320 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ max_pooling2d (MaxPooling2D)    │ (None, 13, 13, 32)     │             0 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ conv2d_1 (Conv2D)               │ (None, 11, 11, 64)     │        18,496 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ max_pooling2d_1 (MaxPooling2D)  │ (None, 5, 5, 64)       │             0 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ flatten (Flatten)               │ (None, 1600)           │             0 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dropout (Dropout)               │ (None, 1600)           │             0 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dense (Dense)                   │ (None, 10)             │        16,010 │
└─────────────────────────────────┴────────────────────────┴───────────────┘
 Total params: 34,826 (136.04 KB)
 Trainable params: 34,826 (136.04 KB)
 Non-trainable params: 0 (0.00 B)"""


def _keras_named_mnist():
    names = ["conv2d", "max_pooling2d", "conv2d_1", "max_pooling2d_1", "flatten", "dropout",
             "dense"]
    model = mnist_convnet()
    model.name = "sequential"
    for layer, name in zip(model.layers, names):
        layer.name = name
    return model


def test_mnist_convnet_summary_matches_keras_text():
    model = _keras_named_mnist()
    lines = []
    model.summary(print_fn=lines.append, line_length=76)
    assert "\n".join(lines) == EXPECTED_MNIST
    assert model.count_params() == 34_826


def test_summary_default_width_is_88_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    text = format_summary(_keras_named_mnist())
    table_lines = text.splitlines()[1:-3]
    assert {len(line) for line in table_lines} == {88}
    # Keras: 0.45/0.80/1.0 of 88 -> 39/31/18 with padding, minus the border excess -> 38/29/17
    assert text.splitlines()[2].split("┃")[1:-1] == [
        " Layer (type)" + " " * 25, " Output Shape" + " " * 16, "         Param # "]


def test_summary_rows_are_structured():
    model = mnist_convnet()
    rows = model.summary_rows()
    assert [r["class"] for r in rows] == ["Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D",
                                          "Flatten", "Dropout", "Dense"]
    assert [r["output_shape"] for r in rows] == [
        (None, 26, 26, 32), (None, 13, 13, 32), (None, 11, 11, 64), (None, 5, 5, 64),
        (None, 1600), (None, 1600), (None, 10)]
    assert [r["params"] for r in rows] == [320, 0, 18_496, 0, 0, 0, 16_010]
    assert rows[0]["layer"] is model.layers[0]
    assert all(r["trainable"] for r in rows)


def test_batch_norm_counts_as_non_trainable():
    model = ck.Sequential([L.Input((4, 4, 3)), L.BatchNormalization(), L.Flatten(),
                           L.Dense(2)])
    text = format_summary(model, line_length=76)
    # gamma, beta trainable (3 + 3); moving mean and variance not (3 + 3); dense 48*2 + 2
    assert " Total params: 110 (440.00 B)" in text
    assert " Trainable params: 104 (416.00 B)" in text
    assert " Non-trainable params: 6 (24.00 B)" in text
    rows = model.summary_rows()
    assert (rows[0]["trainable_params"], rows[0]["non_trainable_params"]) == (6, 6)


def test_functional_summary_has_connected_to_column():
    model = residual_net()
    text = format_summary(model, line_length=108)
    assert "┃ Connected to" in text
    add = next(layer for layer in model.layers if type(layer).__name__ == "Add")
    conv_a, conv_b = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"][:2]
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if f"{add.name} (Add)" in line)
    # Keras's "name[node][tensor]" references, word-wrapped inside the cell
    connected = " ".join(line.split("│")[4].strip() for line in lines[at:at + 2])
    assert connected == f"{conv_a.name}[0][0], {conv_b.name}[0][0]"
    first = text.splitlines()[4]
    assert "(InputLayer)" in first and "(None, 6, 6, 2)" in first
    assert first.rstrip(" │").endswith("-")
    assert {len(line) for line in text.splitlines()[1:-3]} == {108}


def test_unbuilt_sequential_summary():
    model = ck.Sequential([L.Dense(3)])
    text = format_summary(model, line_length=76)
    assert "?" in text and "0 (unbuilt)" in text


def test_readable_size():
    assert readable_size(34_826 * 4) == "136.04 KB"
    assert readable_size(0) == "0.00 B"
    assert readable_size(5 * 1024 ** 2) == "5.00 MB"


def test_summary_counts_optimizer_state_after_training():
    model = ck.Sequential([L.Input((3,)), L.Dense(2)])
    model.compile("adam", "mse")
    assert "Optimizer params" not in format_summary(model, line_length=76)
    model.train_on_batch(np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32))
    text = format_summary(model, line_length=76)
    assert " Trainable params: 8 (32.00 B)" in text
    # Adam's two moments per weight (16), its step counter and learning rate, as Keras counts
    assert " Optimizer params: 18 " in text and " Total params: 26 " in text
