"""Image folders and single images, made with Pillow in tmp_path."""
import os
import warnings

import numpy as np
import pytest

from convkit.data import load_image_folder, read_image
from convkit.errors import ConvkitError, FileFormatError

Image = pytest.importorskip("PIL.Image")

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def solid(mode, size, color):
    return Image.new(mode, size, color)


@pytest.fixture
def folder(tmp_path):
    """3 classes, 9 readable images of several formats and modes, one corrupt file and some
    files that must be ignored. Pillow sizes are (width, height)."""
    root = tmp_path / "images"
    for name in ("cat", "dog", "emu"):
        (root / name).mkdir(parents=True)
    solid("RGB", (10, 8), RED).save(root / "cat" / "a_red.png")
    solid("RGB", (7, 7), GREEN).save(root / "cat" / "b_green.jpg", quality=95)
    solid("RGB", (12, 6), BLUE).save(root / "cat" / "c_blue.bmp")
    solid("L", (9, 9), 128).save(root / "dog" / "a_gray.png")
    solid("RGBA", (5, 5), (0, 0, 255, 40)).save(root / "dog" / "b_rgba.png")
    solid("P", (6, 6), 0).save(root / "dog" / "c_palette.gif")
    (root / "dog" / "nested").mkdir()
    solid("RGB", (4, 4), (255, 255, 255)).save(root / "dog" / "nested" / "white.tiff")
    solid("RGB", (3, 3), RED).save(root / "emu" / "a.webp", lossless=True)
    solid("RGB", (3, 3), GREEN).save(root / "emu" / "b.PNG")
    (root / "emu" / "broken.png").write_bytes(b"this is not an image")
    (root / "emu" / "notes.txt").write_text("ignored")
    solid("RGB", (3, 3), RED).save(root / "stray_in_root.png")
    return root


def load_quietly(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_image_folder(*args, **kwargs)


def test_loads_every_readable_image_and_warns_about_the_corrupt_one(folder):
    with pytest.warns(UserWarning) as record:
        x, y, names = load_image_folder(folder, image_size=(6, 5), shuffle=False)
    assert len(record) == 1
    message = str(record[0].message)
    assert os.path.join("emu", "broken.png") in message and "skipped 1" in message
    assert names == ["cat", "dog", "emu"]
    assert x.shape == (9, 6, 5, 3) and x.dtype == np.float32
    assert y.dtype == np.int64 and y.tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2]
    assert 0.0 <= x.min() and x.max() <= 1.0
    # sorted by class, then by path: cat a_red, b_green, c_blue; dog a_gray, b_rgba,
    # c_palette, nested/white; emu a.webp, b.PNG
    np.testing.assert_allclose(x[0], np.broadcast_to([1, 0, 0], (6, 5, 3)), atol=1e-6)
    np.testing.assert_allclose(x[1].mean(axis=(0, 1)), [0, 1, 0], atol=0.02)  # JPEG
    np.testing.assert_allclose(x[2], np.broadcast_to([0, 0, 1], (6, 5, 3)), atol=1e-6)
    np.testing.assert_allclose(x[3], 128 / 255, atol=1e-6)  # grey -> equal channels
    np.testing.assert_allclose(x[4], np.broadcast_to([0, 0, 1], (6, 5, 3)), atol=1e-6)
    np.testing.assert_allclose(x[6], 1.0)
    np.testing.assert_allclose(x[7], np.broadcast_to([1, 0, 0], (6, 5, 3)), atol=1e-6)


def test_on_error_raise_names_the_file(folder):
    with pytest.raises(FileFormatError, match="broken.png"):
        load_image_folder(folder, image_size=(4, 4), on_error="raise")


def test_grayscale_and_rgba_modes(folder):
    gray, _, _ = load_quietly(folder, image_size=4, color_mode="grayscale", shuffle=False)
    assert gray.shape == (9, 4, 4, 1)
    np.testing.assert_allclose(gray[0], round(0.299 * 255) / 255, atol=1e-6)  # luma of red
    np.testing.assert_allclose(gray[3], 128 / 255, atol=1e-6)
    rgba, _, _ = load_quietly(folder, image_size=4, color_mode="rgba", shuffle=False)
    assert rgba.shape == (9, 4, 4, 4)
    np.testing.assert_allclose(rgba[4, 0, 0], [0, 0, 1, 40 / 255], atol=1e-6)
    np.testing.assert_allclose(rgba[0, ..., 3], 1.0)


def test_shuffle_is_fixed_by_the_seed(folder):
    ordered_x, ordered_y, _ = load_quietly(folder, image_size=3, shuffle=False)
    x1, y1, _ = load_quietly(folder, image_size=3, seed=5)
    x2, y2, _ = load_quietly(folder, image_size=3, seed=5)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    orders = {tuple(load_quietly(folder, image_size=3, seed=s)[1]) for s in range(6)}
    assert len(orders) > 1
    assert sorted(y1.tolist()) == ordered_y.tolist()


