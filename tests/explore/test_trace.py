"""The explorer's numbers: every cell's arithmetic against the model's own activations, the
receptive-field maps against a brute-force probe, the map encoding and the softmax steps."""
import base64

import numpy as np
import pytest

from convkit.errors import ConvkitError
from convkit.explore import Explorer
from convkit.explore.images import ModelImage, prepare
from convkit.explore.trace import encode_maps

from .helpers import window_model


@pytest.fixture(scope="module")
def explorer():
    return Explorer(window_model())


@pytest.fixture(scope="module")
def trace(explorer):
    pixels = np.random.default_rng(5).random((13, 11, 2)).astype(np.float32)
    return explorer.run(ModelImage(pixels, "random", ""))


def test_levels_are_the_model_own_outputs(explorer, trace):
    x = trace.levels[0]
    expected = np.asarray(explorer.model.predict(x, verbose=0))
    # predict's compiled Dense head on a few rows sums in another order than the layer
    np.testing.assert_allclose(trace.levels[-1], expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(trace.levels[-1], explorer.model._forward([x], False)[0])
    assert [lv.shape[1:] for lv in trace.levels[1:]] == \
        [tuple(row["output_shape"][1:]) for row in explorer.rows]


def test_every_cell_matches_the_model(explorer, trace):
    """For every output cell of every conv and pooling layer: products summed plus bias
    through the activation equal the model's value (1e-5), padded cells flagged."""
    checked = 0
    for level, layer in enumerate(explorer.layers, start=1):
        if level not in explorer._geometries:
            continue
        _, rows, cols, channels = trace.levels[level].shape
        for row in range(rows):
            for col in range(cols):
                for channel in range(channels):
                    cell = explorer.cell_json(trace, level, row, col, channel)
                    assert cell["model_value"] == pytest.approx(
                        float(trace.levels[level][0, row, col, channel]))
                    assert abs(cell["activation"] - cell["model_value"]) <= 1e-5, cell
                    if cell["op"] == "conv":
                        products = np.asarray(cell["products"], dtype=np.float64)
                        assert products.sum() == pytest.approx(cell["sum"], abs=1e-9)
                        assert cell["pre_activation"] == pytest.approx(cell["sum"] + cell["bias"])
                        patch = np.asarray(cell["patch"], dtype=np.float64)
                        kernel = np.asarray(cell["kernel"], dtype=np.float64)
                        np.testing.assert_allclose(patch * kernel, products, rtol=1e-12)
                    checked += 1
    assert checked > 300


def test_cell_by_hand_same_padding_corner(explorer, trace):
    """Output (0, 0) of 'same' stride 2 3x3 on 13x11: pads top 1, left 1, so the window's
    first row and column are padding and the rest is input rows 0..1, columns 0..1."""
    cell = explorer.cell_json(trace, 1, 0, 0, 2)
    assert cell["input_rows"] == [-1, 0, 1] and cell["input_cols"] == [-1, 0, 1]
    assert cell["padded"] == [[True, True, True], [True, False, False], [True, False, False]]
    x = trace.levels[0][0]
    kernel = explorer.layers[0].get_weights()[0][:, :, :, 2]            # (3, 3, 2)
    bias = explorer.layers[0].get_weights()[1][2]
    z = float((x[0:2, 0:2, :] * kernel[1:, 1:, :]).sum() + bias)
    assert cell["activation"] == pytest.approx(np.tanh(z), abs=1e-6)
    assert cell["bias"] == pytest.approx(float(bias))


def test_max_pool_cell_names_the_winner(explorer, trace):
    cell = explorer.cell_json(trace, 3, 1, 1, 0)
    window = np.asarray([[np.nan if v is None else v for v in row] for row in cell["window"]])
    i, j = cell["argmax"]
    assert window[i, j] == np.nanmax(window) == pytest.approx(cell["model_value"])


def test_bad_cells_are_refused(explorer, trace):
    with pytest.raises(ConvkitError, match="outside"):
        explorer.cell_json(trace, 1, 99, 0, 0)
    with pytest.raises(ConvkitError, match="not the output of a convolution or pooling"):
        explorer.cell_json(trace, 8, 0, 0, 0)        # Flatten


def _probe_model(dilation):
    """Linear windows with positive weights: an output cell is non-zero exactly when a unit
    input pixel reaches it."""
    import convkit as ck
    L = ck.layers
    model = ck.Sequential([
        L.Input((17, 15, 1)),
        L.Conv2D(1, 3, strides=2, padding="same", name="a"),
        L.Conv2D(1, (2, 3), dilation_rate=dilation, padding=((1, 0), (0, 2)), name="b"),
        L.MaxPooling2D(2, strides=1, name="c"),
        L.AveragePooling2D(2, padding="same", name="d"),
    ])
    for layer in model.layers:
        if layer.get_weights():
            kernel, bias = layer.get_weights()
            layer.set_weights([np.ones_like(kernel), np.zeros_like(bias)])
    return model


@pytest.mark.parametrize("dilation", [1, (1, 2)])
def test_receptive_maps_against_a_brute_force_probe(dilation):
    """The drawn box is the receptive field (explain's size) clipped to the map: exactly the
    pixels that reach the cell without dilation; with dilation, whose holes and padded taps
    the box does not follow, it contains them."""
    explorer = Explorer(_probe_model(dilation))
    h, w = 17, 15
    touched = {}                 # (level, row, col) -> input pixels that change it
    for i in range(h):
        for j in range(w):
            x = np.zeros((h, w, 1), np.float32)
            x[i, j] = 1.0
            trace = explorer.run(prepare(x, explorer.input_shape, "probe"))
            for level in range(1, len(trace.levels)):
                for r, c in zip(*np.nonzero(trace.levels[level][0, :, :, 0])):
                    touched.setdefault((level, r, c), []).append((i, j))
    for (level, r, c), pixels in touched.items():
        rows, cols = zip(*pixels)
        probe = {m["level"]: m for m in explorer.receptive_maps(level)}[0]
        lo = (max(r * probe["jump"][0] + probe["lo"][0], 0),
              max(c * probe["jump"][1] + probe["lo"][1], 0))
        hi = (min(r * probe["jump"][0] + probe["hi"][0], h - 1),
              min(c * probe["jump"][1] + probe["hi"][1], w - 1))
        if dilation == 1:
            assert (min(rows), min(cols)) == lo and (max(rows), max(cols)) == hi, (level, r, c)
        else:
            assert lo <= (min(rows), min(cols)) and (max(rows), max(cols)) <= hi, (level, r, c)
    sizes = [[m["hi"][a] - m["lo"][a] + 1 for a in range(2)] for m in
             (explorer.receptive_maps(level)[-1] for level in range(1, 5))]
    assert sizes == [row["receptive_field"] for row in explorer.rows]


def test_receptive_maps_through_cropping_and_prelu():
    """Cropping shifts the box by the rows and columns it drops; PReLU keeps every pixel
    where it is (probed as above: exactly the pixels that reach each cell)."""
    import convkit as ck
    L = ck.layers
    model = ck.Sequential([L.Input((13, 11, 1)),
                           L.Conv2D(1, 3, strides=2, padding="same", name="a"),
                           L.Cropping2D(((1, 0), (0, 1)), name="crop"),
                           L.PReLU(alpha_initializer="ones", name="prelu"),
                           L.Conv2D(1, (2, 3), name="b")])
    for layer in model.layers:
        if len(layer.get_weights()) == 2:
            kernel, bias = layer.get_weights()
            layer.set_weights([np.ones_like(kernel), np.zeros_like(bias)])
    explorer = Explorer(model)
    last = len(explorer.layers)
    assert [m["level"] for m in explorer.receptive_maps(last)] == [3, 2, 1, 0]
    h, w = 13, 11
    touched = {}
    for i in range(h):
        for j in range(w):
            x = np.zeros((h, w, 1), np.float32)
            x[i, j] = 1.0
            trace = explorer.run(prepare(x, explorer.input_shape, "probe"))
            for r, c in zip(*np.nonzero(trace.levels[last][0, :, :, 0])):
                touched.setdefault((r, c), []).append((i, j))
    assert touched
    probe = explorer.receptive_maps(last)[-1]
    for (r, c), pixels in touched.items():
        rows, cols = zip(*pixels)
        lo = (max(r * probe["jump"][0] + probe["lo"][0], 0),
              max(c * probe["jump"][1] + probe["lo"][1], 0))
        hi = (min(r * probe["jump"][0] + probe["hi"][0], h - 1),
              min(c * probe["jump"][1] + probe["hi"][1], w - 1))
        assert (min(rows), min(cols)) == lo and (max(rows), max(cols)) == hi, (r, c)


def test_encode_maps_round_trip(rng):
    maps = rng.normal(size=(5, 7, 3)).astype(np.float32)
    maps[:, :, 2] = 0.25                                     # a flat channel
    encoded = encode_maps(maps)
    q = np.frombuffer(base64.b64decode(encoded["data"]), np.uint8).reshape(3, 5, 7)
    lo, hi = np.asarray(encoded["lo"]), np.asarray(encoded["hi"])
    decoded = lo[:, None, None] + q / 255.0 * (hi - lo)[:, None, None]
    np.testing.assert_allclose(decoded, maps.transpose(2, 0, 1),
                               atol=float((hi - lo).max()) / 255 / 2 + 1e-6)
    assert (q[2] == 0).all() and encoded["lo"][2] == encoded["hi"][2] == 0.25


def test_softmax_arithmetic(explorer, trace):
    data = explorer.trace_json(trace)
    head = data["levels"][-1]
    assert head["activation"] == "softmax"
    logits = np.asarray(head["logits"])
    exps = np.exp(logits - logits.max())
    np.testing.assert_allclose(head["softmax"]["exps"], exps, rtol=1e-9)
    assert head["softmax"]["sum"] == pytest.approx(exps.sum())
    np.testing.assert_allclose(head["softmax"]["probabilities"], head["values"], atol=1e-6)
    assert data["prediction"][0]["index"] == int(np.argmax(head["values"]))


def test_model_json_has_the_explain_cards(explorer):
    data = explorer.model_json()
    assert [layer["name"] for layer in data["layers"]][1:] == [lay.name for lay in
                                                               explorer.layers]
    same = data["layers"][1]
    assert same["window"]["pads"] == [[1, 1], [1, 1]] and same["window"]["output"] == [7, 6]
    assert "ceil(13 / 2) = 7" in same["explain_text"]
    assert data["totals"]["params"] == explorer.model.count_params()


def residual_model():
    """A functional graph: a skip connection (Add), a side branch (Concatenate), pooling."""
    import convkit as ck
    L = ck.layers
    ck.set_seed(11)
    inputs = L.Input((10, 9, 1))
    stem = L.Conv2D(4, 3, padding="same", activation="relu", name="stem")(inputs)
    branch = L.Conv2D(4, 3, padding="same", name="branch")(stem)
    block = L.ReLU(name="relu")(L.Add(name="add")([stem, branch]))
    side = L.Conv2D(2, 1, activation="relu", name="side")(inputs)
    merged = L.Concatenate(name="concat")([block, side])
    pooled = L.MaxPooling2D(2, name="pool")(merged)
    outputs = L.Dense(3, activation="softmax", name="head")(L.Flatten(name="flat")(pooled))
    return ck.Model(inputs, outputs, name="residual")


def test_functional_graphs(rng):
    model = residual_model()
    explorer = Explorer(model)
    names = [layer.name for layer in explorer.layers]
    assert "input_layer" not in names and names[0] == "stem"
    level = {name: i for i, name in enumerate(names, start=1)}
    assert explorer.parents[level["add"]] == [level["stem"], level["branch"]]
    assert explorer.parents[level["side"]] == [0]
    trace = explorer.run(ModelImage(rng.random((10, 9, 1)).astype(np.float32), "r", ""))
    np.testing.assert_allclose(trace.levels[explorer.output_level],
                               model.predict(trace.levels[0], verbose=0), rtol=1e-6)
    for name in ("stem", "branch", "side", "pool"):
        _, rows, cols, channels = trace.levels[level[name]].shape
        for row in range(rows):
            for col in range(cols):
                for channel in range(channels):
                    cell = explorer.cell_json(trace, level[name], row, col, channel)
                    assert abs(cell["activation"] - cell["model_value"]) <= 1e-5
    # the field follows single parents and stops at the merge
    assert [m["level"] for m in explorer.receptive_maps(level["branch"])] == [level["stem"], 0]
    assert [m["level"] for m in explorer.receptive_maps(level["pool"])] == [level["concat"]]
    assert explorer.trace_json(trace)["prediction"][0]["index"] == \
        int(np.argmax(trace.levels[explorer.output_level]))


def test_channels_first_and_several_inputs_are_refused():
    import convkit as ck
    first = ck.Sequential([ck.layers.Input((1, 8, 8)),
                           ck.layers.Conv2D(2, 3, data_format="channels_first")])
    with pytest.raises(ConvkitError, match="channels_first"):
        Explorer(first)
    a, b = ck.layers.Input((8, 8, 1)), ck.layers.Input((8, 8, 1))
    two = ck.Model([a, b], ck.layers.Add()([a, b]))
    with pytest.raises(ConvkitError, match="explorer needs images"):
        Explorer(two)
