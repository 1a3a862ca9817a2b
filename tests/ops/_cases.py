"""Random small configurations for the reference comparisons (seeded, so reproducible)."""
import numpy as np

from convkit.ops.reference import reference_out_size, reference_pads

PAD_FORMS = ("valid", "same", "SAME", "int", "pair", "pairs")


def random_padding(rng, max_pad):
    form = PAD_FORMS[rng.integers(len(PAD_FORMS))]
    if form in ("valid", "same", "SAME"):
        return form
    if form == "int":
        return int(rng.integers(0, max_pad + 1))
    if form == "pair":
        return tuple(int(v) for v in rng.integers(0, max_pad + 1, size=2))
    return tuple(tuple(int(v) for v in rng.integers(0, max_pad + 1, size=2)) for _ in range(2))


def pair_or_int(rng, low, high):
    if rng.random() < 0.5:
        return int(rng.integers(low, high + 1))
    return tuple(int(v) for v in rng.integers(low, high + 1, size=2))


def as_pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def geometry_ok(hw, kernel, strides, dilation, padding, ceil_mode=False, pad_limit=None,
                mode="zeros"):
    """Whether the configuration is legal (positive output, pads allowed for the mode)."""
    kernel, strides, dilation = as_pair(kernel), as_pair(strides), as_pair(dilation)
    for axis in range(2):
        before, after = reference_pads(hw[axis], kernel[axis], strides[axis], dilation[axis],
                                       padding, axis)
        if pad_limit is not None and not isinstance(padding, str) and \
                max(before, after) > pad_limit[axis]:
            return False
        if mode == "reflect" and max(before, after) >= hw[axis]:
            return False
        if mode == "circular" and max(before, after) > hw[axis]:
            return False
        if hw[axis] + before + after < dilation[axis] * (kernel[axis] - 1) + 1:
            return False
        if reference_out_size(hw[axis], kernel[axis], strides[axis], dilation[axis], before,
                              after, padding, ceil_mode) <= 0:
            return False
    return True


def conv_case(seed):
    """A legal random conv2d configuration: (x, kernel, bias, keyword arguments)."""
    rng = np.random.default_rng(seed)
    while True:
        groups = int(rng.choice([1, 1, 2, 3]))
        c_g, f_g = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        hw = tuple(int(v) for v in rng.integers(3, 9, size=2))
        kernel_hw = as_pair(pair_or_int(rng, 1, 3))
        strides = pair_or_int(rng, 1, 3)
        dilation = pair_or_int(rng, 1, 2)
        padding = random_padding(rng, 2)
        mode = str(rng.choice(["zeros", "zeros", "reflect", "replicate", "circular"]))
        data_format = str(rng.choice(["channels_last", "channels_first"]))
        if geometry_ok(hw, kernel_hw, strides, dilation, padding, mode=mode):
            break
    n = int(rng.integers(1, 3))
    x = rng.standard_normal((n, *hw, c_g * groups))
    if data_format == "channels_first":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    kernel = rng.standard_normal((*kernel_hw, c_g, f_g * groups))
    bias = rng.standard_normal(f_g * groups) if rng.random() < 0.7 else None
    kwargs = dict(strides=strides, padding=padding, dilation_rate=dilation, groups=groups,
                  padding_mode=mode, data_format=data_format)
    return x, kernel, bias, kwargs


def pool_case(seed, with_dilation=True):
    """A legal random pooling configuration: (x, pool_size, strides, padding, options)."""
    rng = np.random.default_rng(seed)
    while True:
        hw = tuple(int(v) for v in rng.integers(3, 9, size=2))
        pool = pair_or_int(rng, 1, 3)
        strides = None if rng.random() < 0.3 else pair_or_int(rng, 1, 3)
        dilation = pair_or_int(rng, 1, 2) if with_dilation else 1
        padding = random_padding(rng, 1)
        ceil_mode = bool(rng.random() < 0.5)
        limit = tuple(k // 2 for k in as_pair(pool))
        if geometry_ok(hw, pool, pool if strides is None else strides, dilation, padding,
                       ceil_mode, pad_limit=limit):
            break
    data_format = str(rng.choice(["channels_last", "channels_first"]))
    x = rng.permutation(np.arange(2 * hw[0] * hw[1] * 3, dtype=np.float64))  # distinct values
    x = x.reshape(2, *hw, 3) / 10.0
    if data_format == "channels_first":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    options = dict(ceil_mode=ceil_mode, data_format=data_format,
                   count_include_pad=bool(rng.random() < 0.5))
    return x, pool, strides, padding, dilation, options


def assert_non_finite_stays_in_its_windows(conv2d, conv2d_ref, x, bad_pixel, bad, k):
    """Put ``bad`` (inf or NaN) at ``bad_pixel`` of ``x`` and check a 'same' 3x3 ``conv2d``:
    exactly the outputs whose windows hold it are non-finite (the 3x3 pixels around it, every
    filter), and the others equal the loop reference's."""
    x = x.copy()
    x[bad_pixel] = bad
    y = conv2d(x, k, padding="same")
    with np.errstate(invalid="ignore"):
        expected = conv2d_ref(x, k, padding="same")
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(np.isfinite(y), finite)
    assert finite.sum() == finite.size - 3 * 3 * k.shape[3]
    np.testing.assert_allclose(y[finite], expected[finite], rtol=1e-12, atol=1e-12)


def assert_channels_first_float32_relu(conv2d_relu, x, k, b, y, tolerance, **kwargs):
    """``conv2d_relu`` of ``x`` (float64, channels_last) as float32 channels_first, in and
    out, against ``max(y, 0)`` for ``y`` the float64 channels_last result."""
    x_cf = np.ascontiguousarray(x.transpose(0, 3, 1, 2)).astype(np.float32)
    y_cf = conv2d_relu(x_cf, k.astype(np.float32), b.astype(np.float32),
                       data_format="channels_first", **kwargs)
    assert y_cf.dtype == np.float32
    np.testing.assert_allclose(y_cf, np.maximum(y, 0).transpose(0, 3, 1, 2), rtol=tolerance,
                               atol=tolerance)
