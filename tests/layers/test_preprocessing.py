"""The augmentation layers: identity (RandomCrop: centre crop) outside training, exact
transforms in training, seeded reproducibility, draws within the factor ranges, float64
gradient checks with the draw held fixed, the resampling op against Keras's
``ops.image.affine_transform``, and each layer against Keras's own ``transform_images``
given the same draw (values and JAX gradients within 1e-5)."""
import doctest

import numpy as np
import pytest

import convkit as ck
from convkit.errors import ConvkitError, ShapeError
from convkit.layers import (RandomContrast, RandomCrop, RandomFlip, RandomRotation,
                            RandomTranslation, RandomZoom)
from convkit.ops import image as image_ops
from tests.gradcheck import directional_check
from tests.layers.keras_reference import (TOLERANCE, assert_same_config_keys,
                                          keras_function_grad, keras_module)

MAKERS = {
    "flip": lambda seed=None, **kw: RandomFlip(seed=seed, **kw),
    "rotation": lambda seed=None, **kw: RandomRotation(0.2, seed=seed, **kw),
    "zoom": lambda seed=None, **kw: RandomZoom(0.3, (-0.2, 0.4), seed=seed, **kw),
    "translation": lambda seed=None, **kw: RandomTranslation(0.2, 0.3, seed=seed, **kw),
    "contrast": lambda seed=None, **kw: RandomContrast(0.4, seed=seed, **kw),
    "crop": lambda seed=None, **kw: RandomCrop(4, 5, seed=seed, **kw),
}


def test_docstring_examples():
    for module in (ck.layers.preprocessing, ck.ops.image):
        result = doctest.testmod(module, extraglobs={"np": np})
        assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_inference_is_identity_and_training_is_reproducible(rng, name):
    x = rng.uniform(0, 255, (3, 6, 7, 2)).astype(np.float32)
    layer = MAKERS[name](seed=3)
    y = layer(x)
    if name == "crop":
        np.testing.assert_array_equal(y, x[:, 1:5, 1:6])              # the centred window
    else:
        np.testing.assert_array_equal(y, x)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy)
    assert dx.shape == x.shape and np.sum(dx) == pytest.approx(np.sum(dy), rel=1e-5)

    trained = layer(x, training=True)
    assert trained.shape == (3,) + layer.compute_output_shape((None, 6, 7, 2))[1:]
    assert trained.dtype == np.float32
    np.testing.assert_array_equal(MAKERS[name](seed=3)(x, training=True), trained)
    assert not np.array_equal(MAKERS[name](seed=4)(x, training=True), trained)
    ck.random.set_seed(5)
    first = MAKERS[name]()(x, training=True)
    ck.random.set_seed(5)
    np.testing.assert_array_equal(MAKERS[name]()(x, training=True), first)


def test_flips_are_exact_flips(rng):
    x = rng.standard_normal((64, 3, 4, 2))
    for mode in ("horizontal", "vertical", "horizontal_and_vertical"):
        layer = RandomFlip(mode, seed=0)
        y = layer(x, training=True)
        flips = layer.transformation
        for i in range(len(x)):
            expected = x[i]
            if flips["horizontal"][i]:
                expected = expected[:, ::-1]
            if flips["vertical"][i]:
                expected = expected[::-1]
            np.testing.assert_array_equal(y[i], expected)
        dy = rng.standard_normal(y.shape)
        np.testing.assert_array_equal(layer.backward(dy), RandomFlip(mode, seed=0)._apply(
            dy, flips))
        for direction in ("horizontal", "vertical"):
            drawn = flips[direction]
            assert (0.25 < drawn.mean() < 0.75) if direction in mode else not drawn.any()
    # the two directions are drawn independently: all four combinations occur
    pairs = {(h, v) for h, v in zip(flips["horizontal"], flips["vertical"])}
    assert len(pairs) == 4


