"""Hostile and unsupported Keras files: each is one clear error (FileFormatError for a bad
file, ConvkitError for what convkit cannot honour), nothing a file names is imported or
run, and memory stays within a small multiple of the file's size."""
import json
import os
import pathlib
import struct
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

import convkit as ck
from convkit.errors import ConvkitError, FileFormatError

h5py = pytest.importorskip("h5py")
L = ck.layers
FIXTURES = pathlib.Path(__file__).resolve().parent / "keras_fixtures"


def tiny():
    return ck.Sequential([L.Input((4,)), L.Dense(3)])


def keras_parts(name="mnist_convnet"):
    with zipfile.ZipFile(FIXTURES / f"{name}.keras") as archive:
        return {n: archive.read(n) for n in archive.namelist()}


def write_zip(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def with_config(tmp_path, edit, name="mnist_convnet"):
    parts = keras_parts(name)
    config = json.loads(parts["config.json"])
    edit(config)
    parts["config.json"] = json.dumps(config)
    return write_zip(tmp_path / "edited.keras", parts)


def peak_memory(action):
    tracemalloc.start()
    try:
        action()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


# ---------------------------------------------------------------- HDF5 pointing elsewhere
def test_external_storage_is_refused(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(12, dtype=np.float32).tobytes())
    path = tmp_path / "evil.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_group("layers/dense/vars").create_dataset(
            "0", shape=(4, 3), dtype="<f4", external=[(str(secret), 0, 48)])
        f["layers/dense/vars/1"] = np.zeros(3, np.float32)
    model = tiny()
    before = model.get_weights()
    with pytest.raises(FileFormatError, match="external storage"):
        model.load_weights(path)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def _zero_free_space(data: bytes) -> bytes:
    """The file with its first global heap's free-space object (index 0) set to size 0:
    the HDF5 library's walk over that heap would then never advance."""
    start = data.index(b"GCOL")
    size = int.from_bytes(data[start + 8:start + 16], "little")
    p = start + 16
    while p + 16 <= start + size:
        index = int.from_bytes(data[p:p + 2], "little")
        length = int.from_bytes(data[p + 8:p + 16], "little")
        if index == 0:
            return data[:p + 8] + bytes(8) + data[p + 16:]
        p += 16 + -(-length // 8) * 8
    raise AssertionError("no free space in the heap")


@pytest.mark.parametrize("where", ["weights.h5", "keras"])
def test_a_global_heap_the_library_would_read_forever_is_refused(tmp_path, where):
    """A text attribute's heap whose free space has size 0 (found by the fuzzer: h5py's
    read of the attribute never returned, inside one C call) fails at once."""
    import time
    parts = keras_parts()
    parts["model.weights.h5"] = _zero_free_space(parts["model.weights.h5"])
    if where == "keras":
        path = write_zip(tmp_path / "looping.keras", parts)
        action = lambda: ck.load_model(path)                        # noqa: E731
    else:
        path = tmp_path / "looping.weights.h5"
        path.write_bytes(parts["model.weights.h5"])
        model = ck.load_model(FIXTURES / "mnist_convnet.keras")
        action = lambda: model.load_weights(path)                    # noqa: E731
    start = time.perf_counter()
    with pytest.raises(FileFormatError, match="global heap .* would read forever"):
        action()
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("index", [0, 1])
def test_a_layer_name_that_is_not_text(tmp_path, index):
    """A mutated config naming a layer with an object (found by the fuzzer as a
    TypeError from the layer order): the input layer's name is not needed; a real layer
    without its name no longer matches its weights, a clean error."""
    def edit(config):
        config["config"]["layers"][index]["config"]["name"] = {}
    path = with_config(tmp_path, edit)
    if index == 0:
        assert ck.load_model(path).count_params() > 0
    else:
        with pytest.raises(ConvkitError, match="conv2d"):
            ck.load_model(path)


def test_heap_walk_passes_every_fixture():
    from convkit.io.keras_h5 import refuse_looping_heaps

    def fail(reason):
        raise AssertionError(reason)
    for path in FIXTURES.iterdir():
        if path.suffix == ".keras":
            for name, data in keras_parts(path.stem).items():
                if name.endswith(".h5"):
                    refuse_looping_heaps(data, fail)
        elif path.suffix == ".h5":
            refuse_looping_heaps(path.read_bytes(), fail)


@pytest.mark.parametrize("link", ["external", "soft"])
def test_links_are_refused(tmp_path, link):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["kernel"] = np.ones((4, 3), np.float32)
    path = tmp_path / "evil.weights.h5"
    with h5py.File(path, "w") as f:
        group = f.create_group("layers/dense/vars")
        group["1"] = np.zeros(3, np.float32)
        f["elsewhere"] = np.ones((4, 3), np.float32)
        group["0"] = (h5py.ExternalLink(str(other), "/kernel") if link == "external"
                      else h5py.SoftLink("/elsewhere"))
    with pytest.raises(FileFormatError, match=f"{link} link"):
        tiny().load_weights(path)


def test_hard_link_cycle_ends(tmp_path):
    path = tmp_path / "loop.weights.h5"
    with h5py.File(path, "w") as f:
        group = f.create_group("layers/dense/vars")
        group["again"] = f["layers"]                 # layers/dense/vars/again -> layers
    with pytest.raises(FileFormatError, match="deeper|more objects"):
        tiny().load_weights(path)


def test_dataset_larger_than_the_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.weights.h5"
    with h5py.File(path, "w") as f:          # 40 GB declared, nothing stored
        f.create_group("layers/dense/vars").create_dataset("0", shape=(100_000, 100_000),
                                                           dtype="<f4")
    assert os.path.getsize(path) < 10_000

    def load():
        with pytest.raises(FileFormatError, match="more than the whole file"):
            tiny().load_weights(path)

    assert peak_memory(load) < 5_000_000


def test_compressed_dataset_is_refused(tmp_path):
    path = tmp_path / "packed.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_group("layers/dense/vars").create_dataset(
            "0", data=np.zeros((4000, 3000), np.float32), compression="gzip")
    with pytest.raises(FileFormatError, match="filters"):
        tiny().load_weights(path)


