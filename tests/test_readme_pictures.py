"""The README's pictures come from the code as it is: each one is redrawn here with
examples/make_readme_pictures.py (the MNIST ones from the training record it keeps beside
them, docs/images/readme_pictures.json) and compared with the committed file."""
import importlib.util
import json
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = os.path.join(ROOT, "docs", "images")
SCRIPT = os.path.join(ROOT, "examples", "make_readme_pictures.py")

pytest.importorskip("matplotlib")
pytest.importorskip("PIL")


@pytest.fixture(scope="module")
def pictures():
    spec = importlib.util.spec_from_file_location("make_readme_pictures", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pixels(path) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64)


def assert_same_picture(new_path, name):
    """Same size; nearly every pixel the same (fonts may render a shade apart elsewhere)."""
    committed = pixels(os.path.join(IMAGES, name))
    redrawn = pixels(new_path)
    assert redrawn.shape == committed.shape, f"{name}: redrawn {redrawn.shape[:2]}, " \
                                             f"committed {committed.shape[:2]}"
    difference = np.abs(redrawn - committed).max(axis=2)
    changed = float((difference > 48).mean())
    assert np.abs(redrawn - committed).mean() < 2.5 and changed < 0.03, \
        f"{name}: run python examples/make_readme_pictures.py and commit docs/images " \
        f"(mean difference {np.abs(redrawn - committed).mean():.2f}, {changed:.1%} changed)"


def test_every_readme_picture_is_drawn_by_the_script(pictures):
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    shown = {name for name in os.listdir(IMAGES) if name.endswith(".png") and name in readme}
    made = set(pictures.STATIC_PICTURES) | set(pictures.MNIST_PICTURES)
    # the explorer's screenshot comes from tests/explore/test_browser.py
    assert shown - made <= {"explorer.png"}, shown - made


@pytest.mark.parametrize("name", ["seed_example.png", "filter_gallery.png",
                                  "border_effect.png", "border_effect_stride2.png",
                                  "digit_7.png"])
def test_static_pictures(pictures, tmp_path, name):
    pictures.draw_static(str(tmp_path), names=[name])
    assert_same_picture(tmp_path / name, name)


@pytest.mark.parametrize("name", ["training_curves.png", "mnist_filters.png",
                                  "mnist_feature_maps.png"])
def test_mnist_pictures_from_their_training_record(pictures, tmp_path, name):
    with open(os.path.join(IMAGES, pictures.DATA_FILE), encoding="utf-8") as handle:
        data = json.load(handle)
    assert data["kernel_shape"] == [3, 3, 1, 32] and len(data["kernel"]) == 288
    assert len(data["history"]["loss"]) == data["epochs"]
    pictures.draw_mnist(str(tmp_path), data, names=[name])
    assert_same_picture(tmp_path / name, name)
