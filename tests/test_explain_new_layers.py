"""``explain_model`` on the layers beyond Conv2D / pooling / Dense: hand-checked formulas,
parameter and MAC counts, and receptive fields checked against a brute-force one (perturb
each input pixel of a float64 model with random weights and see which outputs change)."""
import math

import numpy as np
import pytest

from convkit import config, layers, models, shapes
from convkit.cli import main
from convkit.explain import explain_model, format_explanation

L = layers


def rows_of(model) -> dict:
    return {row["name"]: row for row in explain_model(model)}


def chain(input_shape, *stack):
    return models.Sequential([L.Input(input_shape), *stack])


# ------------------------------------------------------------------------ hand-checked rows
def test_conv2d_transpose_same():
    row = rows_of(chain((7, 7, 2), L.Conv2DTranspose(4, 3, strides=2, padding="same",
                                                     name="t")))["t"]
    assert row["output_shape"] == [None, 14, 14, 4]
    assert row["formulas"] == {"height": "7*2 = 14", "width": "7*2 = 14"}
    # full output (7 - 1)*2 + 3 = 15, one cell cropped at the bottom/right
    assert row["padding"] == {"top": 0, "bottom": 1, "left": 0, "right": 1}
    assert row["pad_formulas"]["height"] == "full (7 - 1)*2 + 3 = 15, cropped 0 before, 1 after"
    assert row["params_formula"] == "3*3*4*2 + 4 = 76"           # kernel (kh, kw, out, in)
    assert row["macs"] == 7 * 7 * 3 * 3 * 4 * 2 == 3528
    assert row["macs_formula"] == "7*7 * 3*3*4*2 = 3,528"
    assert row["receptive_field"] == [2, 2] and row["jump"] == [0.5, 0.5]
    assert "up to 2x2 input pixels, jump 1/2x1/2" in format_explanation([row])


@pytest.mark.parametrize("padding, output_padding, expected", [
    ("valid", None, "(7 - 1)*2 + max(3, 2) = 15"),
    ("valid", 1, "(7 - 1)*2 + 3 - 2*0 + 1 = 16"),
    ("same", 1, "(7 - 1)*2 + 3 - 2*1 + 1 = 14"),
])
def test_conv2d_transpose_keras_size_rule(padding, output_padding, expected):
    row = rows_of(chain((7, 7, 1), L.Conv2DTranspose(1, 3, strides=2, padding=padding,
                                                     output_padding=output_padding,
                                                     name="t")))["t"]
    assert row["formulas"]["height"] == expected
    assert row["output_shape"][1] == int(expected.rsplit("= ", 1)[1])


def test_separable_conv2d():
    row = rows_of(chain((10, 10, 8), L.SeparableConv2D(16, 3, depth_multiplier=2,
                                                       name="s")))["s"]
    assert row["formulas"]["height"] == "floor((10 + 0 + 0 - 3) / 1) + 1 = 8"
    assert row["params"] == 3 * 3 * 8 * 2 + 8 * 2 * 16 + 16 == 416
    assert row["params_formula"] == "3*3*8*2 + 8*2*16 + 16 = 416"
    assert row["macs"] == 8 * 8 * (3 * 3 * 8 * 2 + 8 * 2 * 16) == 25600
    assert row["macs_formula"] == "8*8 * (3*3*8*2 + 8*2*16) = 25,600"
    assert row["receptive_field"] == [3, 3] and row["jump"] == [1, 1]


def test_upsampling_resizing_cropping_formulas():
    rows = rows_of(chain((5, 4, 1), L.UpSampling2D((2, 3), name="up"),
                         L.Resizing(8, 6, name="rs"), L.Cropping2D(((1, 2), (0, 3)), name="cr")))
    assert rows["up"]["formulas"] == {"height": "5*2 = 10", "width": "4*3 = 12"}
    assert rows["up"]["receptive_field"] == [1, 1]
    assert rows["up"]["jump"] == [0.5, pytest.approx(1 / 3)]
    assert rows["rs"]["formulas"] == {"height": "resized 10 -> 8 (given)",
                                      "width": "resized 12 -> 6 (given)"}
    assert rows["rs"]["receptive_field"] == [2, 2]               # bilinear: two neighbours
    assert rows["cr"]["formulas"] == {"height": "8 - 1 - 2 = 5", "width": "6 - 0 - 3 = 3"}
    assert rows["cr"]["macs"] == 0 and rows["cr"]["params"] == 0


