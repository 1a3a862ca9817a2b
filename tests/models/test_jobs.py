"""The default training job's plumbing (its accuracy is checked by running the job itself)."""
import numpy as np

import convkit as ck
from convkit import jobs


def test_job_models_have_the_documented_sizes():
    assert jobs.mnist_convnet().count_params() == 34_826
    model = jobs.digits_convnet()
    assert model.output_shape == (None, 10) and model.layers[-3].output_shape == (None, 128)


def test_train_default_digits_one_epoch(tmp_path, capsys):
    out = tmp_path / "sub" / "digits.convkit"
    result = jobs.train_default(dataset="digits", epochs=1, verbose=0, output=str(out))
    assert capsys.readouterr().out == ""
    assert result["dataset"] == "digits" and result["epochs"] == 1
    assert result["train_samples"] + result["test_samples"] == 1797
    assert 0.0 <= result["test_accuracy"] <= 1.0 and len(result["history"]["loss"]) == 1
    model = ck.load_model(out)
    (_, _), (x_test, y_test) = ck.datasets.load_digits(seed=0)
    accuracy = float(np.mean(model.predict(x_test).argmax(1) == y_test))
    assert accuracy == result["test_accuracy"]


def test_benchmark_settings_follow_the_mnist_defaults():
    assert jobs.BENCHMARK_SETTINGS["batch_size"] == jobs.DEFAULTS["mnist"]["batch_size"]
    assert jobs.BENCHMARK_SETTINGS["arch"] == "mnist_convnet"


def test_train_default_on_an_image_folder(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    for label, name in enumerate(("dark", "light")):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(10):
            pixels = rng.integers(0, 100, (12, 12, 3)) + 150 * label
            Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / "data" / name / f"{i}.png")
    result = jobs.train_default(data_dir=str(tmp_path / "data"), image_size=(8, 8), epochs=1,
                                verbose=0, output=str(tmp_path / "folder.convkit"))
    assert result["dataset"] == "folder" and result["class_names"] == ["dark", "light"]
    assert result["train_samples"] == 16 and result["test_samples"] == 4
    assert ck.load_model(tmp_path / "folder.convkit").input_shape == (None, 8, 8, 3)
