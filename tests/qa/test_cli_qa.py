"""The command line end to end on a tiny image folder: ``convkit train --data DIR`` writes a
model that remembers its class names, and ``convkit predict`` prints them with the model's
probabilities; the installed ``convkit`` console script works."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from convkit.cli import main

pytest.importorskip("PIL")


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code, err, fragment):
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convkit: error: "), err
    assert fragment in lines[0] and "Traceback" not in err


@pytest.fixture
def shapes_folder(tmp_path):
    """Two classes of 12x12 pictures: a bright square in the middle, or a bright frame."""
    from PIL import Image
    root = tmp_path / "shapes"
    rng = np.random.default_rng(0)
    for name in ("frame", "square"):
        (root / name).mkdir(parents=True)
        for index in range(8):
            pixels = rng.integers(0, 40, (12, 12)).astype(np.uint8)
            if name == "square":
                pixels[4:8, 4:8] = 255
            else:
                pixels[[0, -1], :] = 255
                pixels[:, [0, -1]] = 255
            Image.fromarray(pixels).convert("RGB").save(root / name / f"{index}.png")
    return root


def test_train_on_an_image_folder_then_predict_with_class_names(capsys, tmp_path, shapes_folder):
    import convkit as ck
    from convkit.io.archive import read_meta
    model_path = tmp_path / "shapes.convkit"
    curves = tmp_path / "curves.png"
    code, out, err = _run(capsys, "train", "--data", str(shapes_folder), "--epochs", "2",
                          "--batch-size", "4", "--image-size", "12", "--grayscale", "-o",
                          str(model_path), "--curves", str(curves), "--quiet")
    assert code == 0, err
    assert model_path.stat().st_size > 0 and curves.stat().st_size > 0
    assert read_meta(model_path)["class_names"] == ["frame", "square"]
    assert ck.jobs.class_names_of(model_path) == ["frame", "square"]

    model = ck.load_model(str(model_path))
    assert model.input_shape == (None, 12, 12, 1)
    image = shapes_folder / "square" / "3.png"
    x = ck.datasets.read_image(str(image), size=(12, 12), color_mode="grayscale")[None]
    probs = np.asarray(model.predict(x))[0]
    code, out, err = _run(capsys, "predict", str(model_path), str(image), "--top", "2")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == str(image) and len(lines) == 3
    for rank, index in enumerate(np.argsort(-probs), start=1):
        name = ["frame", "square"][index]
        assert lines[rank].split() == [f"{rank}.", name, f"{probs[index]:.4f}"]


def test_predict_without_stored_names_says_class_index(capsys, tmp_path):
    import convkit as ck
    from PIL import Image
    L = ck.layers
    ck.set_seed(0)
    model = ck.Sequential([L.Input((6, 6, 1)), L.Flatten(), L.Dense(3, activation="softmax")])
    path = tmp_path / "plain.convkit"
    model.save(str(path))
    image = tmp_path / "x.png"
    Image.fromarray(np.full((6, 6), 90, np.uint8)).save(image)
    code, out, _ = _run(capsys, "predict", str(path), str(image), "--top", "3")
    assert code == 0
    assert [line.split()[1:3] for line in out.splitlines()[1:]] == \
        [["class", str(i)] for i in np.argsort(-model.predict(
            ck.datasets.read_image(str(image), size=(6, 6), color_mode="grayscale")[None])[0])]


def test_train_folder_errors_are_one_line(capsys, tmp_path):
    code, _, err = _run(capsys, "train", "--data", str(tmp_path / "missing"), "--quiet")
    _one_line_error(code, err, "sub-folder")
    code, _, err = _run(capsys, "train", "--image-size", "16", "--quiet")
    _one_line_error(code, err, "--data")
    (tmp_path / "empty").mkdir()
    code, _, err = _run(capsys, "train", "--data", str(tmp_path / "empty"), "--quiet")
    _one_line_error(code, err, "no class sub-folders")


def test_summary_explain_matches_the_readme_output(capsys):
    """The lines the README shows for ``convkit summary mnist_convnet --explain`` are the
    command's real output."""
    readme = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")
    text = open(readme, encoding="utf-8").read()
    block = text.split("$ convkit summary mnist_convnet --explain\n", 1)[1].split("```", 1)[0]
    code, out, _ = _run(capsys, "summary", "mnist_convnet", "--explain")
    assert code == 0
    for chunk in block.split("...\n"):
        chunk = chunk.strip("\n")
        if chunk:
            assert chunk in out, chunk


def test_shape_commands_match_the_readme_output(capsys):
    readme = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")
    text = open(readme, encoding="utf-8").read()
    checked = 0
    for part in text.split("$ convkit shape ")[1:]:
        command, rest = part.split("\n", 1)
        expected = rest.split("\n\n", 1)[0].split("```", 1)[0].rstrip("\n")
        code, out, _ = _run(capsys, "shape", *command.split())
        assert code == 0
        assert out.rstrip("\n") == expected
        checked += 1
    assert checked >= 3


def test_console_script_is_installed_and_runs():
    script = shutil.which("convkit", path=os.path.dirname(sys.executable))
    if script is None:
        pytest.skip("the convkit console script is not installed next to this Python")
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in ("shape", "summary", "filter", "featuremaps", "train", "predict", "bench"):
        assert command in result.stdout
    result = subprocess.run([script, "shape", "--input", "3", "--kernel", "5"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("convkit: error: ") and len(result.stderr.splitlines()) == 1
