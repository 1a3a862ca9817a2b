"""convkit.distributed.predict / evaluate: equal to model.predict / model.evaluate, the model
sent once per worker, image files read on the workers."""
import numpy as np
import pytest

from .conftest import small_convnet, toy_data

da = pytest.importorskip("dask.array")
ckd = pytest.importorskip("convkit.distributed")


def test_predict_equals_model_predict_bit_for_bit(two_workers):
    model = small_convnet()
    x, _ = toy_data(200)
    lazy = ckd.predict(model, da.from_array(x, chunks=64), batch_size=32, client=two_workers)
    assert lazy.shape == (200, 3) and lazy.chunks[0] == (64, 64, 64, 8)
    np.testing.assert_array_equal(lazy.compute(), model.predict(x, batch_size=32))


def test_predict_uint8_chunks_not_multiple_of_batch(two_workers):
    model = small_convnet()
    pixels = np.random.default_rng(3).integers(0, 256, (150, 8, 8, 1), dtype=np.uint8)
    got = ckd.predict(model, da.from_array(pixels, chunks=(37, 4, 8, 1)), batch_size=16,
                      client=two_workers).compute()
    np.testing.assert_allclose(got, model.predict(pixels.astype(np.float32), batch_size=16),
                               rtol=1e-5, atol=1e-7)


def test_model_built_once_per_worker(two_workers):
    """Eight chunks on two workers: each worker builds the model from the payload once and
    reuses it for its other chunks."""
    model = small_convnet()
    x, _ = toy_data(256)
    lazy = ckd.predict(model, da.from_array(x, chunks=32), batch_size=32, client=two_workers)
    lazy.compute()

    def builds():
        from convkit.distributed import _WORKER_BUILDS
        return dict(_WORKER_BUILDS)

    per_worker = two_workers.run(builds)
    counts = [n for worker in per_worker.values() for n in worker.values()]
    assert counts and all(n == 1 for n in counts)
    assert 1 <= len(counts) <= 2 * len(set().union(*per_worker.values()))


def test_predict_without_client_uses_local_scheduler():
    import dask
    model = small_convnet(dtype="float64")
    x, _ = toy_data(96, dtype="float64")
    with dask.config.set(scheduler="synchronous"):
        got = ckd.predict(model, da.from_array(x, chunks=32), batch_size=32).compute()
    np.testing.assert_array_equal(got, model.predict(x, batch_size=32))


def test_predict_image_folder(two_workers, tmp_path):
    from PIL import Image

    import convkit as ck
    rng = np.random.default_rng(5)
    (tmp_path / "sub").mkdir()
    for i in range(7):
        folder = tmp_path if i % 2 else tmp_path / "sub"
        Image.fromarray(rng.integers(0, 256, (10, 12), dtype=np.uint8)).save(
            folder / f"img{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    model = small_convnet()
    paths = ckd.image_paths(tmp_path)
    assert len(paths) == 7 and paths == sorted(paths[:4]) + sorted(paths[4:])
    got = ckd.predict(model, str(tmp_path), batch_size=4, files_per_task=3,
                      client=two_workers)
    assert got.chunks[0] == (3, 3, 1)
    local = np.stack([ck.data.read_image(p, size=(8, 8), color_mode="grayscale")
                      for p in paths])
    np.testing.assert_allclose(got.compute(), model.predict(local, batch_size=4),
                               rtol=1e-6, atol=1e-7)
    same = ckd.predict(model, paths[2:5], batch_size=4, client=two_workers).compute()
    np.testing.assert_allclose(same, model.predict(local[2:5], batch_size=4), rtol=1e-6)


def test_evaluate_equals_model_evaluate(two_workers):
    model = small_convnet(dtype="float64")
    x, y = toy_data(130, dtype="float64")
    got = ckd.evaluate(model, da.from_array(x, chunks=40), da.from_array(y, chunks=40),
                       batch_size=20, client=two_workers, return_dict=True)
    want = model.evaluate(x, y, batch_size=20, verbose=0, return_dict=True)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-12)


def test_bad_inputs_name_the_function_and_shapes(two_workers):
    from convkit.errors import ConvkitError, ShapeError
    model = small_convnet()
    with pytest.raises(ShapeError, match=r"predict.*\(10, 9, 9, 1\).*\(None, 8, 8, 1\)"):
        ckd.predict(model, da.zeros((10, 9, 9, 1), chunks=5), client=two_workers)
    with pytest.raises(ShapeError, match="must be a dask array or a NumPy array"):
        ckd.predict(model, 3.0, client=two_workers)
    with pytest.raises(ConvkitError, match="batch_size must be an int >= 1"):
        ckd.predict(model, da.zeros((10, 8, 8, 1), chunks=5), batch_size=0)
    with pytest.raises(ConvkitError, match="not a directory"):
        ckd.image_paths("/nonexistent/folder")


def test_from_memmap_npy_and_raw(tmp_path):
    import dask

    from convkit.errors import ConvkitError, ShapeError
    data = np.arange(10 * 8 * 8, dtype=np.uint16).reshape(10, 8, 8, 1)
    np.save(tmp_path / "images.npy", data)
    data.tofile(tmp_path / "images.raw")
    with dask.config.set(scheduler="synchronous"):
        from_npy = ckd.from_memmap(tmp_path / "images.npy", chunk_rows=4)
        assert from_npy.chunks[0] == (4, 4, 2) and from_npy.dtype == np.uint16
        np.testing.assert_array_equal(from_npy.compute(), data)
        raw = ckd.from_memmap(tmp_path / "images.raw", shape=(10, 8, 8, 1), dtype="uint16")
        np.testing.assert_array_equal(raw[3:7].compute(), data[3:7])
        model = small_convnet()
        np.testing.assert_allclose(ckd.predict(model, raw, batch_size=4).compute(),
                                   model.predict(data.astype(np.float32), batch_size=4),
                                   rtol=1e-6)
    with pytest.raises(ShapeError, match="needs 1400"):
        ckd.from_memmap(tmp_path / "images.raw", shape=(10, 8, 8, 1), dtype="uint16",
                        offset=120)
    with pytest.raises(ConvkitError, match="not a .npy file"):
        ckd.from_memmap(tmp_path / "images.raw")
    with pytest.raises(ConvkitError, match="no such file"):
        ckd.from_memmap(tmp_path / "missing.npy")
