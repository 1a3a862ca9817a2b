"""``predict`` runs a large batch in a few equal parts when a layer's output for the whole
batch would be large (``INFERENCE_BLOCK_BYTES``): the outputs are those of one forward pass
up to float32 rounding (matrix products of another height may round differently), the same
on every run, and callbacks still see one call per batch with the batch's outputs."""
import numpy as np

import convkit as ck
from convkit.models import training
from tests.models import _nets


class _Recorder(ck.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rows = []

    def on_predict_batch_end(self, batch, logs=None):
        self.rows.append(logs["outputs"][0].shape[0])


def test_split_batches_give_the_same_outputs(rng, monkeypatch):
    model = _nets.tiny_cnn(input_shape=(8, 8, 1), classes=3)
    model.build((None, 8, 8, 1))
    x = rng.standard_normal((23, 8, 8, 1)).astype(np.float32)
    whole = model.predict_on_batch(x)
    # the largest output (8x8x4 float32 = 1 KiB per sample): 3 samples per part
    monkeypatch.setattr(training, "INFERENCE_BLOCK_BYTES", 3 * 1024)
    assert model._inference_rows(10) == 3
    recorder = _Recorder()
    split = model.predict(x, batch_size=10, callbacks=[recorder])
    np.testing.assert_allclose(split, whole, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(model.predict(x, batch_size=10), split)   # deterministic
    assert recorder.rows == [10, 10, 3]
    monkeypatch.setattr(training, "INFERENCE_BLOCK_BYTES", 1)      # one sample at a time
    np.testing.assert_allclose(model.predict(x, batch_size=23), whole, rtol=1e-6, atol=1e-7)


def test_default_budget_keeps_small_batches_whole():
    model = _nets.mnist_convnet()
    model.build((None, 28, 28, 1))
    assert model._inference_rows(32) == 32
    if model._chain_unwritten():
        # the chain fuses each conv with its pool: the largest written output is the first
        # pool's, 13x13x32 float32 = 21.6 KB per sample, against CHAIN_BLOCK_BYTES
        assert len(model._chain_unwritten()) == 2
        assert model._inference_rows(4096) == training.CHAIN_BLOCK_BYTES // (13 * 13 * 32 * 4)
    else:
        # 26x26x32 float32 per sample: 86.5 KB; 8 MiB holds 96 samples
        assert model._inference_rows(256) == \
            training.INFERENCE_BLOCK_BYTES // (26 * 26 * 32 * 4)
