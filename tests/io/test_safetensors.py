"""Reading .safetensors files without the safetensors package, and the module order they
lose: names are stored sorted as text, so 'features.10' comes before 'features.2'."""
import json

import numpy as np
import pytest

import convkit as ck
from convkit.errors import FileFormatError, ShapeError
from convkit.io.torch_import import load_torch_state_dict, read_safetensors
from tests.fuzz.crafting import safetensors_bytes, torch_seed_model, torch_style_state

L = ck.layers


def _write(tmp_path, data: bytes, name="w.safetensors"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_round_trip_of_every_dtype(tmp_path):
    tensors = {"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
               "b": np.array([1.5, -2.0], np.float64), "c": np.array([3], np.int64),
               "d": np.array([[True, False]]), "e": np.zeros((0, 4), np.float16),
               "f": np.array(7, np.uint8)}
    got = read_safetensors(_write(tmp_path, safetensors_bytes(tensors, {"format": "pt"})))
    assert set(got) == set(tensors)
    for name, value in tensors.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape, name
        np.testing.assert_array_equal(got[name], value)


def test_bfloat16_is_widened_to_float32(tmp_path):
    values = np.array([1.0, -2.5, 3.140625], np.float32)
    high = (values.view(np.uint32) >> 16).astype("<u2")         # exact in bfloat16
    header = json.dumps({"x": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}}).encode()
    data = len(header).to_bytes(8, "little") + header + high.tobytes()
    np.testing.assert_array_equal(read_safetensors(_write(tmp_path, data))["x"], values)


def test_names_come_back_in_natural_order(tmp_path):
    tensors = {f"features.{i}.weight": np.zeros(1, np.float32) for i in (0, 2, 10, 1)}
    path = _write(tmp_path, safetensors_bytes(tensors))
    assert list(read_safetensors(path)) == [f"features.{i}.weight" for i in (0, 1, 2, 10)]


def test_two_digit_modules_land_in_their_own_layers(tmp_path):
    """The bug: with the text order, features.10 went to the third conv and every later
    layer was shifted by one, and strict loading passed since all convs have one shape."""
    source = torch_seed_model()
    path = _write(tmp_path, safetensors_bytes(torch_style_state(source)))
    target = torch_seed_model()
    pairs = load_torch_state_dict(target, path)
    assert [p for _, p in pairs] == [f"features.{i}" for i in (*range(10), 11)]
    for got, want in zip(target.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_a_state_dict_sorted_as_text_is_reordered_too():
    source = torch_seed_model()
    state = dict(sorted(torch_style_state(source).items()))         # like load_file gives
    target = torch_seed_model()
    load_torch_state_dict(target, state)
    for got, want in zip(target.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_modules_sorted_before_the_features_still_fit_by_shape(tmp_path):
    """'classifier.*' sorts before 'features.*'; each layer takes the first module that fits."""
    ck.set_seed(0)
    model = ck.Sequential([L.Input((1, 1, 3)), L.Conv2D(4, 1), L.Flatten(), L.Dense(2)])
    conv, dense = model.layers[0].get_weights(), model.layers[2].get_weights()
    state = {"features.0.weight": conv[0].transpose(3, 2, 0, 1), "features.0.bias": conv[1],
             "classifier.1.weight": dense[0].T, "classifier.1.bias": dense[1]}
    target = ck.Sequential([L.Input((1, 1, 3)), L.Conv2D(4, 1), L.Flatten(), L.Dense(2)])
    pairs = load_torch_state_dict(target, _write(tmp_path, safetensors_bytes(state)))
    assert [p for _, p in pairs] == ["features.0", "classifier.1"]
    for got, want in zip(target.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_strict_mode_refuses_a_module_that_fits_no_layer(tmp_path):
    state = torch_style_state(torch_seed_model())
    state["features.5.weight"] = np.zeros((2, 3, 1, 1), np.float32)  # wrong in-channels
    path = _write(tmp_path, safetensors_bytes(state))
    with pytest.raises(ShapeError, match="no module of the state dict fits"):
        load_torch_state_dict(torch_seed_model(), path)


def _header_file(tmp_path, header: dict, data: bytes = b""):
    text = json.dumps(header).encode()
    return _write(tmp_path, len(text).to_bytes(8, "little") + text + data)


@pytest.mark.parametrize("header, data, fragment", [
    ({"x": {"dtype": "F32", "shape": [1 << 40], "data_offsets": [0, 4]}}, b"\0" * 4, "needs"),
    ({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 1 << 40]}}, b"\0" * 4,
     "invalid data_offsets"),
    ({"x": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}}, b"\0", "dtype"),
    ({"x": {"dtype": {"F32": 1}, "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, "dtype"),
    ({"x": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, "gap"),
    ({"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4, "shape"),
    ({"x": [1, 2]}, b"", "object"),
    ({"__metadata__": {"a": 1}}, b"", "__metadata__"),
])
def test_damaged_headers_are_file_format_errors(tmp_path, header, data, fragment):
    with pytest.raises(FileFormatError, match=fragment):
        read_safetensors(_header_file(tmp_path, header, data))


def test_a_header_longer_than_the_file_is_refused_before_reading(tmp_path):
    path = _write(tmp_path, (1 << 62).to_bytes(8, "little") + b"{}")
    with pytest.raises(FileFormatError, match="header claims"):
        read_safetensors(path)
    with pytest.raises(FileFormatError, match="too few"):
        read_safetensors(_write(tmp_path, b"\x01\x02", "short.safetensors"))