def test_rotations_by_hand(rng):
    x = rng.standard_normal((2, 5, 7, 3))
    half_turn = RandomRotation((0.5, 0.5))(x, training=True)
    np.testing.assert_allclose(half_turn, x[:, ::-1, ::-1], atol=1e-12)
    quarter = RandomRotation((0.25, 0.25), interpolation="nearest")
    square = rng.standard_normal((2, 5, 5, 1))
    np.testing.assert_allclose(quarter(square, training=True), np.rot90(square, 1, (1, 2)))
    layer = RandomRotation((-0.1, 0.05), seed=1)
    layer(np.zeros((200, 3, 3, 1)), training=True)
    angles = layer.transformation["angle"]
    assert angles.min() >= -36 and angles.max() <= 18 and angles.max() - angles.min() > 40


def test_zoom_and_translation_by_hand(rng):
    x = rng.standard_normal((2, 6, 8, 1))
    np.testing.assert_allclose(RandomZoom((0.0, 0.0))(x, training=True), x, atol=1e-12)
    shifted = RandomTranslation((0.5, 0.5), (-0.25, -0.25), fill_mode="constant",
                                fill_value=7.0)(x, training=True)   # 3 down, 2 left
    expected = np.full_like(x, 7.0)
    expected[:, 3:, :6] = x[:, :3, 2:]
    np.testing.assert_allclose(shifted, expected, atol=1e-12)
    wrapped = RandomTranslation((0.5, 0.5), 0.0, fill_mode="wrap")(x, training=True)
    np.testing.assert_allclose(wrapped, np.roll(x, 3, axis=1), atol=1e-12)
    zoom = RandomZoom(0.3, seed=2)
    zoom(np.zeros((300, 4, 4, 1)), training=True)
    drawn = zoom.transformation
    np.testing.assert_array_equal(drawn["height_zoom"], drawn["width_zoom"])   # aspect kept
    assert drawn["height_zoom"].min() >= 0.7 and drawn["height_zoom"].max() <= 1.3


def test_contrast_by_hand(rng):
    x = rng.uniform(50, 200, (4, 5, 6, 3))
    layer = RandomContrast((0.2, 0.2), seed=1)
    y = layer(x, training=True)
    k = layer.transformation["contrast_factor"].reshape(4, 1, 1, 1)
    assert np.all((k >= 0.8) & (k <= 1.2))
    mean = x.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(y, np.clip((x - mean) * k + mean, 0, 255))
    clipped = RandomContrast((1.0, 1.0), value_range=(0, 1), seed=0)(
        rng.uniform(0, 1, (8, 4, 4, 1)), training=True)
    assert clipped.min() >= 0 and clipped.max() <= 1


def test_crop_by_hand(rng):
    x = rng.standard_normal((2, 6, 7, 3))
    layer = RandomCrop(4, 5, seed=0)
    seen = set()
    for _ in range(30):
        y = layer(x, training=True)
        top, left = layer.transformation["top"], layer.transformation["left"]
        np.testing.assert_array_equal(y, x[:, top:top + 4, left:left + 5])
        seen.add((top, left))
    assert seen <= {(t, l) for t in range(3) for l in range(3)} and len(seen) > 4
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    np.testing.assert_array_equal(dx[:, top:top + 4, left:left + 5], dy)
    assert np.count_nonzero(dx) == dy.size
    first = RandomCrop(2, 3, data_format="channels_first")
    np.testing.assert_array_equal(first(x.transpose(0, 3, 1, 2)),
                                  x.transpose(0, 3, 1, 2)[:, :, 2:4, 2:5])


@pytest.mark.parametrize("name, kwargs", [
    ("flip", {}), ("rotation", {}), ("rotation", {"fill_mode": "constant"}),
    ("rotation", {"interpolation": "nearest", "fill_mode": "wrap"}),
    ("zoom", {"fill_mode": "nearest"}), ("translation", {}), ("contrast", {}), ("crop", {}),
    ("rotation", {"data_format": "channels_first"})])
