"""The convkit archive: exact round trips, atomic writes, and a FileFormatError (never anything
else) for every kind of damaged or foreign file."""
import hashlib
import io
import json
import os
import stat
import zipfile

import numpy as np
import pytest

from convkit.errors import ConvkitError, FileFormatError
from convkit.io import (FORMAT_VERSION, atomic_write_bytes, atomic_writer, read_archive,
                        write_archive, write_json_atomic)


def sample_arrays():
    return {
        "conv/kernel": np.arange(2 * 3 * 1 * 4, dtype=np.float32).reshape(2, 3, 1, 4) / 7,
        "conv/bias": np.linspace(-1, 1, 4),  # float64
        "steps": np.array([3, -2, 2**40], dtype=np.int64),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 5), dtype=np.float64),
        "mask": np.array([True, False, True]),
        "pixels": np.arange(12, dtype=np.uint8).reshape(3, 4),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "big_endian": np.arange(3, dtype=">f4"),
    }


def assert_same_arrays(got, expected):
    assert list(got) == list(expected)
    for name, value in expected.items():
        assert got[name].dtype == value.dtype, name
        assert got[name].shape == value.shape, name
        np.testing.assert_array_equal(got[name], value, err_msg=name)


@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "model.ckz"
    write_archive(path, {"name": "tiny"}, sample_arrays())
    return path


