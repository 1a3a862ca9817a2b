"""The explaining summary on layouts and paddings beyond the MNIST convnet: channels_first
inputs, what padded cells hold, ZeroPadding2D, long lines, JSON."""
import json

import numpy as np

import convkit as ck
from convkit.explain import explain_model, explanation_dict, format_explanation

L = ck.layers


def _channels_first_model():
    return ck.Sequential([
        L.Input((3, 15, 11)),
        L.Conv2D(8, 3, strides=2, padding=((1, 0), (2, 1)), padding_mode="reflect",
                 data_format="channels_first"),
        L.ZeroPadding2D(((1, 2), (0, 1)), data_format="channels_first"),
        L.AveragePooling2D(3, strides=2, padding=1, data_format="channels_first"),
        L.MaxPooling2D(2, padding="same", data_format="channels_first"),
        L.GlobalMaxPooling2D(data_format="channels_first"),
        L.Dense(3),
    ])


def test_channels_first_whole_input_is_height_by_width():
    rows = {row["name"]: row for row in explain_model(_channels_first_model())}
    dense = [row for row in rows.values() if row["class"] == "Dense"][0]
    assert dense["receptive_field"] == [15, 11] and dense["jump"] is None
    text = format_explanation(list(rows.values()))
    assert "the whole 15x11 input" in text and "3x15" not in text


def test_padding_fill_is_reported():
    rows = explain_model(_channels_first_model())
    by_class = {row["class"]: row for row in rows}
    conv = by_class["Conv2D"]
    assert conv["padding"] == {"top": 1, "bottom": 0, "left": 2, "right": 1}
    assert conv["padding_mode"] == "explicit" and conv["padding_fill"] == "reflect"
    assert by_class["ZeroPadding2D"]["padding"] == {"top": 1, "bottom": 2, "left": 0, "right": 1}
    assert by_class["AveragePooling2D"]["padding_fill"] == "excluded"
    assert by_class["MaxPooling2D"]["padding_fill"] == "-inf"
    text = format_explanation(rows)
    assert "reflect: mirrored" in text
    assert "padded cells left out of the average" in text


def test_zero_fill_is_not_mentioned_and_counted_average_padding_is():
    model = ck.Sequential([L.Input((8, 8, 1)), L.Conv2D(2, 3, padding="same"),
                           L.AveragePooling2D(3, 1, padding=1, count_include_pad=True)])
    text = format_explanation(explain_model(model))
    assert "same: top 1, bottom 1, left 1, right 1\n" in text
    assert "zeros counted in the average" in text and "(count_include_pad)" in text


def test_long_lines_wrap_without_splitting_formulas():
    model = ck.Sequential([L.Input((15, 15, 1)), L.Conv2D(2, 5, strides=2, dilation_rate=1)])
    text = format_explanation(explain_model(model))
    assert all(len(line) <= 96 for line in text.splitlines())
    assert "(15 + 0 + 0 - 5) % 2 = 0" not in text            # 15 - 5 is even: no warning
    model = ck.Sequential([L.Input((16, 16, 1)), L.Conv2D(2, 5, strides=2)])
    text = format_explanation(explain_model(model))
    assert "(16 + 0 + 0 - 5) % 2 = 1" in text               # one line, never split
    assert "the windows never read 1 input row at the bottom and 1 input" in text


def test_structured_form_is_json_and_totals_add_up():
    model = _channels_first_model()
    data = explanation_dict(model)
    json.dumps(data)
    rows, totals = data["layers"], data["totals"]
    assert totals["params"] == model.count_params()
    assert totals["macs"] == sum(row["macs"] for row in rows)
    conv = rows[0]
    out_h, out_w = conv["output_shape"][2:]
    assert conv["macs"] == out_h * out_w * 3 * 3 * 3 * 8
    assert conv["formulas"]["height"] == f"floor((15 + 1 + 0 - 3) / 2) + 1 = {out_h}"
    assert conv["formulas"]["width"] == f"floor((11 + 2 + 1 - 3) / 2) + 1 = {out_w}"
    assert totals["input_elements"] == 3 * 15 * 11


def test_feature_maps_of_a_channels_first_model(rng, tmp_path):
    from tests.viz.helpers import check_png, panel_array
    ck.set_seed(0)
    model = ck.Sequential([L.Input((3, 9, 8)),
                           L.Conv2D(4, 3, padding="same", data_format="channels_first",
                                    name="conv")])
    image = rng.random((9, 8, 3)).astype(np.float32)                  # (H, W, C)
    fig = ck.viz.plot_feature_maps(model, image, path=tmp_path / "maps.png")
    check_png(tmp_path / "maps.png", fig)
    expected = model(image.transpose(2, 0, 1)[None])                 # (1, 4, 9, 8)
    for c in range(4):
        np.testing.assert_allclose(panel_array(fig, f"channel {c}"), expected[0, c], rtol=1e-6)
