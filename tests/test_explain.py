"""convkit.explain: formulas with the numbers filled in, parameter and MAC arithmetic,
receptive fields and the dropped-rows warning, checked against hand computations."""
import json

import numpy as np
import pytest

from convkit import shapes
from convkit.errors import ConvkitError, ShapeError
from convkit.explain import (explain_conv, explain_model, explain_pool, explain_totals,
                             explanation_dict, format_explanation, format_window,
                             print_explanation)

layers = pytest.importorskip("convkit.layers")
models = pytest.importorskip("convkit.models")


def mnist_convnet():
    from convkit.jobs import mnist_convnet as build
    return build()


@pytest.fixture(scope="module")
def rows():
    return {row["name"]: row for row in explain_model(mnist_convnet())}


# ------------------------------------------------------------------------ standalone windows
def test_valid_formula_numbers_filled_in():
    info = explain_conv(28, 5)
    assert info["formulas"]["height"] == "floor((28 + 0 + 0 - 5) / 1) + 1 = 24"
    assert info["output"] == [24, 24]
    assert info["pads"] == {"top": 0, "bottom": 0, "left": 0, "right": 0}
    assert info["warnings"] == []


def test_same_formula_and_asymmetric_pads():
    info = explain_conv(28, 3, strides=2, padding="same")
    assert info["formulas"]["width"] == "ceil(28 / 2) = 14"
    # total = (14 - 1)*2 + 3 - 28 = 1: the odd pad goes bottom/right
    assert info["pads"] == {"top": 0, "bottom": 1, "left": 0, "right": 1}
    assert info["pad_formulas"]["height"] == "max((14 - 1)*2 + 3 - 28, 0) = 1 -> 0 before, 1 after"


def test_explicit_padding_and_dilation_formula():
    info = explain_conv((10, 12), 3, padding=((1, 2), (0, 0)), dilation_rate=2)
    # effective kernel 2*(3-1)+1 = 5; height: floor((10 + 1 + 2 - 5) / 1) + 1 = 9
    assert info["formulas"]["height"] == "floor((10 + 1 + 2 - (2*(3 - 1) + 1)) / 1) + 1 = 9"
    assert info["formulas"]["width"] == "floor((12 + 0 + 0 - (2*(3 - 1) + 1)) / 1) + 1 = 8"
    assert info["receptive_field"] == [5, 5]


def test_dropped_rows_warning_28_kernel_3_stride_2():
    info = explain_conv(28, 3, strides=2)
    # (28 - 3) % 2 = 1: windows cover rows 0..26, row 27 is never read
    assert info["output"] == [13, 13]
    assert info["dropped_input"] == {"rows": 1, "cols": 1}
    assert len(info["warnings"]) == 1
    assert "1 input row at the bottom" in info["warnings"][0]
    assert "(28 + 0 + 0 - 3) % 2 = 1" in info["warnings"][0]
    assert explain_conv(27, 3, strides=2)["warnings"] == []


def test_dropped_padding_rows_are_not_input_rows():
    # 28 + 1 + 1 - 3 = 27, 27 % 2 = 1: the dropped row is the bottom pad, not input
    info = explain_conv(28, 3, strides=2, padding=1)
    assert info["dropped_input"] == {"rows": 0, "cols": 0}
    assert info["warnings"] == []


def test_stride_larger_than_kernel_warns():
    info = explain_conv(16, 1, strides=2)
    assert any("1 of every 2 input rows and columns are skipped" in w for w in info["warnings"])


def test_pool_ceil_mode_and_kind():
    info = explain_pool(7, 2, ceil_mode=True)
    assert info["output"] == [4, 4]
    assert info["formulas"]["height"] == "ceil((7 + 0 + 0 - 2) / 2) + 1 = 4"
    assert info["ceil_mode_extra"] == {"bottom": 1, "right": 1}
    assert info["warnings"] == []
    with pytest.raises(ConvkitError, match="kind"):
        explain_pool(7, 2, kind="median")
    text = format_window(explain_pool(26, 2, kind="avg"))
    assert text.startswith("avg pool: input 26x26") and "= 13" in text