def test_validation_split(folder):
    (xt, yt), (xv, yv), names = load_quietly(folder, image_size=3, validation_split=0.34,
                                             subset="both", seed=1)
    # 10 image files (one unreadable): int(0.34 * 10) = 3 validation files
    assert len(xt) + len(xv) == 9 and len(xv) in (2, 3) and len(xt) in (6, 7)
    x_train, y_train, _ = load_quietly(folder, image_size=3, validation_split=0.34,
                                       subset="training", seed=1)
    x_val, y_val, _ = load_quietly(folder, image_size=3, validation_split=0.34,
                                   subset="validation", seed=1)
    np.testing.assert_array_equal(x_train, xt)
    np.testing.assert_array_equal(y_val, yv)
    all_x, all_y, _ = load_quietly(folder, image_size=3, seed=1)
    # the split is a cut of the same shuffled order
    np.testing.assert_array_equal(np.concatenate([yt, yv]), all_y)
    np.testing.assert_array_equal(np.concatenate([xt, xv]), all_x)


def test_class_names_choose_the_label_order(folder):
    _, y, names = load_quietly(folder, image_size=3, shuffle=False,
                               class_names=["emu", "dog", "cat"])
    assert names == ["emu", "dog", "cat"]
    assert y.tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2]
    with pytest.raises(ConvkitError, match="sub-folders"):
        load_image_folder(folder, image_size=3, class_names=["cat", "dog"])


def test_label_modes(folder):
    _, y, _ = load_quietly(folder, image_size=3, shuffle=False, label_mode="categorical")
    assert y.shape == (9, 3) and y.dtype == np.float32
    np.testing.assert_array_equal(y.argmax(axis=1), [0, 0, 0, 1, 1, 1, 1, 2, 2])
    np.testing.assert_array_equal(y.sum(axis=1), 1.0)
    with pytest.raises(ConvkitError, match="binary.*2 classes"):
        load_image_folder(folder, image_size=3, label_mode="binary")


@pytest.mark.parametrize("kwargs, fragment", [
    ({"image_size": (0, 4)}, "image_size"),
    ({"image_size": None}, "image_size"),
    ({"color_mode": "cmyk"}, "color_mode"),
    ({"validation_split": 0.2}, "subset"),
    ({"subset": "training"}, "validation_split"),
    ({"validation_split": 1.5, "subset": "training"}, "validation_split"),
    ({"on_error": "ignore"}, "on_error"),
])
def test_bad_arguments(folder, kwargs, fragment):
    kwargs = {"image_size": (4, 4), **kwargs}
    with pytest.raises(ConvkitError, match=fragment):
        load_image_folder(folder, **kwargs)


def test_empty_and_missing_directories(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_image_folder(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConvkitError, match="no class sub-folders"):
        load_image_folder(tmp_path / "empty")
    (tmp_path / "noimages" / "a").mkdir(parents=True)
    (tmp_path / "noimages" / "a" / "x.txt").write_text("x")
    with pytest.raises(ConvkitError, match="no image files"):
        load_image_folder(tmp_path / "noimages")
    (tmp_path / "allbad" / "a").mkdir(parents=True)
    (tmp_path / "allbad" / "a" / "x.png").write_bytes(b"junk")
    with pytest.raises(ConvkitError, match="none of the 1"):
        load_image_folder(tmp_path / "allbad")


# --------------------------------------------------------------------------- read_image

def test_read_image_sizes_modes_and_range(tmp_path):
    path = tmp_path / "gradient.png"
    pixels = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (3, 1))  # (3, 25)
    Image.fromarray(pixels).save(path)
    gray = read_image(path, color_mode="grayscale")
    assert gray.shape == (3, 25, 1) and gray.dtype == np.float32
    np.testing.assert_allclose(gray[..., 0], pixels / 255.0, rtol=1e-6)
    rgb = read_image(path, normalize=False)
    assert rgb.shape == (3, 25, 3)
    np.testing.assert_array_equal(rgb[..., 1], pixels)
    resized = read_image(path, size=(6, 10), interpolation="nearest")
    assert resized.shape == (6, 10, 3)
    assert np.all(np.diff(resized[0, :, 0]) >= 0)  # still a left-to-right ramp


def test_read_image_16_bit(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.array([[0, 65535], [32768, 65535]], dtype=np.uint16)).save(path)
    image = read_image(path, color_mode="grayscale")
    np.testing.assert_allclose(image[..., 0], [[0, 1], [128 / 255, 1]], atol=1e-6)


def test_read_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "nope.png")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    with pytest.raises(FileFormatError, match="bad.jpg"):
        read_image(bad)
    good = tmp_path / "ok.png"
    solid("RGB", (2, 2), RED).save(good)
    with pytest.raises(ConvkitError, match="interpolation"):
        read_image(good, interpolation="cubic-ish")