def test_resizing_crop_to_aspect_ratio_formula():
    row = rows_of(chain((10, 20, 1), L.Resizing(5, 5, crop_to_aspect_ratio=True,
                                                name="rs")))["rs"]
    assert row["formulas"]["width"] == ("20 - 5 - 5 = 10 (centred crop to the aspect ratio), "
                                        "resized 10 -> 5 (given)")
    assert row["formulas"]["height"] == "resized 10 -> 5 (given)"


def test_cropping_and_random_crop_shift_the_start():
    model = chain((10, 8, 1), L.Conv2D(1, 3, name="c"), L.Cropping2D(((1, 0), (2, 0)),
                                                                      name="cr"),
                  L.RandomCrop(4, 4, name="rc"))
    explain_model(model)
    field = shapes.ReceptiveField((3, 3), (1, 1), (1.0, 1.0))        # after the 3x3 conv
    field = shapes.receptive_field_after_crop(field, (1, 2))
    assert field.start == (2.0, 3.0)
    rows = rows_of(model)
    # RandomCrop at inference keeps the centred 4x4 of 7x4: from row (7 - 4) // 2 = 1
    assert rows["rc"]["formulas"]["height"] == "7 -> 4 (centred window at inference, from 1)"
    assert rows["rc"]["receptive_field"] == [3, 3]


def test_conv1d_causal_and_1d_pools():
    rows = rows_of(chain((20, 3), L.Conv1D(4, 3, padding="causal", dilation_rate=2, name="c"),
                         L.MaxPooling1D(2, name="mp"),
                         L.AveragePooling1D(3, 2, padding="same", name="ap"),
                         L.UpSampling1D(3, name="up"), L.GlobalAveragePooling1D(name="g")))
    conv = rows["c"]
    assert conv["padding"] == {"before": 4, "after": 0} and conv["padding_mode"] == "causal"
    assert conv["formulas"] == {"steps": "floor((20 + 4 + 0 - (2*(3 - 1) + 1)) / 1) + 1 = 20"}
    assert conv["params_formula"] == "3*3*4 + 4 = 40"
    assert conv["macs_formula"] == "20 * 3*3*4 = 720"
    assert conv["receptive_field"] == [1, 5] and conv["jump"] == [1, 1]
    assert rows["mp"]["formulas"] == {"steps": "floor((20 + 0 + 0 - 2) / 2) + 1 = 10"}
    assert rows["mp"]["receptive_field"] == [1, 6] and rows["mp"]["jump"] == [1, 2]
    assert rows["ap"]["formulas"] == {"steps": "ceil(10 / 2) = 5"}
    assert rows["ap"]["pad_formulas"] == {
        "steps": "max((5 - 1)*2 + 3 - 10, 0) = 1 -> 0 before, 1 after"}
    assert rows["ap"]["receptive_field"] == [1, 10] and rows["ap"]["jump"] == [1, 4]
    assert rows["up"]["formulas"] == {"steps": "5*3 = 15"}
    text = format_explanation(list(rows.values()))
    assert "  steps         floor((20 + 0 + 0 - 2) / 2) + 1 = 10" in text
    assert "padding       causal: before 4, after 0" in text
    assert "5 input steps, jump 1" in text
    assert "the whole 20-step input" in text


def test_1d_pool_dropping_a_step_warns():
    row = rows_of(chain((9, 2), L.MaxPooling1D(2, name="mp")))["mp"]
    assert len(row["warnings"]) == 1
    assert "never read 1 input step at the end" in row["warnings"][0]
    assert "(9 + 0 + 0 - 2) % 2 = 1" in row["warnings"][0]


def test_regridding_layers_have_no_spatial_field():
    rows = rows_of(chain((6, 6, 2), L.Conv2D(2, 3, name="c"), L.Permute((2, 1, 3), name="p"),
                         L.Reshape((-1, 2), name="r"), L.Conv1D(2, 3, name="c1"),
                         L.Flatten(name="f"), L.Dense(3, name="d")))
    assert rows["c"]["receptive_field"] == [3, 3]
    for name in ("p", "r", "c1", "f"):
        assert rows[name]["receptive_field"] is None and rows[name]["jump"] is None
    assert "not defined past Permute" in rows["p"]["receptive_note"]
    assert "not defined past Permute" in format_explanation([rows["p"]])
    assert rows["d"]["receptive_field"] == [6, 6] and rows["d"]["jump"] is None
    lam = rows_of(chain((6, 6, 2), L.Lambda(lambda x: x * 2, name="lam")))["lam"]
    assert lam["receptive_field"] is None and "Lambda" in lam["receptive_note"]


