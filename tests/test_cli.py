"""The ``convkit`` command line, run in-process through ``main([...])``."""
import importlib.util
import json

import numpy as np
import pytest

from convkit import cli
from convkit.cli import main

COMMANDS = ["shape", "summary", "filter", "featuremaps", "train", "predict", "bench"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, fragment):
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convkit: error: "), err
    assert fragment in lines[0]
    assert "Traceback" not in err


@pytest.fixture
def gray_png(tmp_path, rng):
    from PIL import Image
    path = tmp_path / "digit.png"
    Image.fromarray((rng.random((20, 20)) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture
def tiny_model_file(tmp_path):
    layers = pytest.importorskip("convkit.layers")
    models = pytest.importorskip("convkit.models")
    if not hasattr(models.Sequential, "save"):
        pytest.skip("model saving is not available")
    from convkit.random import set_seed
    set_seed(7)
    model = models.Sequential([layers.Input((10, 10, 1)),
                               layers.Conv2D(3, 3, activation="relu", name="conv"),
                               layers.Flatten(name="flatten"),
                               layers.Dense(4, activation="softmax", name="dense")])
    path = tmp_path / "tiny.convkit"
    model.save(str(path))
    return path, model


# ------------------------------------------------------------------------ help and usage
@pytest.mark.parametrize("command", COMMANDS)
def test_help_for_every_command(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    assert out.startswith(f"usage: convkit {command}")


def test_top_level_help_lists_commands(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and all(c in out for c in COMMANDS)


def test_usage_errors_exit_2(capsys):
    code, _, err = run(capsys)
    assert code == 2 and "usage:" in err
    code, _, err = run(capsys, "shape", "--input", "28")
    assert code == 2 and "--kernel" in err and "Traceback" not in err
    code, _, err = run(capsys, "shape", "--input", "x", "--kernel", "3")
    assert code == 2 and "invalid size 'x'" in err


# ------------------------------------------------------------------------ shape
def test_shape_valid_text(capsys):
    code, out, _ = run(capsys, "shape", "--input", "28", "--kernel", "5")
    assert code == 0
    assert "-> output 24x24" in out
    assert "floor((28 + 0 + 0 - 5) / 1) + 1 = 24" in out


def test_shape_same_stride_two_axes_json(capsys):
    code, out, _ = run(capsys, "shape", "--input", "28", "27", "--kernel", "3", "--stride",
                       "2", "--padding", "same", "--json")
    assert code == 0
    info = json.loads(out)
    assert info["output"] == [14, 14]
    assert info["formulas"] == {"height": "ceil(28 / 2) = 14", "width": "ceil(27 / 2) = 14"}
    assert info["pads"] == {"top": 0, "bottom": 1, "left": 1, "right": 1}


def test_shape_dropped_rows_warning_and_pool(capsys):
    code, out, _ = run(capsys, "shape", "--input", "28", "--kernel", "3", "--stride", "2")
    assert code == 0 and "never read 1 input row" in out
    code, out, _ = run(capsys, "shape", "--input", "7", "--kernel", "2", "--pool", "max",
                       "--ceil-mode")
    assert code == 0 and out.startswith("max pool") and "ceil((7 + 0 + 0 - 2) / 2) + 1 = 4" in out


def test_shape_explicit_padding_forms(capsys):
    code, out, _ = run(capsys, "shape", "--input", "10", "--kernel", "3", "--padding", "1,2,0,0",
                       "--json")
    assert code == 0 and json.loads(out)["output"] == [11, 8]


@pytest.mark.parametrize("argv, fragment", [
    (["shape", "--input", "4", "--kernel", "5"], "output size would be"),
    (["shape", "--input", "8", "--kernel", "3", "--padding", "lots"], "--padding must be"),
    (["shape", "--input", "8", "--kernel", "3", "--ceil-mode"], "--ceil-mode applies"),
    (["shape", "--input", "8", "8", "8", "8", "--kernel", "3"], "N, HxW or HxWxC"),
    (["shape", "--input", "8", "--kernel", "3x3x3"], "one or two numbers"),
    (["shape", "--input", "8", "--kernel", "3", "--stride", "0"], "strides must be >= 1"),
])
def test_shape_bad_input_one_line(capsys, argv, fragment):
    code, _, err = run(capsys, *argv)
    assert_one_line_error(code, err, fragment)


# ------------------------------------------------------------------------ summary
def test_summary_builtin_mnist_convnet(capsys):
    pytest.importorskip("convkit.models")
    code, out, _ = run(capsys, "summary", "mnist_convnet")
    assert code == 0
    assert "34,826" in out and "(None, 26, 26, 32)" in out
    assert "floor(" not in out
    code, out, _ = run(capsys, "summary", "mnist_convnet", "--explain")
    assert code == 0 and "3*3*1*32 + 32 = 320" in out and "MACs" in out


def test_summary_lenet5_json(capsys):
    pytest.importorskip("convkit.models")
    code, out, _ = run(capsys, "summary", "lenet5", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["model"] == "lenet5"
    assert data["totals"]["params"] == 156 + 2416 + 48120 + 10164 + 850
    assert data["layers"][0]["params_formula"] == "5*5*1*6 + 6 = 156"


def test_summary_of_a_saved_model(capsys, tiny_model_file):
    path, model = tiny_model_file
    code, out, _ = run(capsys, "summary", str(path), "--explain")
    assert code == 0 and "3*3*1*3 + 3 = 30" in out


def test_summary_unknown_model(capsys, tmp_path):
    code, _, err = run(capsys, "summary", str(tmp_path / "nope.convkit"))
    assert_one_line_error(code, err, "does not exist")
    assert "mnist_convnet" in err


# ------------------------------------------------------------------------ filter
def test_filter_one_kernel_and_gallery(capsys, tmp_path, gray_png):
    from PIL import Image
    out_png = tmp_path / "sobel.png"
    code, out, _ = run(capsys, "filter", str(gray_png), "--kernel", "sobel_x", "-o",
                       str(out_png))
    assert code == 0 and out_png.exists() and str(out_png) in out
    gallery = tmp_path / "gallery.png"
    code, _, _ = run(capsys, "filter", str(gray_png), "--gallery", "--size", "5", "-o",
                     str(gallery))
    assert code == 0
    with Image.open(gallery) as big, Image.open(out_png) as small:
        assert big.size[0] * big.size[1] > small.size[0] * small.size[1]
        assert np.asarray(big.convert("L")).std() > 0


@pytest.mark.parametrize("argv, fragment", [
    (["--kernel", "nope"], "unknown filter"),
    (["--kernel", "sobel_x", "--size", "7"], "fixed 3x3"),
    (["--kernel", "sobel_x", "--gallery"], "either --kernel"),
])
def test_filter_bad_input(capsys, tmp_path, gray_png, argv, fragment):
    code, _, err = run(capsys, "filter", str(gray_png), *argv, "-o", str(tmp_path / "x.png"))
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "x.png").exists()


def test_filter_missing_image_and_unknown_sample(capsys, tmp_path):
    code, _, err = run(capsys, "filter", str(tmp_path / "missing.png"), "--gallery", "-o",
                       str(tmp_path / "g.png"))
    assert_one_line_error(code, err, "does not exist")
    code, _, err = run(capsys, "filter", "sample:moon", "--gallery", "-o",
                       str(tmp_path / "g.png"))
    assert_one_line_error(code, err, "sample:china")


# ------------------------------------------------------------------------ featuremaps
def test_featuremaps_of_a_saved_model(capsys, tmp_path, tiny_model_file, gray_png):
    path, _ = tiny_model_file
    out_png = tmp_path / "maps.png"
    code, _, _ = run(capsys, "featuremaps", str(path), str(gray_png), "--layer", "conv", "-o",
                     str(out_png))
    assert code == 0 and out_png.stat().st_size > 0
    code, _, err = run(capsys, "featuremaps", str(path), str(gray_png), "--layer", "nope",
                       "-o", str(out_png))
    assert_one_line_error(code, err, "no layer 'nope'")
    code, _, err = run(capsys, "featuremaps", str(path), "-o", str(out_png))
    assert_one_line_error(code, err, "needs MODEL and IMAGE")


def test_featuremaps_seed_example(capsys, tmp_path, monkeypatch, rng):
    import convkit.data
    small = rng.random((2, 16, 24, 3), dtype=np.float32)
    monkeypatch.setattr(convkit.data, "load_sample_images", lambda *a, **k: small)
    out_png = tmp_path / "seed.png"
    code, out, _ = run(capsys, "featuremaps", "--seed-example", "-o", str(out_png))
    assert code == 0 and out_png.exists() and "wrote" in out


# ------------------------------------------------------------------------ predict
def test_predict_top_classes(capsys, tiny_model_file, gray_png):
    path, model = tiny_model_file
    code, out, _ = run(capsys, "predict", str(path), str(gray_png), "--top", "2")
    assert code == 0
    from convkit.data import read_image
    x = read_image(str(gray_png), size=(10, 10), color_mode="grayscale")[None]
    probs = np.asarray(model.predict(x))[0]
    best = np.argsort(-probs)[:2]
    lines = out.strip().splitlines()
    assert lines[0] == str(gray_png) and len(lines) == 3
    for line, index in zip(lines[1:], best):
        assert f"class {index}" in line and f"{probs[index]:.4f}" in line


def test_predict_bad_input(capsys, tiny_model_file, tmp_path, gray_png):
    path, _ = tiny_model_file
    code, _, err = run(capsys, "predict", str(path), str(tmp_path / "none.png"))
    assert_one_line_error(code, err, "does not exist")
    code, _, err = run(capsys, "predict", str(path), str(gray_png), "--top", "0")
    assert_one_line_error(code, err, "--top")
    broken = tmp_path / "broken.convkit"
    broken.write_bytes(b"not a model at all")
    code, _, err = run(capsys, "predict", str(broken), str(gray_png))
    assert code == 1 and err.startswith("convkit: error: ") and "Traceback" not in err


def test_softmax_only_when_needed():
    probs = np.array([[0.2, 0.8]])
    assert cli._softmax_if_needed(probs) is not None
    np.testing.assert_allclose(cli._softmax_if_needed(probs), probs)
    logits = np.array([[0.0, np.log(3.0)]])
    np.testing.assert_allclose(cli._softmax_if_needed(logits), [[0.25, 0.75]])


# ------------------------------------------------------------------------ train and bench
def test_train_forwards_options_and_draws_curves(capsys, tmp_path, monkeypatch):
    jobs = pytest.importorskip("convkit.jobs")
    seen = {}

    def fake_train_default(**kwargs):
        seen.update(kwargs)
        return {"test_accuracy": 0.5, "history": {"loss": [1.0, 0.5], "accuracy": [0.4, 0.6]}}

    monkeypatch.setattr(jobs, "train_default", fake_train_default)
    curves = tmp_path / "curves.png"
    code, _, _ = run(capsys, "train", "--dataset", "digits", "--epochs", "2", "--batch-size",
                     "16", "--learning-rate", "0.01", "--seed", "3", "-o",
                     str(tmp_path / "m.convkit"), "--curves", str(curves), "--quiet")
    assert code == 0 and curves.exists()
    assert seen == {"dataset": "digits", "epochs": 2, "batch_size": 16, "learning_rate": 0.01,
                    "seed": 3, "verbose": 0, "data_dir": None,
                    "output": str(tmp_path / "m.convkit")}


def test_train_for_real_a_few_steps(capsys, tmp_path):
    pytest.importorskip("convkit.jobs")
    pytest.importorskip("convkit.callbacks")
    pytest.importorskip("sklearn")
    model_path = tmp_path / "digits.convkit"
    curves = tmp_path / "curves.png"
    code, _, err = run(capsys, "train", "--dataset", "digits", "--epochs", "1",
                       "--batch-size", "256", "-o", str(model_path), "--curves", str(curves),
                       "--quiet")
    assert code == 0, err
    assert model_path.exists() and curves.exists()


def test_train_bad_dataset_is_a_usage_error(capsys):
    code, _, err = run(capsys, "train", "--dataset", "cifar")
    assert code == 2 and "invalid choice" in err


def test_bench_forwards_or_explains(capsys, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(cli, "_find_benchmarks", lambda: str(tmp_path))
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd, cwd: calls.append((cmd, cwd)) or 0)
    code, _, _ = run(capsys, "bench", "--quick", "--only", "conv")
    assert code == 0
    # without PyTorch the command says so and asks for convkit's figures alone
    no_torch = [] if importlib.util.find_spec("torch") else ["--no-torch"]
    assert calls[0][0][1:] == ["-m", "benchmarks.run", "--quick", "--only", "conv"] + no_torch
    assert calls[0][1] == str(tmp_path)
    monkeypatch.setattr(cli, "_find_benchmarks", lambda: None)
    code, _, err = run(capsys, "bench")
    assert_one_line_error(code, err, "benchmarks")