# ---------------------------------------------------------------- zip members
def _zeros_deflated(size):
    """A raw deflate stream of ``size`` zero bytes, built from one flushed MiB block
    repeated (a full flush resets the compressor, so every block encodes the same)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return block * (size >> 20) + compressor.flush()


@pytest.mark.parametrize("lie", [False, True])
def test_zip_member_inflating_to_gigabytes(tmp_path, lie):
    """A 1 GiB member compressed to ~1 MB: refused from its declared size, and, when the
    archive lies about that size, by the bounded read."""
    parts = keras_parts("branched")
    path = write_zip(tmp_path / "bomb.keras", {"metadata.json": parts["metadata.json"],
                                                "config.json": parts["config.json"],
                                                "model.weights.h5": b"x"},
                     compression=zipfile.ZIP_DEFLATED)
    # replace the last member's data by a deflated GiB of zeros, fixing the zip's records
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("model.weights.h5")
    payload = _zeros_deflated(1 << 30)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    central = data.index(b"PK\x01\x02", start)
    tail = data[central:]
    declared = 1000 if lie else 1 << 30
    crc = zlib.crc32(bytes(1 << 20)) if not lie else 0
    local = data[info.header_offset:start]
    struct.pack_into("<III", local, 14, crc, len(payload), declared)
    entry = tail.index(b"model.weights.h5") - 46
    struct.pack_into("<III", tail, entry + 16, crc, len(payload), declared)
    end = tail.index(b"PK\x05\x06")
    struct.pack_into("<I", tail, end + 16, start + len(payload))
    path.write_bytes(bytes(data[:info.header_offset]) + bytes(local) + payload + bytes(tail))
    size = path.stat().st_size
    assert size < 3_000_000

    def load():
        with pytest.raises(FileFormatError):
            ck.load_model(path)

    assert peak_memory(load) < 20 * size + 2_000_000


def test_deeply_nested_config_json(tmp_path):
    parts = keras_parts("branched")
    parts["config.json"] = b"[" * 100_000 + b"]" * 100_000
    path = write_zip(tmp_path / "deep.keras", parts)
    with pytest.raises(FileFormatError, match="nest"):
        ck.load_model(path)


# ---------------------------------------------------------------- configs naming code
def test_config_naming_os_system_runs_nothing(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "system", lambda *args: calls.append(args))

    def layer_from_os(config):
        config["config"]["layers"][1].update(module="os", class_name="system",
                                             registered_name="os>system")

    def model_from_os(config):
        config.update(module="os", class_name="system")

    def dotted(config):
        config["config"]["layers"][1]["class_name"] = "os.system"

    for edit, message in ((layer_from_os, "not a Keras layer"),
                          (model_from_os, "Sequential and functional"),
                          (dotted, "no layer 'os.system'")):
        with pytest.raises(ConvkitError, match=message):
            ck.load_model(with_config(tmp_path, edit))
    assert calls == []


def test_lambda_layer_is_refused(tmp_path):
    def add_lambda(config):
        config["config"]["layers"].insert(1, {
            "module": "keras.layers", "class_name": "Lambda", "registered_name": None,
            "config": {"name": "lambda", "function": {"class_name": "__lambda__", "config": {
                "code": "4wEAAAAAAAAAAAAAAAEAAAADAAAA", "defaults": None, "closure": None}}}})

    with pytest.raises(ConvkitError, match="Lambda.*never runs code"):
        ck.load_model(with_config(tmp_path, add_lambda))


def test_custom_objects_supply_a_class(tmp_path):
    class Doubling(L.ReLU):
        pass

    def rename(config):
        layer = config["config"]["layers"][2]         # the first MaxPooling2D -> custom
        layer.update(class_name="Halving", module="my_package.layers",
                     registered_name="my_package>Halving")

    path = with_config(tmp_path, rename)
    with pytest.raises(ConvkitError, match="custom_objects"):
        ck.load_model(path)
    with pytest.raises(ConvkitError):         # the wrong class: MaxPooling2D's arguments
        ck.load_model(path, custom_objects={"my_package>Halving": Doubling})
    model = ck.load_model(path, custom_objects={"Halving": L.MaxPooling2D})
    assert type(model.layers[1]).__name__ == "MaxPooling2D"


@pytest.mark.parametrize("key, value, message", [
    ("kernel_constraint", {"module": "keras.constraints", "class_name": "MaxNorm",
                           "config": {"max_value": 2, "axis": 0}}, "kernel_constraint"),
    ("activity_regularizer", {"module": "keras.regularizers", "class_name": "L2",
                              "config": {"l2": 0.1}}, "activity_regularizer"),
    ("dtype", {"module": "keras", "class_name": "DTypePolicy",
               "config": {"name": "mixed_float16"}}, "mixed_float16"),
])
def test_settings_convkit_cannot_honour_name_layer_and_argument(tmp_path, key, value,
                                                                 message):
    def edit(config):
        config["config"]["layers"][1]["config"][key] = value

    with pytest.raises(ConvkitError, match=rf"layer 'conv2d.*{message}"):
        ck.load_model(with_config(tmp_path, edit))


def test_architecture_larger_than_the_weights_is_refused_before_allocating(tmp_path):
    def huge(config):
        config["config"]["layers"][-1]["config"]["units"] = 2_000_000   # 12.8 GB of kernel

    path = with_config(tmp_path, huge)

    def load():
        with pytest.raises(FileFormatError, match="beyond what the file's weights hold"):
            ck.load_model(path)

    assert peak_memory(load) < 20_000_000


def test_truncated_and_foreign_files(tmp_path):
    data = (FIXTURES / "branched.h5").read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match="corrupt or truncated"):
        ck.load_model(cut)
    cut = tmp_path / "cut.keras"
    cut.write_bytes((FIXTURES / "branched.keras").read_bytes()[:5000])
    with pytest.raises(FileFormatError):
        ck.load_model(cut)
    text = tmp_path / "m.keras"
    text.write_text("not a model")
    with pytest.raises(FileFormatError):
        ck.load_model(text)