def test_gradients_with_the_draw_fixed(rng, name, kwargs):
    layer = MAKERS[name](dtype="float64", **kwargs)
    x = rng.uniform(20, 230, (2, 6, 7, 3))

    def f(value):
        layer.rng = np.random.default_rng(9)          # the same draw on every call
        return layer.forward(value, training=True)
    y = f(x)
    g = rng.standard_normal(y.shape)
    directional_check(f, x, layer.backward(g), g, rng)


def test_errors():
    with pytest.raises(ConvkitError, match="RandomFlip: mode must be one of"):
        RandomFlip("diagonal")
    with pytest.raises(ConvkitError, match=r"RandomRotation: factor must be a number in"):
        RandomRotation(1.5)
    with pytest.raises(ConvkitError, match="RandomZoom: height_factor must be above -1"):
        RandomZoom(-1.0)
    with pytest.raises(ConvkitError, match="RandomTranslation: fill_mode must be one of"):
        RandomTranslation(0.1, 0.1, fill_mode="mirror")
    with pytest.raises(ConvkitError, match="RandomContrast: factor must be a number in"):
        RandomContrast(-0.5)
    with pytest.raises(ShapeError, match=r"RandomCrop: the input height 3 is smaller than the "
                                         r"crop height 4"):
        RandomCrop(4, 4)(np.zeros((1, 3, 8, 1)))
    layer = RandomCrop(2, 2)
    layer(np.zeros((1, 4, 4, 1)))
    with pytest.raises(ShapeError, match="RandomCrop: the input width 1"):
        layer(np.zeros((1, 4, 1, 1)), training=True)
    with pytest.raises(ShapeError, match=r"RandomFlip: expected a 4-D .* got shape \(2, 3, 3\)"):
        RandomFlip()(np.zeros((2, 3, 3)))