def test_ceil_mode_last_window_rule_is_spelled_out():
    # PyTorch: 5 + 1 + 1 - 2 = 5, ceil(5/2)+1 = 4, but window 3 would start at 6 >= 5 + 1
    info = explain_pool(5, 2, strides=2, padding=1, ceil_mode=True)
    assert info["output"] == [3, 3]
    assert "last window would start in the right padding" in info["formulas"]["height"]


def test_too_small_input_raises_shape_error():
    with pytest.raises(ShapeError, match="explain_conv"):
        explain_conv(4, 5)


# ------------------------------------------------------------------------ receptive fields
def test_receptive_field_stack_hand_computed():
    fields = shapes.receptive_field_stack((28, 28), [(3,), (3,), (2, 2), (3, 1, "valid", 2)])
    # rf: 1+2=3, 3+2=5, 5+1*1=6, then dilated k_eff=5 at jump 2: 6 + 4*2 = 14
    assert [f.size for f in fields] == [(3, 3), (5, 5), (6, 6), (14, 14)]
    assert [f.jump for f in fields] == [(1, 1), (1, 1), (2, 2), (2, 2)]
    # centre of the first output pixel: 1, 2, 2.5, 2.5 + 2*2 = 6.5
    assert [f.start for f in fields] == [(1, 1), (2, 2), (2.5, 2.5), (6.5, 6.5)]


def test_same_padding_keeps_the_first_centre_at_zero():
    field = shapes.receptive_field_after(shapes.ReceptiveField(),
                                         shapes.window_geometry((9, 9), 3, 1, "same"))
    assert field.size == (3, 3) and field.start == (0.0, 0.0)


# ------------------------------------------------------------------------ whole models
def test_mnist_convnet_formulas_and_params(rows):
    assert rows["conv2d"]["formulas"]["height"] == "floor((28 + 0 + 0 - 3) / 1) + 1 = 26"
    assert rows["conv2d"]["params_formula"] == "3*3*1*32 + 32 = 320"
    assert rows["conv2d_1"]["params_formula"] == "3*3*32*64 + 64 = 18,496"
    assert rows["dense"]["params_formula"] == "1600*10 + 10 = 16,010"
    assert rows["max_pooling2d"]["formulas"]["width"] == "floor((26 + 0 + 0 - 2) / 2) + 1 = 13"
    assert rows["max_pooling2d"]["params"] == 0
    assert rows["flatten"]["output_shape"] == [None, 1600]
    assert rows["conv2d"]["padding"] == {"top": 0, "bottom": 0, "left": 0, "right": 0}


def test_param_breakdown_5x5_conv_832():
    model = models.Sequential([layers.Input((28, 28, 1)), layers.Conv2D(32, 5, name="c")])
    (row,) = explain_model(model)
    assert row["params_formula"] == "5*5*1*32 + 32 = 832"
    assert row["formulas"]["height"] == "floor((28 + 0 + 0 - 5) / 1) + 1 = 24"


def test_macs_hand_computed(rows):
    # conv: out_h*out_w*kh*kw*in*filters = 26*26*3*3*1*32
    assert rows["conv2d"]["macs"] == 26 * 26 * 3 * 3 * 1 * 32 == 194_688
    assert rows["conv2d"]["macs_formula"] == "26*26 * 3*3*1*32 = 194,688"
    assert rows["conv2d_1"]["macs"] == 11 * 11 * 3 * 3 * 32 * 64
    # dense: in*units
    assert rows["dense"]["macs"] == 1600 * 10
    assert rows["max_pooling2d"]["macs"] == 0


