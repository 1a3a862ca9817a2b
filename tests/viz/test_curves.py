import numpy as np
import pytest

from convkit.errors import ConvkitError, FileFormatError
from convkit.viz import plot_history, read_history

from .helpers import check_png, panel

HISTORY = {"loss": [1.0, 0.6, 0.4], "accuracy": [0.5, 0.7, 0.8],
           "val_loss": [1.1, 0.8, 0.7], "val_accuracy": [0.4, 0.6, 0.65]}


def _lines(fig, label):
    return {line.get_label().split(" (")[0]: line for line in panel(fig, label).get_lines()}


def test_history_dict_plot(tmp_path):
    path = tmp_path / "curves.png"
    fig = plot_history(HISTORY, path=path)
    check_png(path, fig)
    loss = _lines(fig, "loss")
    np.testing.assert_array_equal(loss["training"].get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(loss["training"].get_ydata(), HISTORY["loss"])
    np.testing.assert_array_equal(loss["validation"].get_ydata(), HISTORY["val_loss"])
    acc = _lines(fig, "accuracy")
    np.testing.assert_array_equal(acc["validation"].get_ydata(), HISTORY["val_accuracy"])
    assert panel(fig, "loss").get_xlabel() == "epoch"


def test_history_object_and_csv(tmp_path):
    class FakeHistory:
        history = {"loss": [0.3, 0.2]}
    assert read_history(FakeHistory()) == {"loss": [0.3, 0.2]}
    csv_path = tmp_path / "log.csv"
    csv_path.write_text("epoch,accuracy,loss,val_accuracy,val_loss\n"
                        "0,0.5,1.0,0.4,1.1\n1,0.7,0.6,0.6,0.8\n2,0.8,0.4,0.65,0.7\n")
    assert read_history(str(csv_path)) == {k: HISTORY[k] for k in
                                           ("accuracy", "loss", "val_accuracy", "val_loss")}
    fig = plot_history(csv_path)
    assert [ax.get_label() for ax in fig.axes] == ["loss", "accuracy"]


def test_history_errors(tmp_path):
    with pytest.raises(ConvkitError, match="does not exist"):
        plot_history(str(tmp_path / "missing.csv"))
    bad = tmp_path / "bad.csv"
    bad.write_text("epoch,loss\n0,abc\n")
    with pytest.raises(FileFormatError, match="line 2"):
        plot_history(bad)
    with pytest.raises(ConvkitError, match="empty"):
        plot_history({"loss": []})