def rewrite(path, members):
    """Write a zip with the given {name: bytes} members (a tool for building bad files)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def members_of(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def expect_format_error(path, *fragments):
    with pytest.raises(FileFormatError) as info:
        read_archive(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message.lower(), message
    return message


# --------------------------------------------------------------------------- round trips

def test_round_trip_keeps_values_shapes_dtypes_and_order(tmp_path):
    arrays = sample_arrays()
    meta = {"name": "net", "layers": [{"class": "Conv2D", "filters": 4}], "lr": 0.001,
            "nested": {"a": [1, 2, None], "unicode": "Größe"}}
    write_archive(tmp_path / "a.ckz", meta, arrays)
    got_meta, got = read_archive(tmp_path / "a.ckz")
    assert got_meta == meta
    assert_same_arrays(got, arrays)
    assert got["fortran"].flags.writeable


def test_list_of_pairs_keeps_the_given_order(tmp_path):
    pairs = [("z", np.ones(2)), ("a", np.zeros(3, np.float32)), ("m", np.arange(4))]
    write_archive(tmp_path / "a.ckz", {}, pairs)
    _, got = read_archive(tmp_path / "a.ckz")
    assert list(got) == ["z", "a", "m"]
    assert_same_arrays(got, dict(pairs))


def test_numpy_values_in_meta_become_json(tmp_path):
    write_archive(tmp_path / "a.ckz", {"epochs": np.int64(3), "loss": np.float32(0.5),
                                       "shape": np.array([28, 28])}, {})
    meta, arrays = read_archive(tmp_path / "a.ckz")
    assert meta == {"epochs": 3, "loss": 0.5, "shape": [28, 28]}
    assert arrays == {}


def test_layout_and_manifest(good_file):
    members = members_of(good_file)
    document = json.loads(members["convkit.json"])
    assert document["format"] == "convkit"
    assert document["format_version"] == FORMAT_VERSION == 1
    entry = document["manifest"][0]
    assert entry["name"] == "conv/kernel" and entry["shape"] == [2, 3, 1, 4]
    assert entry["dtype"] == "<f4"
    assert entry["sha256"] == hashlib.sha256(members[entry["file"]]).hexdigest()
    assert all(name == "convkit.json" or name.endswith(".npy") for name in members)


def test_same_content_gives_identical_bytes(tmp_path):
    write_archive(tmp_path / "a.ckz", {"k": 1}, sample_arrays())
    write_archive(tmp_path / "b.ckz", {"k": 1}, sample_arrays())
    assert (tmp_path / "a.ckz").read_bytes() == (tmp_path / "b.ckz").read_bytes()


@pytest.mark.parametrize("meta, arrays, fragment", [
    ({}, {"bad": np.array([1, "a", None], dtype=object)}, "object"),
    ({}, [("w", np.ones(2)), ("w", np.zeros(2))], "duplicate"),
    ({"format": "x"}, {}, "reserved"),
    ({"manifest": []}, {}, "reserved"),
    ({"f": object()}, {}, "json"),
    ([1, 2], {}, "dict"),
    ({}, {"": np.ones(1)}, "name"),
])
def test_bad_arguments_raise_and_leave_no_file(tmp_path, meta, arrays, fragment):
    with pytest.raises(ConvkitError, match=f"(?i)write_archive.*{fragment}"):
        write_archive(tmp_path / "a.ckz", meta, arrays)
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- atomicity

def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "model.ckz"
    write_archive(path, {"version": "old"}, {"w": np.ones(3)})
    before = path.read_bytes()

    real_save = np.save
    calls = []

    def save_then_fail(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise OSError("disk full")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(np, "save", save_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_archive(path, {"version": "new"}, {"a": np.zeros(4), "b": np.zeros(5)})
    monkeypatch.undo()

    assert len(calls) == 2  # the first array was written before the failure
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.ckz"]
    meta, arrays = read_archive(path)
    assert meta == {"version": "old"}


def test_failed_first_write_creates_nothing(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", fail)
    with pytest.raises(KeyboardInterrupt):
        write_archive(tmp_path / "new.ckz", {}, {"a": np.zeros(2)})
    assert os.listdir(tmp_path) == []


def test_overwrite_replaces_content_and_keeps_permissions(tmp_path):
    path = tmp_path / "model.ckz"
    write_archive(path, {"v": 1}, {"w": np.ones(2)})
    os.chmod(path, 0o640)
    write_archive(path, {"v": 2}, {"w": np.zeros(3)})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    meta, arrays = read_archive(path)
    assert meta == {"v": 2} and arrays["w"].shape == (3,)
    assert os.listdir(tmp_path) == ["model.ckz"]


def test_atomic_writer_text_and_failure(tmp_path):
    path = tmp_path / "log.csv"
    with atomic_writer(path, "w", newline="") as handle:
        handle.write("epoch,loss\n0,0.5\n")
    assert path.read_text() == "epoch,loss\n0,0.5\n"
    with pytest.raises(RuntimeError):
        with atomic_writer(path, "w") as handle:
            handle.write("half a li")
            raise RuntimeError("boom")
    assert path.read_text() == "epoch,loss\n0,0.5\n"
    assert os.listdir(tmp_path) == ["log.csv"]


def test_atomic_writer_modes(tmp_path):
    path = tmp_path / "x.bin"
    atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    with pytest.raises(FileExistsError):
        with atomic_writer(path, "xb") as handle:
            handle.write(b"no")
    assert path.read_bytes() == b"\x00\x01"
    with pytest.raises(ConvkitError, match="mode"):
        with atomic_writer(path, "a"):
            pass
    with pytest.raises(ConvkitError, match="text modes"):
        with atomic_writer(path, "wb", encoding="utf-8"):
            pass
    assert sorted(os.listdir(tmp_path)) == ["x.bin"]


def test_write_json_atomic(tmp_path):
    path = tmp_path / "history.json"
    write_json_atomic(path, {"loss": [np.float32(0.5), 0.25], "epochs": np.int64(2)})
    assert json.loads(path.read_text()) == {"loss": [0.5, 0.25], "epochs": 2}
    with pytest.raises(ConvkitError, match="JSON"):
        write_json_atomic(path, {"bad": object()})
    assert json.loads(path.read_text())["epochs"] == 2


# --------------------------------------------------------------------------- bad files

def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_archive(tmp_path / "nope.ckz")


def test_truncated_files(good_file, tmp_path):
    data = good_file.read_bytes()
    cuts = sorted({1, 2, 4, 30, 100, len(data) // 3, len(data) // 2, len(data) - 200,
                   len(data) - 60, len(data) - 22, len(data) - 1})
    for cut in cuts:
        bad = tmp_path / f"cut{cut}.ckz"
        bad.write_bytes(data[:cut])
        message = expect_format_error(bad).lower()
        if cut >= 4:
            assert "truncated" in message or "corrupt" in message, message


@pytest.mark.parametrize("content, fragment", [
    (b"", "empty"),
    (b"hello, this is a text file\n" * 5, "not a zip archive"),
    (bytes(range(256)) * 4, "not a zip"),
])
def test_not_a_zip(tmp_path, content, fragment):
    path = tmp_path / "f.ckz"
    path.write_bytes(content)
    expect_format_error(path, fragment)


def test_flipped_byte_inside_an_array(good_file):
    kernel = sample_arrays()["conv/kernel"].tobytes()
    data = bytearray(good_file.read_bytes())
    at = bytes(data).index(kernel) + 17
    data[at] ^= 0x40
    good_file.write_bytes(bytes(data))
    expect_format_error(good_file)


def test_checksum_mismatch_with_a_consistent_zip(good_file):
    members = members_of(good_file)
    document = json.loads(members["convkit.json"])
    member = document["manifest"][0]["file"]
    array = np.load(io.BytesIO(members[member]))
    array.flat[0] += 1
    buffer = io.BytesIO()
    np.save(buffer, array)
    members[member] = buffer.getvalue()
    rewrite(good_file, members)  # fresh CRCs: only the SHA-256 can notice
    expect_format_error(good_file, "checksum", "conv/kernel")


def test_random_byte_flips_never_raise_anything_else(good_file, tmp_path):
    data = good_file.read_bytes()
    expected = sample_arrays()
    rng = np.random.default_rng(0)
    for trial, position in enumerate(rng.choice(len(data), size=60, replace=False)):
        damaged = bytearray(data)
        damaged[position] ^= int(rng.integers(1, 256))
        path = tmp_path / f"flip{trial}.ckz"
        path.write_bytes(bytes(damaged))
        try:
            meta, arrays = read_archive(path)
        except FileFormatError:
            continue
        # A flip in a field nothing depends on (a timestamp, say) may go unnoticed, but then
        # the content must be intact.
        assert meta == {"name": "tiny"}
        assert_same_arrays(arrays, expected)


def test_foreign_zip(tmp_path):
    path = tmp_path / "other.zip"
    rewrite(path, {"readme.txt": b"hi", "data/x.npy": b"\x93NUMPY"})
    expect_format_error(path, "not a convkit file", "convkit.json")


def test_keras_file_is_recognised(tmp_path):
    path = tmp_path / "model.keras"
    rewrite(path, {"metadata.json": b"{}", "config.json": b"{}",
                   "model.weights.h5": b"\x89HDF\r\n"})
    expect_format_error(path, "keras")


@pytest.mark.parametrize("document, fragment", [
    (b"not json{", "json"),
    (b"[1, 2]", "not a convkit file"),
    (json.dumps({"format": "other", "format_version": 1}).encode(), "not a convkit file"),
    (json.dumps({"format": "convkit", "format_version": 2, "manifest": []}).encode(),
     "newer"),
    (json.dumps({"format": "convkit", "format_version": "1", "manifest": []}).encode(),
     "format_version"),
    (json.dumps({"format": "convkit", "format_version": 1}).encode(), "manifest"),
])
def test_bad_convkit_json(tmp_path, document, fragment):
    path = tmp_path / "a.ckz"
    rewrite(path, {"convkit.json": document})
    expect_format_error(path, fragment)


def edit_manifest(path, change):
    members = members_of(path)
    document = json.loads(members["convkit.json"])
    change(document, members)
    members["convkit.json"] = json.dumps(document).encode()
    rewrite(path, members)


def test_array_listed_but_missing(good_file):
    def drop(document, members):
        del members[document["manifest"][1]["file"]]
    edit_manifest(good_file, drop)
    expect_format_error(good_file, "conv/bias", "missing")


@pytest.mark.parametrize("field, value", [("shape", [3, 2, 1, 4]), ("dtype", "<f8"),
                                           ("dtype", "<i4")])
def test_shape_or_dtype_mismatch(good_file, field, value):
    def change(document, members):
        document["manifest"][0][field] = value
    edit_manifest(good_file, change)
    expect_format_error(good_file, "conv/kernel")


@pytest.mark.parametrize("entry_change, fragment", [
    ({"shape": [-1]}, "shape"),
    ({"shape": "2x3"}, "shape"),
    ({"dtype": "|O"}, "object"),
    ({"dtype": "not-a-dtype"}, "dtype"),
    ({"sha256": "abc"}, "sha256"),
    ({"file": "../outside.npy"}, "file name"),
    ({"file": "/etc/passwd"}, "file name"),
])
def test_invalid_manifest_entries(good_file, entry_change, fragment):
    def change(document, members):
        document["manifest"][0].update(entry_change)
    edit_manifest(good_file, change)
    expect_format_error(good_file, fragment)


@pytest.mark.parametrize("bad_name", ["../evil.npy", "/abs/evil.npy", "a/../../evil.npy",
                                      "C:/evil.npy"])
def test_unsafe_member_names_are_refused(good_file, bad_name):
    members = members_of(good_file)
    members[bad_name] = b"x"
    rewrite(good_file, members)
    expect_format_error(good_file, "unsafe")


class _Payload:
    """Unpickling this would create a directory: the proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@pytest.mark.parametrize("declared_dtype", ["<f8", "|O"])