def test_grouped_and_depthwise_macs():
    model = models.Sequential([layers.Input((8, 8, 4)),
                               layers.Conv2D(6, 3, groups=2, name="g"),
                               layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")])
    rows = {r["name"]: r for r in explain_model(model)}
    assert rows["g"]["macs"] == 6 * 6 * 3 * 3 * (4 // 2) * 6
    assert rows["g"]["params_formula"] == "3*3*2*6 + 6 = 114"
    assert rows["dw"]["macs"] == 4 * 4 * 3 * 3 * 6 * 2


def test_receptive_field_and_jump_along_the_convnet(rows):
    assert rows["conv2d"]["receptive_field"] == [3, 3] and rows["conv2d"]["jump"] == [1, 1]
    assert rows["max_pooling2d"]["receptive_field"] == [4, 4]
    assert rows["max_pooling2d"]["jump"] == [2, 2]
    assert rows["conv2d_1"]["receptive_field"] == [8, 8]      # 4 + 2*2
    assert rows["max_pooling2d_1"]["receptive_field"] == [10, 10]
    assert rows["max_pooling2d_1"]["jump"] == [4, 4]
    assert rows["dense"]["receptive_field"] == [28, 28] and rows["dense"]["jump"] is None


def test_pool_dropping_a_row_warns_in_the_model(rows):
    # 11x11 pooled by 2: (11 - 2) % 2 = 1, the last row/column is dropped
    (warning,) = rows["max_pooling2d_1"]["warnings"]
    assert warning.startswith("max_pooling2d_1:") and "1 input row" in warning
    assert rows["max_pooling2d"]["warnings"] == []


def test_totals_and_json():
    model = mnist_convnet()
    data = explanation_dict(model)
    json.loads(json.dumps(data))           # plain JSON types only
    totals = data["totals"]
    assert totals["params"] == 34_826 and totals["non_trainable_params"] == 0
    assert totals["weight_bytes"] == 34_826 * 4
    assert totals["macs"] == 194_688 + 2_230_272 + 16_000
    outputs = 26 * 26 * 32 + 13 * 13 * 32 + 11 * 11 * 64 + 5 * 5 * 64 + 1600 + 1600 + 10
    assert totals["activation_elements"] == 28 * 28 + outputs
    assert totals["activation_bytes"] == 4 * (28 * 28 + outputs)


def test_format_explanation_text():
    text = format_explanation(explain_model(mnist_convnet()))
    assert "height/width  floor((28 + 0 + 0 - 3) / 1) + 1 = 26" in text
    assert "Total params: 34,826" in text
    assert "Multiply-accumulates per sample: 2,440,960" in text
    assert "the whole 28x28 input" in text


def test_print_explanation_and_summary_hook():
    model = mnist_convnet()
    seen = []
    print_explanation(model, seen.append)
    assert len(seen) == 1 and "3*3*1*32 + 32 = 320" in seen[0]
    seen.clear()
    model.summary(print_fn=seen.append, explain=True)
    assert any("3*3*32*64 + 64 = 18,496" in text for text in seen)


def test_functional_model_merges_receptive_fields():
    inp = layers.Input((16, 16, 3))
    a = layers.Conv2D(4, 3, padding="same", name="a")(inp)
    b = layers.Conv2D(4, 5, padding="same", name="b")(inp)
    merged = layers.Add(name="add")([a, b])
    c = layers.Conv2D(2, 3, name="c")(merged)
    rows = {r["name"]: r for r in explain_model(models.Model(inp, c))}
    assert rows["a"]["receptive_field"] == [3, 3]
    assert rows["b"]["receptive_field"] == [5, 5]
    assert rows["add"]["receptive_field"] == [5, 5]
    assert rows["c"]["receptive_field"] == [7, 7]
    totals = explain_totals(list(rows.values()))
    # the InputLayer row is not counted twice
    assert totals["activation_elements"] == 16 * 16 * 3 * 1 + 3 * 16 * 16 * 4 + 14 * 14 * 2


def test_unbuilt_model_is_refused():
    model = models.Sequential([layers.Conv2D(2, 3)])
    with pytest.raises(ConvkitError, match="not built"):
        explain_model(model)
