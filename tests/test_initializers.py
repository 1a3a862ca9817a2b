import json

import numpy as np
import pytest

from convkit import initializers
from convkit.errors import ConvkitError


def draw(name, shape, seed=0, dtype="float64", **fans):
    return initializers.get(name)(shape, np.random.default_rng(seed), dtype, **fans)


def test_compute_fans_keras_way():
    assert initializers.compute_fans(()) == (1, 1)
    assert initializers.compute_fans((7,)) == (7, 7)
    assert initializers.compute_fans((1600, 10)) == (1600, 10)
    assert initializers.compute_fans((3, 3, 16, 32)) == (144, 288)


@pytest.mark.parametrize("name, shape, limit", [
    ("glorot_uniform", (3, 3, 16, 32), np.sqrt(6 / (144 + 288))),
    ("he_uniform", (50, 40), np.sqrt(6 / 50)),
    ("lecun_uniform", (50, 40), np.sqrt(3 / 50)),
    ("random_uniform", (50, 40), 0.05),
])
def test_uniform_limits(name, shape, limit):
    w = draw(name, shape)
    assert w.shape == shape and w.dtype == np.float64
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.95 * limit                       # fills the range
    assert np.var(w) == pytest.approx(limit ** 2 / 3, rel=0.1)   # U(-a, a) has variance a^2/3


@pytest.mark.parametrize("name, shape, stddev", [
    ("glorot_normal", (200, 300), np.sqrt(2 / 500)),
    ("he_normal", (3, 3, 32, 64), np.sqrt(2 / 288)),
    ("lecun_normal", (400, 100), np.sqrt(1 / 400)),
    ("truncated_normal", (200, 200), 0.05 * 0.87962566103423978),   # stddev before the cut
])
def test_truncated_normals_have_the_target_stddev(name, shape, stddev):
    w = draw(name, shape)
    assert np.std(w) == pytest.approx(stddev, rel=0.05)
    raw = stddev / 0.87962566103423978
    assert np.abs(w).max() <= 2 * raw + 1e-12                  # cut at two raw std devs


def test_random_normal_and_constants():
    w = draw("random_normal", (300, 300))
    assert np.std(w) == pytest.approx(0.05, rel=0.02) and np.abs(w).max() > 0.15   # untruncated
    np.testing.assert_array_equal(draw("zeros", (2, 3)), 0)
    np.testing.assert_array_equal(draw("ones", (2, 3)), 1)
    np.testing.assert_array_equal(initializers.Constant(2.5)((2,), None, "float32"), [2.5, 2.5])


def test_explicit_fans_override_the_shape():
    w = draw("he_uniform", (4, 4), fan_in=10000)
    assert np.abs(w).max() <= np.sqrt(6 / 10000)


def test_orthogonal():
    w = draw("orthogonal", (3, 3, 4, 8))
    flat = w.reshape(-1, 8)                                    # (36, 8): orthonormal columns
    np.testing.assert_allclose(flat.T @ flat, np.eye(8), atol=1e-10)
    wide = draw("orthogonal", (4, 10))
    np.testing.assert_allclose(wide @ wide.T, np.eye(4), atol=1e-10)


def test_dtype_and_determinism():
    a = draw("glorot_uniform", (5, 5), seed=1, dtype="float32")
    b = draw("glorot_uniform", (5, 5), seed=1, dtype="float32")
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, draw("glorot_uniform", (5, 5), seed=2, dtype="float32"))


def test_get_serialize_deserialize():
    assert isinstance(initializers.get("GlorotUniform"), initializers.GlorotUniform)
    assert initializers.serialize(initializers.HeNormal()) == "he_normal"
    config = initializers.serialize(initializers.RandomNormal(stddev=0.2))
    assert config == {"class_name": "RandomNormal", "config": {"mean": 0.0, "stddev": 0.2}}
    clone = initializers.get(json.loads(json.dumps(config)))
    assert clone == initializers.RandomNormal(stddev=0.2)
    scaling = initializers.VarianceScaling(2.0, "fan_out", "uniform")
    assert initializers.deserialize(initializers.serialize(scaling)) == scaling

    def custom(shape, rng, dtype, fan_in=None, fan_out=None):
        return np.full(shape, 7.0, dtype)
    assert initializers.get(custom) is custom
    with pytest.raises(ConvkitError, match="cannot serialise"):
        initializers.serialize(custom)
    with pytest.raises(ConvkitError, match="unknown initializer 'xavier'.*glorot_uniform"):
        initializers.get("xavier")
    with pytest.raises(ConvkitError, match="mode must be"):
        initializers.VarianceScaling(mode="fan_max")
