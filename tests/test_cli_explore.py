"""The command line items of the explore work: sizes as N/HxW/HxWxC, shape --filters, usage
of the command for unknown options, predict --show/--invert and the inverted warning,
train --quiet's final line, built-in names for featuremaps, bench without PyTorch, and
convkit explore (--export and the live server)."""
import json
import os
import subprocess
import sys
import urllib.request

import numpy as np
import pytest

from convkit import cli

from .test_cli import assert_one_line_error, run


@pytest.mark.parametrize("size", [["28"], ["28x28"], ["28x28x1"], ["28", "28", "1"],
                                  ["28", "28"], ["28,28"]])
def test_shape_input_forms(capsys, size):
    code, out, _ = run(capsys, "shape", "--input", *size, "--kernel", "5")
    assert code == 0 and "-> output 24x24" in out


def test_shape_filters_gives_parameters_and_macs(capsys):
    code, out, _ = run(capsys, "shape", "--input", "28x28x3", "--kernel", "5", "--filters", "32",
                       "--stride", "2", "--padding", "same")
    assert code == 0
    assert "params        5*5*3*32 + 32 = 2,432" in out
    assert "MACs          14*14 * 5*5*3*32 = 470,400" in out
    code, out, _ = run(capsys, "shape", "--input", "28", "--kernel", "3x3", "--filters", "8",
                       "--json")
    info = json.loads(out)
    assert info["params"] == 3 * 3 * 1 * 8 + 8 and info["channels_given"] is False
    code, out, _ = run(capsys, "shape", "--input", "28", "--kernel", "3", "--filters", "8")
    assert "1 assumed; give --input HxWxC" in out


def test_shape_filters_refused_for_pooling(capsys):
    code, _, err = run(capsys, "shape", "--input", "8", "--kernel", "2", "--pool", "max",
                       "--filters", "4")
    assert_one_line_error(code, err, "--filters applies to convolutions")


@pytest.mark.parametrize("argv", [["shape", "--input", "28", "--kernel", "3", "--bogus"],
                                  ["summary", "lenet5", "--nope"],
                                  ["explore", "lenet5", "--no-browsr"]])
def test_unknown_option_prints_the_command_usage(capsys, argv):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith(f"usage: convkit {argv[0]} ")
    assert f"convkit {argv[0]}: error: unrecognized arguments: {argv[-1]}" in err


@pytest.fixture
def digit_model(tmp_path):
    """A tiny saved model on 12x12 grey images."""
    import convkit as ck
    ck.set_seed(3)
    model = ck.Sequential([ck.layers.Input((12, 12, 1)), ck.layers.Conv2D(2, 3, name="conv"),
                           ck.layers.Flatten(), ck.layers.Dense(3, activation="softmax")])
    path = tmp_path / "digits.convkit"
    model.save(str(path))
    return path


def test_predict_show_and_inverted_warning(capsys, digit_model, tmp_path):
    from PIL import Image
    dark_on_light = np.full((30, 30), 230, np.uint8)
    dark_on_light[5:25, 14:17] = 20
    image = tmp_path / "one.png"
    Image.fromarray(dark_on_light).save(image)
    shown = tmp_path / "seen.png"
    code, out, err = run(capsys, "predict", str(digit_model), str(image), "--show", str(shown))
    assert code == 0 and shown.exists()
    assert out.splitlines()[-1] == f"  the model saw 12x12x1 grey (drawn in {shown})"
    assert err.startswith(f"convkit: warning: {image}: the image looks dark-on-light")
    code, out, err = run(capsys, "predict", str(digit_model), str(image), "--invert",
                         "--show", str(shown))
    assert code == 0 and "12x12x1 grey, inverted" in out and err == ""
    code, out, err = run(capsys, "predict", str(digit_model), str(image), "--top", "2")
    assert len(out.splitlines()) == 3 and "warning" in err       # the answer alone on stdout


def test_train_quiet_prints_the_final_line(capsys, monkeypatch, tmp_path):
    from convkit import jobs

    def fake_train_default(**kwargs):
        assert kwargs["verbose"] == 0
        return {"test_accuracy": 0.976, "test_samples": 1000, "model_path": kwargs["output"],
                "history": {"loss": [1.0]}}
    monkeypatch.setattr(jobs, "train_default", fake_train_default)
    code, out, _ = run(capsys, "train", "--quiet", "-o", str(tmp_path / "m.convkit"))
    assert code == 0
    assert out.strip() == f"Test accuracy: 0.9760 (976/1000), saved to {tmp_path / 'm.convkit'}"


def test_featuremaps_takes_a_builtin_name(capsys, tmp_path):
    from PIL import Image
    image = tmp_path / "img.png"
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(image)
    out_png = tmp_path / "maps.png"
    code, out, _ = run(capsys, "featuremaps", "lenet5", str(image), "-o", str(out_png))
    assert code == 0 and out_png.exists()


def test_bench_without_torch_says_why(capsys, monkeypatch):
    import importlib.util
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real_find_spec(name, *a))
    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda argv, cwd: calls.append(argv) or 0)
    code, out, _ = run(capsys, "bench", "--quick")
    assert code == 0
    assert "PyTorch is not installed" in out
    assert calls and calls[0][-2:] == ["--quick", "--no-torch"]


def test_explore_export(capsys, tmp_path):
    page = tmp_path / "lenet.html"
    code, out, _ = run(capsys, "explore", "lenet5", "--export", str(page))
    assert code == 0 and out.startswith(f"wrote {page}")
    html = page.read_text(encoding="utf-8")
    assert 'id="explore-data"' in html and "/static/" not in html and "http" not in \
        html.split('id="explore-data"')[0]
    # a hostile file name stays data inside the embedded JSON
    from PIL import Image
    odd = tmp_path / "a<!--<script>b.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(odd)
    code, _, _ = run(capsys, "explore", "lenet5", str(odd), "--export", str(page))
    html = page.read_text(encoding="utf-8")
    assert code == 0 and "<!--" not in html and html.count("<script") == 3
    embedded = html.split('id="explore-data">', 1)[1].split("</script>", 1)[0]
    assert json.loads(embedded)["model"]["images"][0]["label"] == odd.name
    code, _, err = run(capsys, "explore", "lenet5", "--export", str(page), "--port", "9")
    assert_one_line_error(code, err, "--export writes a file")
    code, _, err = run(capsys, "explore", "nothing.convkit", "--no-browser")
    assert_one_line_error(code, err, "does not exist")


def test_explore_serves_until_stopped(tmp_path):
    """`convkit explore MODEL IMAGE --port 0 --no-browser` prints its URL and answers."""
    from PIL import Image
    image = tmp_path / "mine.png"
    Image.fromarray(np.full((28, 28), 10, np.uint8)).save(image)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(cli.__file__)), os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "convkit.cli", "explore", "mnist_convnet", str(image),
         "--port", "0", "--no-browser"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline()
        assert line.startswith("convkit explore: mnist_convnet at http://127.0.0.1:"), line
        url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(url + "api/model", timeout=30) as response:
            model = json.loads(response.read())
        assert model["images"][0] == {"id": "cli:0", "label": "mine.png"}
        assert model["default_image"] == "cli:0"
    finally:
        process.terminate()
        process.wait(10)
        process.stdout.close()
