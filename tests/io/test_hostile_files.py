"""The hostile files of the security review, one by one: each must fail with one
FileFormatError, quickly and without allocating what it asks for (checked with a traced
memory peak far below the request)."""
import hashlib
import io
import json
import os
import stat
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

import convkit as ck
from convkit.errors import ConvkitError, FileFormatError
from convkit.io import limits
from convkit.io.archive import atomic_writer, read_archive, write_archive
from tests.fuzz.crafting import small_convnet, small_data, small_functional

L = ck.layers


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = small_convnet()
    x, y = small_data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    path = tmp_path_factory.mktemp("saved") / "m.convkit"
    model.save(path)
    return path


def _members(path):
    with zipfile.ZipFile(path) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def _write_zip(path, members, deflate=()):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members:
            archive.writestr(zipfile.ZipInfo(name), data,
                             zipfile.ZIP_DEFLATED if name in deflate else zipfile.ZIP_STORED)


def _change_meta(saved, tmp_path, change, name="bad.convkit"):
    members = dict(_members(saved))
    document = json.loads(members["convkit.json"])
    change(document)
    members["convkit.json"] = json.dumps(document).encode()
    path = tmp_path / name
    _write_zip(path, list(members.items()))
    return path


def _load_bounded(path, max_megabytes=64, max_seconds=30.0):
    """load_model must raise FileFormatError, tracing less than ``max_megabytes``."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(FileFormatError) as info:
            ck.load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < max_megabytes << 20, f"{peak / 2**20:.0f} MiB traced"
    assert time.perf_counter() - start < max_seconds
    return str(info.value)


def _with_npy_member(saved, tmp_path, header_shape, data_bytes: int, manifest_shape=None,
                     deflate=False):
    """``saved`` with its first array replaced by a .npy member whose header declares
    ``header_shape`` (float32) and which holds ``data_bytes`` zero bytes, the manifest's
    checksum fixed (and its shape set to ``manifest_shape`` if given)."""
    members = dict(_members(saved))
    document = json.loads(members["convkit.json"])
    entry = document["manifest"][0]
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": header_shape})
    data = header.getvalue() + bytes(data_bytes)
    entry["sha256"] = hashlib.sha256(data).hexdigest()
    if manifest_shape is not None:
        entry["shape"] = list(manifest_shape)
    members[entry["file"]] = data
    members["convkit.json"] = json.dumps(document).encode()
    path = tmp_path / "npy.convkit"
    _write_zip(path, list(members.items()), deflate={entry["file"]} if deflate else ())
    return path


def test_npy_member_inflating_to_256_mib_is_refused_before_decompressing(saved, tmp_path):
    # 256 MiB of zeros deflate to 256 KB: an honest manifest, a ~1000x zip bomb
    path = _with_npy_member(saved, tmp_path, (1 << 26,), 1 << 28, manifest_shape=(1 << 26,),
                            deflate=True)
    assert os.path.getsize(path) < 1 << 20
    assert "expand" in _load_bounded(path)


def test_npy_header_claiming_more_than_its_data_allocates_nothing(saved, tmp_path):
    message = _load_bounded(_with_npy_member(saved, tmp_path, (1 << 30,), 64))
    assert "manifest says" in message


def test_padded_convkit_json_is_refused_without_reading_it_all(saved, tmp_path):
    members = dict(_members(saved))
    members["convkit.json"] = members["convkit.json"] + b" " * (limits.MAX_META_BYTES + 1)
    path = tmp_path / "padded.convkit"
    _write_zip(path, list(members.items()), deflate={"convkit.json"})
    assert os.path.getsize(path) < 1 << 20
    _load_bounded(path)


@pytest.mark.parametrize("key, value", [("units", 10 ** 9), ("units", 2 ** 20),
                                        ("units", -5), ("units", 1e300)])
def test_huge_layer_sizes_are_refused_before_building(saved, tmp_path, key, value):
    def change(document):
        document["model_config"]["layers"][-1]["config"][key] = value
    _load_bounded(_change_meta(saved, tmp_path, change))


def test_huge_input_shape_is_refused(saved, tmp_path):
    def change(document):
        document["model_config"]["layers"][0]["config"]["batch_shape"] = [None, 60000, 60000, 1]
        document["model_config"]["build_input_shape"] = [None, 60000, 60000, 1]
    assert "elements" in _load_bounded(_change_meta(saved, tmp_path, change))


def test_weights_beyond_what_the_file_stores_are_refused(saved, tmp_path):
    """Sizes under every per-number limit can still multiply up: the weight budget (the
    stored bytes) catches a Dense of 4,096 x 4,096 in a file that stores 1.4k numbers."""
    def change(document):
        document["model_config"]["layers"][-1]["config"]["units"] = 4096
        document["model_config"]["layers"][0]["config"]["batch_shape"] = [None, 130, 130, 1]
        document["model_config"]["build_input_shape"] = [None, 130, 130, 1]
    assert "more than the file holds" in _load_bounded(_change_meta(saved, tmp_path, change))


@pytest.mark.parametrize("change", [
    lambda d: d["model_config"].update(name=[[[]]]),
    lambda d: d["model_config"].update(name=json.loads("[" * 900 + "]" * 900)),
    lambda d: d["model_config"]["layers"][1]["config"].update(name=7),
    lambda d: d["rng_states"]["__model__"]["state"].update(state=2 ** 200),
    lambda d: d["rng_states"]["__model__"].update(bit_generator="os.system"),
    lambda d: d["rng_states"].update(x=[1]),
    lambda d: d.update(compile_config={"optimizer": "adam"}),
    lambda d: d.update(compile_config={"optimizer": {"class_name": "Adam",
                                                     "config": {"learning_rate": -1}}}),
    lambda d: d.update(compile_config={"optimizer": {"class_name": "Adam",
                                                     "config": {"beta_1": [1]}}}),
    lambda d: d["compile_config"].update(loss=5),
    lambda d: d.update(model_class=["Sequential"]),
    lambda d: d["model_config"].update(layers={"a": 1}),
    lambda d: d["model_config"]["layers"].append("Dense"),
], ids=["nested-name", "900-deep-name", "int-layer-name", "rng-overflow", "rng-generator",
        "rng-type", "compile-str", "compile-negative-lr", "compile-list", "loss-int",
        "model-class-list", "layers-dict", "layer-str"])
def test_damaged_metadata_is_a_file_format_error(saved, tmp_path, change):
    _load_bounded(_change_meta(saved, tmp_path, change))


@pytest.mark.parametrize("key, value", [("optimizer/iterations", np.array(1e300)),
                                        ("optimizer/iterations", np.array(-3)),
                                        ("optimizer/learning_rate", np.array(np.inf)),
                                        ("optimizer/learning_rate", np.zeros(3))])
def test_damaged_optimizer_numbers_are_file_format_errors(saved, tmp_path, key, value):
    meta, arrays = read_archive(saved)
    arrays[key] = value
    path = tmp_path / "opt.convkit"
    write_archive(path, meta, arrays)
    _load_bounded(path)


@pytest.mark.parametrize("change", [
    lambda c: c["layers"][2]["inbound_nodes"].clear(),
    lambda c: c["layers"][2].update(inbound_nodes=[[]]),
    lambda c: c.update(input_layers=[]),
    lambda c: c.update(output_layers=[["nothing", 0, 0]]),
])
def test_damaged_functional_graphs_are_file_format_errors(tmp_path, change):
    model = small_functional()
    path = tmp_path / "f.convkit"
    model.save(path)
    _load_bounded(_change_meta(path, tmp_path, lambda d: change(d["model_config"])))


def test_loading_a_fifo_or_a_directory_fails_at_once(tmp_path):
    fifo = tmp_path / "pipe.convkit"
    os.mkfifo(fifo)
    with pytest.raises(FileFormatError, match="regular file"):
        ck.load_model(fifo)                  # would block forever in open()
    with pytest.raises(FileFormatError, match="regular file"):
        ck.load_model(tmp_path)


# ------------------------------------------------------------------ saving
def _model():
    return small_convnet()


@pytest.mark.parametrize("kind", ["fifo", "symlink", "directory", "dangling-symlink"])
def test_save_refuses_what_is_not_a_regular_file(tmp_path, kind):
    target = tmp_path / "model.convkit"
    real = tmp_path / "real.convkit"
    real.write_bytes(b"keep me")
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "symlink":
        target.symlink_to(real)
    elif kind == "dangling-symlink":
        target.symlink_to(tmp_path / "nowhere")
    else:
        target.mkdir()
    with pytest.raises(ConvkitError, match="will not replace"):
        _model().save(target)
    assert real.read_bytes() == b"keep me"
    assert os.path.lexists(target) and not target.is_file() or kind == "symlink"
    assert target.is_symlink() == kind.endswith("symlink")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_save_refuses_a_device(tmp_path):
    if not os.path.exists("/dev/null"):
        pytest.skip("no /dev/null on this system")
    before = os.stat("/dev/null")
    with pytest.raises(ConvkitError, match="device"):
        _model().save("/dev/null")
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


def test_stale_temp_files_of_a_killed_save_are_removed_by_the_next_save(tmp_path):
    target = tmp_path / "m.convkit"
    dead_pid = 2 ** 22 + 12345                    # above any pid_max: never alive
    stale = tmp_path / f".m.convkit.{dead_pid}.0123456789ab.tmp"
    stale.write_bytes(b"x" * 1000)
    live = tmp_path / f".m.convkit.{os.getppid()}.0123456789ab.tmp"    # a save still running
    live.write_bytes(b"y")
    legacy = tmp_path / ".m.convkit.abcdefabcdef.tmp"
    legacy.write_bytes(b"z")
    os.utime(legacy, (time.time() - 3600, time.time() - 3600))
    other = tmp_path / f".other.convkit.{dead_pid}.0123456789ab.tmp"    # another target's
    other.write_bytes(b"w")
    _model().save(target)
    assert not stale.exists() and not legacy.exists()
    assert live.exists() and other.exists()
    ck.load_model(target)


def test_temp_file_has_the_final_permissions_from_the_start(tmp_path):
    target = tmp_path / "secret.bin"
    target.write_bytes(b"old")
    os.chmod(target, 0o600)
    seen = []
    with atomic_writer(target) as handle:
        seen.append(stat.S_IMODE(os.fstat(handle.fileno()).st_mode))
        temps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert len(temps) == 1 and temps[0].name.startswith(".secret.bin.")   # same directory
        handle.write(b"new")
    assert seen == [0o600] and stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert target.read_bytes() == b"new"


def test_read_zip_member_bounds_any_zip_format(tmp_path):
    from convkit.io.archive import read_zip_member
    path = tmp_path / "k.keras"
    _write_zip(path, [("model.weights.h5", bytes(8 << 20)), ("config.json", b"{}")],
               deflate={"model.weights.h5"})

    def fail(reason):
        raise FileFormatError(reason)
    size = os.path.getsize(path)
    with zipfile.ZipFile(path) as archive:
        assert read_zip_member(archive, "config.json", size, 100, fail) == b"{}"
        with pytest.raises(FileFormatError, match="expand"):       # 8 MiB of zeros: ~1000x
            read_zip_member(archive, "model.weights.h5", size, 1 << 30, fail)
        with pytest.raises(FileFormatError, match="more than the 1000"):
            read_zip_member(archive, "model.weights.h5", size, 1000, fail)


def test_a_config_that_disagrees_with_the_stored_weights_is_a_file_format_error(saved,
                                                                                tmp_path):
    def change(document):
        document["model_config"]["layers"][-1]["config"]["units"] = 4      # stored: 3
    assert "do not fit the model" in _load_bounded(_change_meta(saved, tmp_path, change))