def test_elementwise_layers_keep_the_field_and_count_their_params():
    rows = rows_of(chain((6, 6, 4), L.Conv2D(4, 3, name="c"), L.LeakyReLU(name="lr"),
                         L.PReLU(shared_axes=[1, 2], name="pr"), L.ELU(name="elu"),
                         L.Softmax(name="sm"), L.LayerNormalization(name="ln"),
                         L.SpatialDropout2D(0.5, name="sd"), L.GaussianNoise(0.1, name="gn"),
                         L.Rescaling(0.5, name="rs"), L.RandomFlip(name="rf"),
                         L.RandomRotation(0.1, name="rr"), L.RandomZoom(0.1, name="rz"),
                         L.RandomTranslation(0.1, 0.1, name="rt"),
                         L.RandomContrast(0.1, name="rco")))
    for name in ("lr", "pr", "elu", "sm", "ln", "sd", "gn", "rs", "rf", "rr", "rz", "rt", "rco"):
        assert rows[name]["receptive_field"] == [3, 3] and rows[name]["jump"] == [1, 1], name
        assert rows[name]["macs"] == 0
    assert rows["pr"]["params_formula"] == "1*1*4 = 4"             # alpha shared over h, w
    assert rows["ln"]["params_formula"] == "4 + 4 = 8"              # gamma, beta
    assert rows_of(chain((6, 6, 4), L.PReLU(name="p")))["p"]["params_formula"] == \
        "6*6*4 = 144"


def test_normalising_over_space_sees_the_whole_input():
    rows = rows_of(chain((6, 5, 2), L.Conv2D(2, 3, name="c"), L.Softmax(axis=1, name="sm")))
    assert rows["sm"]["receptive_field"] == [6, 5] and rows["sm"]["jump"] is None
    rows = rows_of(chain((6, 5, 2), L.LayerNormalization(axis=[1, 2, 3], name="ln")))
    assert rows["ln"]["receptive_field"] == [6, 5]


@pytest.mark.parametrize("merge", [L.Subtract, L.Average, L.Maximum, L.Minimum])
def test_merge_layers_take_the_largest_field(merge):
    x = L.Input((9, 9, 1))
    a = L.Conv2D(2, 3, padding="same", name="a")(x)
    b = L.Conv2D(2, 5, padding="same", name="b")(x)
    model = models.Model(x, merge(name="m")([a, b]))
    rows = rows_of(model)
    assert rows["m"]["receptive_field"] == [5, 5] and rows["m"]["jump"] == [1, 1]
    assert rows["m"]["params"] == 0 and rows["m"]["macs"] == 0


def test_shape_helpers_hand_computed():
    assert shapes.transpose_taps(3, 2) == 2        # outputs read 1 or 2 inputs
    assert shapes.transpose_taps(2, 3) == 1
    assert shapes.transpose_taps(3, 1, 2) == 5     # taps at i, i-2, i-4
    up = shapes.receptive_field_after_resize(shapes.ReceptiveField(), (4, 4), (8, 12))
    assert up.size == (1, 1) and up.jump == (0.5, pytest.approx(1 / 3))


# ------------------------------------------------------------------------ brute force
@pytest.fixture
def float64():
    before = config.floatx()
    config.set_floatx("float64")
    yield
    config.set_floatx(before)


def influence(model, shape, rng):
    """``(H, W, oh, ow)`` booleans: does input pixel (i, j) change output pixel (r, c)?
    Each pixel (all channels) is pushed up and down by 1000 in one batch; max pooling
    therefore sees it one way or the other."""
    h, w = shape[:2]
    base = rng.standard_normal((1,) + shape)
    pushed = np.repeat(base, 2 * h * w, axis=0).reshape((h, w, 2) + shape)
    for i in range(h):
        for j in range(w):
            pushed[i, j, 0, i, j] += 1e3
            pushed[i, j, 1, i, j] -= 1e3
    x = np.concatenate([base, pushed.reshape((-1,) + shape)])
    y = np.asarray(model(x, training=False), dtype=np.float64)
    if y.ndim == 3:                                   # (N, steps, C) -> (N, 1, steps, C)
        y = y[:, None]
    # float32 layers: an output the pushed pixel does not reach may still differ from the
    # base image's by rounding, since a matrix product (OpenBLAS) may round a row
    # differently at another place in the batch; a push of 1e3 changes a reached one by far
    # more than this
    changed = np.abs(y[1:] - y[:1]) > 1e-5 * (1 + np.abs(y[:1]))
    changed = changed.reshape((h, w, 2) + y.shape[1:]).any(axis=(2, -1))
    return changed