def test_pickle_bearing_npy_is_refused_and_never_run(good_file, tmp_path, declared_dtype):
    marker = str(tmp_path / "code_ran")
    payload = np.empty(1, dtype=object)
    payload[0] = _Payload(marker)
    buffer = io.BytesIO()
    np.save(buffer, payload, allow_pickle=True)
    evil = buffer.getvalue()

    def inject(document, members):
        entry = document["manifest"][0]
        members[entry["file"]] = evil
        entry.update(shape=[1], dtype=declared_dtype, sha256=hashlib.sha256(evil).hexdigest())
    edit_manifest(good_file, inject)
    expect_format_error(good_file, "object")
    assert not os.path.exists(marker)


def test_member_larger_than_its_manifest_shape_is_refused_before_reading(good_file):
    big = io.BytesIO()
    np.save(big, np.zeros(200_000))
    data = big.getvalue()

    def inflate(document, members):
        entry = document["manifest"][0]
        members[entry["file"]] = data
        entry.update(shape=[2], dtype="<f8", sha256=hashlib.sha256(data).hexdigest())
    edit_manifest(good_file, inflate)
    expect_format_error(good_file, "more than")


def test_missing_directory_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_archive(tmp_path / "no" / "model.ckz", {}, {})


def test_io_package_lazy_attributes():
    import convkit as ck
    assert ck.io.archive.read_archive is read_archive
    with pytest.raises(AttributeError):
        ck.io.no_such_module


def test_exclusive_mode_creates_a_new_file(tmp_path):
    path = tmp_path / "fresh.txt"
    with atomic_writer(path, "x") as handle:
        handle.write("once")
    assert path.read_text() == "once"
    with pytest.raises(FileExistsError):
        with atomic_writer(path, "x") as handle:
            handle.write("twice")
    assert path.read_text() == "once"
    racing = tmp_path / "raced.txt"
    with pytest.raises(FileExistsError):
        with atomic_writer(racing, "x") as handle:
            handle.write("mine")
            racing.write_text("someone else's")  # appears while we write
    assert racing.read_text() == "someone else's"
    assert sorted(os.listdir(tmp_path)) == ["fresh.txt", "raced.txt"]