def test_in_a_model_they_augment_only_in_fit(rng):
    model = ck.Sequential([ck.layers.Input((8, 8, 1)), RandomFlip(seed=0),
                           RandomRotation(0.1, seed=0), RandomZoom(0.1, seed=0),
                           RandomTranslation(0.1, 0.1, seed=0), RandomContrast(0.1, seed=0),
                           RandomCrop(6, 6, seed=0), ck.layers.Flatten(),
                           ck.layers.Dense(2, activation="softmax")])
    assert model.layers[-1].input_shape == (None, 36)
    x = rng.uniform(0, 255, (16, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 2, 16)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    np.testing.assert_array_equal(model.predict(x, verbose=0), model.predict(x, verbose=0))


# ----------------------------------------------------------------------------- Keras
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("fill_mode", ["reflect", "wrap", "constant", "nearest"])
def test_resampling_op_matches_keras(rng, interpolation, fill_mode):
    keras = keras_module()
    x = rng.standard_normal((3, 7, 9, 2)).astype(np.float32)
    transforms = image_ops.rotation_transforms(rng.uniform(-60, 60, 3), 7, 9)
    transforms[:, [0, 1, 3, 4]] *= rng.uniform(0.7, 1.4, (3, 4))
    transforms[:, [2, 5]] += rng.uniform(-3, 3, (3, 2))
    transforms = transforms.astype(np.float32)
    expected = keras.ops.image.affine_transform(x, transforms, interpolation=interpolation,
                                                fill_mode=fill_mode, fill_value=0.5)
    got = image_ops.affine_transform(x.astype(np.float64), transforms, interpolation,
                                     fill_mode, fill_value=0.5)
    np.testing.assert_allclose(got, np.asarray(expected), **TOLERANCE)


def _keras_transformation(name, layer, x, keras_layer):
    """Keras's own transformation record built from convkit's draw."""
    import jax.numpy as jnp
    drawn = layer.transformation
    batch, height, width = x.shape[0], x.shape[1], x.shape[2]
    if name == "flip":
        key = layer.mode
        return {"flips": drawn[key].reshape(batch, 1, 1, 1), "input_shape": x.shape}
    if name == "rotation":
        zeros, ones = jnp.zeros(batch), jnp.ones(batch)
        matrix = keras_layer._compute_affine_matrix(
            center_x=0.5, center_y=0.5, angle=jnp.asarray(drawn["angle"], jnp.float32),
            translate_x=zeros, translate_y=zeros, scale=ones, shear_x=zeros, shear_y=zeros,
            height=height, width=width)
        return {"rotation_matrix": matrix}
    if name == "zoom":
        return {"height_zoom": drawn["height_zoom"][:, None].astype(np.float32),
                "width_zoom": drawn["width_zoom"][:, None].astype(np.float32),
                "input_shape": x.shape}
    if name == "translation":
        return {"translations": np.stack([drawn["dx"], drawn["dy"]], 1).astype(np.float32),
                "input_shape": x.shape}
    if name == "contrast":
        return {"contrast_factor": drawn["contrast_factor"].reshape(batch, 1, 1, 1).astype(
            np.float32)}
    return drawn["top"], drawn["left"]


@pytest.mark.parametrize("name, make, keras_make", [
    ("flip", lambda: RandomFlip("horizontal", seed=1),
     lambda k: k.layers.RandomFlip("horizontal")),
    ("flip", lambda: RandomFlip("vertical", seed=1), lambda k: k.layers.RandomFlip("vertical")),
    ("rotation", lambda: RandomRotation(0.3, seed=1), lambda k: k.layers.RandomRotation(0.3)),
    ("rotation", lambda: RandomRotation((-0.2, 0.1), fill_mode="constant", fill_value=3.0,
                                        interpolation="nearest", seed=2),
     lambda k: k.layers.RandomRotation((-0.2, 0.1), fill_mode="constant", fill_value=3.0,
                                       interpolation="nearest")),
    ("zoom", lambda: RandomZoom(0.3, (-0.4, 0.2), seed=1),
     lambda k: k.layers.RandomZoom(0.3, (-0.4, 0.2))),
    ("zoom", lambda: RandomZoom((-0.5, 0.5), fill_mode="wrap", seed=3),
     lambda k: k.layers.RandomZoom((-0.5, 0.5), fill_mode="wrap")),
    ("translation", lambda: RandomTranslation(0.3, 0.2, seed=1),
     lambda k: k.layers.RandomTranslation(0.3, 0.2)),
    ("translation", lambda: RandomTranslation((-0.2, 0.4), 0.3, fill_mode="nearest", seed=4),
     lambda k: k.layers.RandomTranslation((-0.2, 0.4), 0.3, fill_mode="nearest")),
    ("contrast", lambda: RandomContrast((0.3, 0.5), seed=1),
     lambda k: k.layers.RandomContrast((0.3, 0.5))),
    ("crop", lambda: RandomCrop(5, 4, seed=1), lambda k: k.layers.RandomCrop(5, 4)),
])
def test_matches_keras_given_the_same_draw(rng, name, make, keras_make):
    keras = keras_module()
    layer, keras_layer = make(), keras_make(keras)
    x = rng.uniform(0, 255, (4, 8, 9, 3)).astype(np.float32).astype(np.float64)
    y = layer(x, training=True)
    g = rng.standard_normal(y.shape)
    dx = layer.backward(g)
    transformation = _keras_transformation(name, layer, x, keras_layer)
    y_k, dx_k = keras_function_grad(
        lambda t: keras_layer.transform_images(t, transformation, training=True), x, g,
        jit=False)
    scale = 255.0 if name == "contrast" else 1.0
    np.testing.assert_allclose(y, y_k, rtol=TOLERANCE["rtol"], atol=TOLERANCE["atol"] * 255)
    np.testing.assert_allclose(dx, dx_k, rtol=TOLERANCE["rtol"], atol=TOLERANCE["atol"] * scale)
    assert_same_config_keys(layer, keras_layer)
    clone = ck.layers.deserialize(ck.layers.serialize(layer))
    assert clone.get_config() == layer.get_config()