def randomise(model, rng):
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([rng.standard_normal(v.shape) for v in weights])


def check_against_brute_force(model, shape, rng, exact_start):
    randomise(model, rng)
    changed = influence(model, shape, rng)
    h, w, oh, ow = changed.shape
    boxes = {}
    for r in range(oh):
        for c in range(ow):
            rows, cols = np.nonzero(changed[:, :, r, c])
            if rows.size:
                boxes[r, c] = (rows.min(), rows.max(), cols.min(), cols.max())
    span = (max(b[1] - b[0] + 1 for b in boxes.values()),
            max(b[3] - b[2] + 1 for b in boxes.values()))
    row = explain_model(model)[-1]
    assert tuple(row["receptive_field"]) == tuple(map(math.ceil, field_of(model, (h, w)).size))
    field = field_of(model, (h, w))
    for axis in range(2):
        check_size(field.size[axis], span[axis])
    # every output whose window lies wholly inside the input is centred where the formula says
    full = [(r, c, b) for (r, c), b in boxes.items()
            if b[1] - b[0] + 1 == span[0] and b[3] - b[2] + 1 == span[1]]
    assert full
    for r, c, (top, bottom, left, right) in full:
        for centre, start, jump, o in (((top + bottom) / 2, field.start[0], field.jump[0], r),
                                       ((left + right) / 2, field.start[1], field.jump[1], c)):
            if exact_start:
                assert centre == pytest.approx(start + o * jump), (r, c)
            else:                      # a finer grid: centred within half an input pixel
                assert abs(centre - (start + o * jump)) <= 0.5 + 1e-9, (r, c)


def field_of(model, whole, steps=False) -> shapes.ReceptiveField:
    """The field (size, jump, start) the explanation follows to the model's last layer."""
    from convkit import explain
    field = shapes.ReceptiveField()
    for layer in model.layers:
        field = explain._explain_layer(layer, field, whole, steps).pop("_field")
    return field


def check_size(size, span):
    """A whole size is exact; past a finer grid the widest window reads the size rounded up
    or down (by how it lines up with the coarser pixels)."""
    if float(size).is_integer():
        assert span == size, (size, span)
    else:
        assert math.floor(size) <= span <= math.ceil(size), (size, span)


BRUTE_CASES = {
    "transpose same": ((10, 10, 2), [L.Conv2DTranspose(2, 3, strides=2, padding="same")], False),
    "transpose dilated": ((10, 10, 1), [L.Conv2DTranspose(1, 3, dilation_rate=2)], True),
    "conv then transpose": ((10, 10, 1), [L.Conv2D(2, 3, strides=2),
                                          L.Conv2DTranspose(2, 3, strides=2)], True),
    "transpose then conv": ((8, 8, 1), [L.Conv2DTranspose(2, 4, strides=2, padding="same"),
                                        L.LeakyReLU(), L.Conv2D(2, 2)], False),
    "separable pool crop": ((11, 10, 2), [L.SeparableConv2D(2, 3, padding="same"),
                                          L.MaxPooling2D(2), L.Cropping2D(((1, 0), (0, 1))),
                                          L.Conv2D(2, 2), L.ELU()], True),
    "upsample bilinear": ((8, 8, 1), [L.Conv2D(2, 3), L.UpSampling2D(2, interpolation="bilinear"),
                                      L.Conv2D(2, 3)], False),
    "upsample nearest": ((8, 8, 1), [L.UpSampling2D((2, 3)), L.Conv2D(3, 2),
                                     L.LayerNormalization()], False),
    "resizing": ((8, 7, 1), [L.Resizing(13, 5), L.PReLU()], False),
    "1-D": ((16,), [L.Conv1D(2, 3, padding="causal", dilation_rate=2), L.MaxPooling1D(2),
                    L.Conv1D(2, 2, strides=2), L.AveragePooling1D(2, padding="same")], True),
    "1-D upsampled": ((12,), [L.Conv1D(2, 3), L.UpSampling1D(2), L.Conv1D(1, 3)], False),
}


