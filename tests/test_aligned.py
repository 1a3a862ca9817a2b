"""Arrays on 64-byte boundaries: the helpers, and the layers' weights made with them."""
import numpy as np
import pytest

import convkit as ck
from convkit._aligned import ALIGN, aligned_copy, aligned_empty, aligned_zeros


@pytest.mark.parametrize("shape", [(), (0,), (7,), (3, 5), (2, 3, 3, 17), 5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.uint8])
def test_aligned_arrays_have_the_shape_dtype_and_alignment(shape, dtype):
    for make in (aligned_empty, aligned_zeros):
        a = make(shape, dtype)
        assert a.shape == ((shape,) if isinstance(shape, int) else shape)
        assert a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
        assert a.size == 0 or a.ctypes.data % ALIGN == 0     # (no data: no address)
    assert not aligned_zeros(shape, dtype).any()


def test_aligned_copy_is_an_equal_independent_copy():
    src = np.arange(30, dtype=np.float32).reshape(5, 6)[:, 1:]     # not contiguous
    out = aligned_copy(src)
    np.testing.assert_array_equal(out, src)
    assert out.ctypes.data % ALIGN == 0 and out.flags.c_contiguous
    out[0, 0] = -1
    assert src[0, 0] == 1


def test_layer_weights_start_on_a_cache_line_and_stay_there():
    model = ck.Sequential([ck.layers.Input((9, 9, 3)), ck.layers.Conv2D(5, 3),
                           ck.layers.Flatten(), ck.layers.Dense(3)])
    addresses = [w.value.ctypes.data for layer in model.layers for w in layer.weights]
    assert addresses and all(a % ALIGN == 0 for a in addresses)
    model.set_weights([np.ones_like(w) for w in model.get_weights()])    # copied in place
    after = [w.value.ctypes.data for layer in model.layers for w in layer.weights]
    assert after == addresses


def test_outputs_from_a_size_up_are_aligned():
    from convkit._aligned import OUTPUT_ALIGN_BYTES, output_empty
    small = output_empty((3, 4), np.float32)
    assert small.shape == (3, 4) and small.dtype == np.float32 and small.base is None
    big = output_empty((OUTPUT_ALIGN_BYTES // 4,), np.float32)
    assert big.shape == (OUTPUT_ALIGN_BYTES // 4,) and big.ctypes.data % ALIGN == 0
    assert output_empty(OUTPUT_ALIGN_BYTES, np.uint8).ctypes.data % ALIGN == 0