@pytest.mark.parametrize("name", list(BRUTE_CASES))
def test_receptive_field_matches_brute_force(name, float64):
    shape, stack, exact_start = BRUTE_CASES[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    if len(shape) == 1:                      # steps: (steps, 1 channel) seen as a 1 x steps image
        model = chain((shape[0], 1), *stack)
        check_against_brute_force_steps(model, shape[0], rng, exact_start)
    else:
        check_against_brute_force(chain(shape, *stack), shape, rng, exact_start)


def check_against_brute_force_steps(model, steps, rng, exact_start):
    """The 1-D case through the same check: the sequence ``(steps, 1)`` is the image row
    ``(1, steps, 1)``."""
    class AsImage:
        layers = model.layers

        def __call__(self, x, training=False):
            return model(x[:, 0], training=training)
    wrapper = AsImage()
    randomise(model, rng)
    changed = influence(wrapper, (1, steps, 1), rng)[0, :, 0]          # (steps, out_steps)
    boxes = {o: (ii.min(), ii.max()) for o in range(changed.shape[1])
             for ii in [np.nonzero(changed[:, o])[0]] if ii.size}
    span = max(b - a + 1 for a, b in boxes.values())
    field = field_of(model, (1, steps), steps=True)
    assert explain_model(model)[-1]["receptive_field"] == [1, math.ceil(field.size[1])]
    check_size(field.size[1], span)
    for o, (a, b) in boxes.items():
        if b - a + 1 == span:
            expected = field.start[1] + o * field.jump[1]
            if exact_start:
                assert (a + b) / 2 == pytest.approx(expected), o
            else:
                assert abs((a + b) / 2 - expected) <= 0.5 + 1e-9, o


# ------------------------------------------------------------------------ whole models
def every_new_layer(with_lambda: bool = True):
    image = [L.Rescaling(1 / 255), L.RandomFlip(), L.RandomRotation(0.1), L.RandomZoom(0.1),
             L.RandomTranslation(0.1, 0.1), L.RandomContrast(0.1), L.RandomCrop(10, 10),
             L.Conv2DTranspose(4, 3, strides=2, padding="same"), L.LeakyReLU(), L.PReLU(),
             L.SeparableConv2D(6, 3, depth_multiplier=2), L.ELU(), L.LayerNormalization(),
             L.UpSampling2D(2, interpolation="bilinear"), L.Resizing(20, 16),
             L.Cropping2D(((1, 2), (0, 1))), L.SpatialDropout2D(0.1), L.GaussianNoise(0.1),
             L.Softmax(), L.Permute((2, 1, 3)), L.Reshape((-1, 6)),
             L.Conv1D(3, 3, padding="causal"), L.MaxPooling1D(2), L.AveragePooling1D(2),
             L.UpSampling1D(2)]
    x = L.Input((12, 12, 2))
    y = x
    for layer in image:
        y = layer(y)
    branches = [L.GlobalAveragePooling1D()(y), L.GlobalMaxPooling1D()(y)]
    merged = [merge()(branches) for merge in (L.Subtract, L.Average, L.Maximum, L.Minimum)]
    y = L.Average()(merged)
    if with_lambda:
        y = L.Lambda(lambda t: t * 2)(y)
    return models.Model(x, L.Dense(2)(y))


def test_summary_explain_on_every_new_layer(capsys):
    model = every_new_layer()
    model.summary(explain=True)
    out = capsys.readouterr().out
    for text in ("Conv2DTranspose", "10*2 = 20", "3*3*4*2 + 4*2*6 + 6 = 126",
                 "not known past Lambda", "Total params"):
        assert text in out, text
    # every layer has a row; the totals add the layers' MACs up
    rows = explain_model(model)
    assert len(rows) == len(model.layers)
    assert sum(r["macs"] for r in rows) == sum(r["macs"] for r in rows if r["macs_formula"])


def test_cli_summary_explain_on_every_new_layer(tmp_path, capsys):
    model = every_new_layer(with_lambda=False)
    if not hasattr(model, "save"):
        pytest.skip("model saving is not available")
    path = tmp_path / "every.convkit"
    model.save(str(path))
    assert main(["summary", str(path), "--explain"]) == 0
    out = capsys.readouterr().out
    assert "18*18 * (3*3*4*2 + 4*2*6) = 38,880" in out
    assert "steps" in out and "receptive" in out
    assert main(["summary", str(path), "--json"]) == 0
    assert '"receptive_note"' in capsys.readouterr().out


def test_fractional_sizes_are_reported_rounded_up():
    # transposed (2 pixels, jump 1/2) then a 2x2 conv: 2 + 1*(1/2) = 2.5 -> up to 3 pixels
    row = explain_model(chain((6, 6, 1), L.Conv2DTranspose(1, 3, strides=2, padding="same"),
                              L.Conv2D(1, 2)))[-1]
    assert row["receptive_field"] == [3, 3]
    assert all(isinstance(v, int) for v in row["receptive_field"])
    assert "up to 3x3 input pixels, jump 1/2x1/2" in format_explanation([row])
