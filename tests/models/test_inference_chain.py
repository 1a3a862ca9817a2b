"""``predict`` through a Sequential model's prepared chain (``convkit.fast.chain``): every
layer's set-up done once per input shape, a convolution and the 2x2 max pool after it run
together on a few images at a time, the convolution's unread last row and column skipped.

The chain's convolutions and pools must equal the layers' own (``model._forward``) exactly:
the same kernels on the same numbers, pooled before or after the ReLU (both monotonic). A
``Dense`` layer on a few rows runs as one compiled call whose sums run in another order, so
whole-model outputs are compared to float32 rounding (1e-6)."""
import threading

import numpy as np
import pytest

import convkit as ck
from convkit.fast import chain, dispatch
from convkit.fast.runtime import backend

L = ck.layers


@pytest.fixture
def need_accel():
    if not dispatch.allowed():
        pytest.skip("requires numba (the compiled kernels)")


def _layers_path(model, x):
    """The outputs layer by layer (what ``predict`` computed before the chain)."""
    return model._forward([x], training=False)[0]


def _mnist(seed=0, size=28, pool_padding="valid", conv_activation="relu"):
    ck.set_seed(seed)
    return ck.Sequential([L.Input((size, size, 1)),
                          L.Conv2D(32, 3, activation=conv_activation), L.MaxPooling2D(2),
                          L.Conv2D(64, 3, activation="relu"),
                          L.MaxPooling2D(2, padding=pool_padding),
                          L.Flatten(), L.Dropout(0.5), L.Dense(10, activation="softmax")])


def _same(out, expected):
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)


def _images(batch, size=28, channels=1, seed=0):
    return np.random.default_rng(seed).random((batch, size, size, channels), dtype=np.float32)


@pytest.mark.parametrize("batch", [1, 2, 7, 33])
@pytest.mark.parametrize("size", [28, 29])
def test_chain_equals_the_layers_exactly(need_accel, batch, size):
    model = _mnist(size=size)
    x = _images(batch, size)
    out = model.predict(x, batch_size=64, verbose=0)
    assert model._chains.runs[(x.shape, x.dtype)]          # the chain was prepared and used
    _same(out, _layers_path(model, x))
    assert out.shape == (batch, 10) and out.dtype == np.float32


@pytest.mark.parametrize("kwargs", [dict(pool_padding="same"), dict(conv_activation=None)])
def test_unfused_steps_and_linear_convolutions(need_accel, kwargs):
    """A 'same' pool is not fused (the conv runs alone, then the pool); a linear conv is."""
    model = _mnist(**kwargs)
    x = _images(5)
    _same(model.predict(x, verbose=0), _layers_path(model, x))


def test_one_large_image_splits_its_rows_over_the_threads(need_accel, monkeypatch):
    """Batch 1 with enough work: the fused stage hands pooled rows to the threads."""
    monkeypatch.setattr(backend, "SMALL_WORK_BYTES", 0)
    ck.set_seed(1)
    model = ck.Sequential([L.Input((40, 40, 16)), L.Conv2D(32, 3, activation="relu"),
                           L.MaxPooling2D(2), L.Flatten(), L.Dense(4)])
    x = _images(1, 40, 16)
    np.testing.assert_allclose(model.predict(x, verbose=0), _layers_path(model, x),
                               rtol=1e-5, atol=1e-6)         # logits: sums of 11,552 terms


@pytest.mark.parametrize("batch", [1, 5])
def test_fused_convolution_and_pool_equal_the_layers_exactly(need_accel, batch,
                                                             monkeypatch):
    """The direct fused kernel (one image, or Winograd switched off): exactly the layers'."""
    monkeypatch.setattr(chain, "WINOGRAD_MIN_IMAGES", 10 ** 9)
    ck.set_seed(5)
    conv, pool = L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2)
    x = _images(batch, 15, 16)
    expected = pool(conv(x))
    run = chain.prepare_chain(x.shape, np.float32, (conv._inference_step(),
                                                    pool._inference_step()))
    np.testing.assert_array_equal(run(x, [conv._step_weights(), None]), expected)


@pytest.mark.parametrize("shape,filters,relu", [((5, 15, 15, 16), 32, True),
                                                ((3, 13, 13, 32), 64, True),
                                                ((4, 12, 17, 8), 16, False),
                                                ((2, 9, 9, 24), 48, True)])
def test_winograd_fused_stage_equals_the_layers_to_float32_rounding(need_accel, shape,
                                                                    filters, relu):
    """Several images of a 3x3 convolution and its 2x2 max pool by Winograd F(2x2, 3x3):
    each 2x2 output tile is one pool window. Odd sizes leave the last row or column
    unread; equal to the layers' numbers to float32 rounding of the largest output."""
    ck.set_seed(6)
    conv = L.Conv2D(filters, 3, activation="relu" if relu else None)
    pool = L.MaxPooling2D(2)
    x = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    expected = pool(conv(x))
    steps = (conv._inference_step(), pool._inference_step())
    run = chain.prepare_chain(x.shape, np.float32, steps)
    assert chain._plan(x.shape, steps)[0][1]             # fused
    got = run(x, [conv._step_weights(), None])
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6 * scale)
    assert not np.array_equal(got, expected)             # (the direct kernel's would be)


def test_winograd_stage_remakes_its_kernel_transform_only_when_the_kernel_changed(
        need_accel):
    """The transform of the kernel is kept between calls and made again when the kernel's
    values change in place (as an optimizer's step changes them): each prediction equals
    the layers' with the weights of that moment."""
    model = _mnist()
    x = _images(6)
    conv = model.layers[2]
    before = model.predict(x, verbose=0)
    _same(before, _layers_path(model, x))
    kernel = conv._weight("kernel")
    kernel[0, 0, 0, 0] += 1.0                       # in place: the same array
    after = model.predict(x, verbose=0)
    _same(after, _layers_path(model, x))
    assert not np.allclose(after, before, rtol=1e-6, atol=1e-7)
    kernel[...] = -kernel                           # every value, in place
    _same(model.predict(x, verbose=0), _layers_path(model, x))


@pytest.mark.parametrize("batch", [1, 3])
def test_chain_reads_weights_changed_in_place_or_replaced(need_accel, batch):
    """The chain keeps the list of arrays its steps read while no weight is given another
    array; a weight changed in place (as optimizers and ``set_weights`` change them) and a
    weight given a new array are both seen by the next prediction."""
    model = _mnist(seed=3)
    x = _images(batch, seed=4)
    first = model.predict(x, verbose=0)
    state = model._chains
    assert state.weights() is state.weights()             # kept: nothing was replaced
    dense = model.layers[-1]
    weight = dense.weights[0]
    weight.value[...] = 2 * weight.value                  # in place
    in_place = model.predict(x, verbose=0)
    _same(in_place, _layers_path(model, x))
    assert not np.allclose(in_place, first, rtol=1e-6, atol=1e-7)
    kept = state.weights()
    weight.value = -weight.value                          # another array
    assert state.weights() is not kept
    replaced = model.predict(x, verbose=0)
    _same(replaced, _layers_path(model, x))
    assert not np.allclose(replaced, in_place, rtol=1e-6, atol=1e-7)
    model.set_weights([w * 0.5 for w in model.get_weights()])
    _same(model.predict(x, verbose=0), _layers_path(model, x))


def test_winograd_kernel_refresh_compares_bits(need_accel):
    """The compiled refresh: transforms when fresh or when any bit of the kernel differs
    from the copy it made the last transform from (a NaN, -0.0 against 0.0 included), and
    leaves the transform as it is otherwise."""
    from convkit.fast.kernels import fused
    from convkit.ops.winograd import kernel_transform
    refresh, _ = fused.wino_kernels()
    rng = np.random.default_rng(3)
    kernel = rng.standard_normal((3, 3, 4, 16)).astype(np.float32)
    seen = np.empty(kernel.size, np.float32)
    u2 = np.zeros((16 * 4, 16), np.float32)
    gg = np.empty(12 * 4 * 16, np.float32)

    def transform(k):                               # the NumPy path's, (16 * C, F)
        return kernel_transform(k.astype(np.float64)).reshape(16 * 4, 16)

    assert refresh(kernel, seen, True, u2, gg)
    np.testing.assert_allclose(u2, transform(kernel), rtol=1e-6, atol=1e-6)
    assert not refresh(kernel, seen, False, u2, gg)
    marked = u2.copy()
    u2[0, 0] = 123.0                                # kept as it is while the kernel is
    assert not refresh(kernel, seen, False, u2, gg) and u2[0, 0] == 123.0
    for change in (np.nan, 0.0, 7.5):
        kernel[2, 1, 3, 5] = change
        assert refresh(kernel, seen, False, u2, gg)
        assert not refresh(kernel, seen, False, u2, gg)
    kernel[2, 1, 3, 5] = 0.0
    assert refresh(kernel, seen, False, u2, gg)
    kernel[2, 1, 3, 5] = -0.0                       # equal values, other bits
    assert refresh(kernel, seen, False, u2, gg)
    np.testing.assert_allclose(u2, transform(kernel), rtol=1e-6, atol=1e-6)
    assert not np.array_equal(u2, marked)


def test_dense_rows_kernel_matches_the_layer(need_accel):
    """The compiled dense step of a few rows: linear, ReLU and softmax, with and without a
    bias, equal to the layer's NumPy arithmetic to float32 rounding."""
    rng = np.random.default_rng(6)
    for activation in ("linear", "relu", "softmax"):
        for use_bias in (True, False):
            ck.set_seed(1)
            dense = L.Dense(7, activation=activation, use_bias=use_bias)
            x = rng.standard_normal((3, 40)).astype(np.float32)
            expected = dense(x)
            if use_bias:
                dense.set_weights([dense.get_weights()[0], rng.standard_normal(7)])
                expected = dense(x)
            run = chain.prepare_chain(x.shape, np.float32, (dense._inference_step(),))
            np.testing.assert_allclose(run(x, [dense._step_weights()]), expected,
                                       rtol=1e-5, atol=1e-6)


def test_fused_stage_skips_only_the_unread_row_and_column(need_accel):
    """floor(11 / 2) = 5 pooled rows read conv rows 0-9 of 11; the result is the pool of the
    whole convolution all the same (checked against the public ops)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 13, 13, 32)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 32, 64)).astype(np.float32)
    bias = rng.standard_normal(64).astype(np.float32)
    steps = (("conv2d", kernel.shape, (1, 1), "valid", (1, 1), 1, True),
             ("max_pool2d", (2, 2), (2, 2), "valid", (1, 1), False))
    run = chain.prepare_chain(x.shape, np.float32, steps)
    y = run(x, [(kernel, bias), None])
    expected = ck.ops.max_pool2d(np.maximum(ck.ops.conv2d(x, kernel, bias), 0), 2)
    assert y.shape == (3, 5, 5, 64)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_chain_sees_new_weights(need_accel):
    model = _mnist()
    x = _images(3)
    before = model.predict(x, verbose=0)
    conv = model.layers[2]
    kernel, bias = conv.get_weights()
    conv.set_weights([kernel * 0.5, bias + 0.1])
    dense = model.layers[-1]
    dense.set_weights([w * 2 for w in dense.get_weights()])
    after = model.predict(x, verbose=0)
    assert not np.allclose(before, after)
    _same(after, _layers_path(model, x))


@pytest.mark.parametrize("batch", [1, 3])
def test_chain_sees_weights_changed_in_place(need_accel, batch):
    """An optimizer updates the weight arrays in place (``w -= lr * g``): the chain's stages
    keep views of the kernels, never copies, so the next predict sees the new values."""
    model = _mnist()
    x = _images(batch)
    before = model.predict(x, verbose=0)
    for layer in (model.layers[0], model.layers[2], model.layers[-1]):
        layer._weights[0].value *= 0.5                  # the same arrays, new values
    after = model.predict(x, verbose=0)
    assert not np.allclose(before, after)
    _same(after, _layers_path(model, x))


def _functional_mnist(seed=0):
    """The layers of :func:`_mnist`, written in the functional style of a Keras script."""
    ck.set_seed(seed)
    inputs = L.Input((28, 28, 1))
    x = L.Conv2D(32, 3, activation="relu")(inputs)
    x = L.MaxPooling2D(2)(x)
    x = L.Conv2D(64, 3, activation="relu")(x)
    x = L.MaxPooling2D(2)(x)
    x = L.Dropout(0.5)(L.Flatten()(x))
    return ck.Model(inputs, L.Dense(10, activation="softmax")(x))


@pytest.mark.parametrize("batch", [1, 5])
def test_a_straight_functional_model_predicts_through_the_chain(need_accel, batch):
    model = _functional_mnist()
    x = _images(batch)
    out = model.predict(x, verbose=0)
    assert model._chain_layers() == tuple(model.layers[1:])   # the InputLayer is not run
    assert (x.shape, x.dtype) in model._chains.runs
    _same(out, _layers_path(model, x))
    _same(model(x), out)
    # the same weights in a Sequential model give the same numbers
    seq = _mnist()
    seq.set_weights(model.get_weights())
    _same(seq.predict(x, verbose=0), out)


def test_a_functional_model_that_branches_has_no_chain(need_accel):
    ck.set_seed(1)
    inputs = L.Input((12, 12, 3))
    x = L.Conv2D(16, 3, activation="relu")(inputs)
    wide = L.Flatten()(L.MaxPooling2D(2)(x))
    branched = ck.Model(inputs, L.Dense(4)(L.Concatenate()([wide, wide])))
    shared = L.Conv2D(3, 3, padding="same")
    twice = ck.Model(inputs, L.Flatten()(shared(shared(inputs))))
    two_outputs = ck.Model(inputs, [L.Flatten()(x), L.Flatten()(L.MaxPooling2D(2)(x))])
    images = _images(2, 12, 3)
    for model in (branched, twice, two_outputs):
        assert model._chain_layers() is None
        out = model.predict(images, verbose=0)
        assert model.__dict__.get("_chains") is None
        expected = model._forward([images], training=False)
        for got, want in zip(out if isinstance(out, list) else [out], expected):
            np.testing.assert_array_equal(got, want)


def test_other_layers_run_as_themselves_inside_the_chain(need_accel):
    """Layers without a prepared step (batch norm, rescaling, an Activation layer, average
    pooling) are called inside the chain as the model calls them; the pairs around them
    still fuse, and the numbers equal the layer-by-layer path's."""
    ck.set_seed(2)
    model = ck.Sequential([L.Input((28, 28, 1)), L.Rescaling(1 / 255),
                           L.Conv2D(16, 3, activation="relu"), L.MaxPooling2D(2),
                           L.BatchNormalization(), L.Conv2D(32, 3), L.Activation("relu"),
                           L.AveragePooling2D(2), L.Flatten(), L.Dense(3)])
    model.layers[3].set_weights([w + np.linspace(0.1, 0.9, w.size).astype(np.float32)
                                 for w in model.layers[3].get_weights()])
    for batch in (1, 3):
        x = _images(batch) * 255
        out = model.predict(x, verbose=0)
        assert (x.shape, x.dtype) in model._chains.runs
        _same(out, _layers_path(model, x))
    kinds = [step[0] for step in model._chains.steps]
    assert kinds == ["layer", "conv2d", "max_pool2d", "layer", "conv2d", "layer", "layer",
                     "flatten", "dense"]
    assert model._chain_unwritten() == (model.layers[1],)    # conv + pool still fused


def test_the_chain_gives_up_when_a_layer_returns_another_dtype(need_accel):
    """A layer of its own returning float64: the chain stops and the model runs its layers
    (whose numbers then follow NumPy's promotion, as before)."""
    class Widened(L.Layer):
        def forward(self, x, training=False):
            return x.astype(np.float64)
    ck.set_seed(3)
    model = ck.Sequential([L.Input((12, 12, 3)), L.Conv2D(16, 3, activation="relu"),
                           L.MaxPooling2D(2), Widened(), L.Flatten(), L.Dense(3)])
    x = _images(2, 12, 3)
    calls = []
    model.layers[2].forward = lambda x, training=False: calls.append(1) or x.astype(np.float64)
    out = model.predict(x, verbose=0)
    np.testing.assert_array_equal(out, _layers_path(model, x))
    assert model._chains.runs[(x.shape, x.dtype)] is False     # not tried again
    calls.clear()
    np.testing.assert_array_equal(model.predict(x, verbose=0), out)
    assert len(calls) == 1                                      # the layers' path only


def test_no_chain_without_the_fast_paths():
    convnet = _mnist()
    with backend.use_backend("numpy"):
        numpy_out = convnet.predict(_images(2), verbose=0)
    assert "_chains" not in convnet.__dict__
    np.testing.assert_allclose(numpy_out, _layers_path(convnet, _images(2)), rtol=1e-5,
                               atol=1e-6)


def test_a_patched_or_overridden_forward_is_honoured(need_accel, monkeypatch):
    model = _mnist()
    seen = []
    pool = model.layers[1]
    original = pool.forward
    monkeypatch.setattr(pool, "forward", lambda x, training=False: seen.append(x.shape)
                        or original(x, training=training))
    model.predict(_images(2), verbose=0)
    assert seen == [(2, 26, 26, 32)]

    class Doubled(L.Dense):
        def forward(self, x, training=False):
            return 2 * super().forward(x, training)
    ck.set_seed(0)
    doubled = ck.Sequential([L.Input((6,)), Doubled(3)])
    x = np.ones((2, 6), np.float32)
    np.testing.assert_allclose(doubled.predict(x, verbose=0), 2 * (x @ doubled.get_weights()[0]),
                               rtol=1e-6)


def test_layers_added_after_a_predict_are_seen(need_accel):
    model = _mnist()
    x = _images(2)
    model.predict(x, verbose=0)
    model.add(L.Dense(4, activation="relu"))
    out = model.predict(x, verbose=0)
    assert out.shape == (2, 4)
    _same(out, _layers_path(model, x))


def test_two_threads_predicting_at_once_get_their_own_results(need_accel):
    """The chain's scratch buffers serve one call at a time: a second thread arriving
    meanwhile takes the layers one by one, and both results are right."""
    model = _mnist()
    inputs = [_images(4, seed=s) for s in range(2)]
    expected = [_layers_path(model, x) for x in inputs]
    results, errors = {}, []

    def work(k):
        try:
            for _ in range(20):
                results.setdefault(k, []).append(model.predict(inputs[k], verbose=0))
        except Exception as exc:            # pragma: no cover - reported below
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for k in range(2):
        for out in results[k]:
            _same(out, expected[k])


def test_builtin_activation():
    from convkit.ops import activations
    assert activations.is_builtin(activations.get("softmax"))
    assert activations.is_builtin(activations.get("leaky_relu"))
    assert not activations.is_builtin(activations.get("leaky_relu", negative_slope=0.1))
    assert not activations.is_builtin(activations.get(lambda x: x))


def test_model_call_takes_the_chain_and_backward_still_works(need_accel, monkeypatch):
    """``model(x)`` at inference goes through the chain too; a ``backward`` after it runs
    the layers on the same input first, so its gradients are those of the usual path."""
    model = _mnist()
    x = _images(3)
    dy = np.random.default_rng(7).standard_normal((3, 10)).astype(np.float32)
    out = model(x)
    assert model.__dict__.get("_pending_forward") is not None
    _same(out, _layers_path(model, x))
    dx = model.backward(dy)
    grads = [g.copy() for layer in model.layers for g in (layer.grads or [])]
    with monkeypatch.context() as patch:
        patch.setattr(dispatch, "prepare", lambda *a, **k: None)
        fresh = _mnist()
        usual_out = fresh(x)
        usual_dx = fresh.backward(dy)
        usual_grads = [g for layer in fresh.layers for g in (layer.grads or [])]
    assert "_pending_forward" not in fresh.__dict__
    _same(out, usual_out)
    np.testing.assert_allclose(dx, usual_dx, rtol=1e-5, atol=1e-6)
    assert len(grads) == len(usual_grads) == 6
    for g, u in zip(grads, usual_grads):
        np.testing.assert_allclose(g, u, rtol=1e-4, atol=1e-5)
    model(x, training=True)                      # a training forward caches as before
    assert "_pending_forward" not in model.__dict__


def test_predict_of_one_sample_takes_the_lane_and_leaves_it_when_things_change(
        need_accel, monkeypatch):
    """After one checked, chained predict of a single sample, the next of the same shape
    and dtype goes straight to the chain; a changed model, the fast paths switched off, a
    non-contiguous or differently typed input, or bad input take the full path."""
    model = _mnist()
    x = _images(1)
    first = model.predict(x, verbose=0)
    assert model._lane[:2] == (x.shape, x.dtype)
    full_path = []
    original = type(model)._predict_one_batch

    def counted(self, *args):
        full_path.append(1)
        return original(self, *args)
    monkeypatch.setattr(type(model), "_predict_one_batch", counted)
    np.testing.assert_array_equal(model.predict(x, verbose=0), first)
    np.testing.assert_array_equal(model.predict(x, batch_size=1, verbose=0), first)
    assert not full_path                                   # the lane
    with pytest.raises(ck.errors.ConvkitError, match="batch_size"):
        model.predict(x, batch_size=0, verbose=0)          # still checked
    flipped = _images(1, seed=5)[:, ::-1]                  # same shape, not C-contiguous
    _same(model.predict(flipped, verbose=0), _layers_path(model, np.ascontiguousarray(flipped)))
    _same(model.predict(x.astype(np.float64), verbose=0), first)
    assert len(full_path) == 2
    monkeypatch.setenv("CONVKIT_ACCEL", "0")               # switched off at run time
    _same(model.predict(x, verbose=0), first)
    assert len(full_path) == 3
    monkeypatch.delenv("CONVKIT_ACCEL")
    model.add(L.Dense(2))                                  # a changed model
    out = model.predict(x, verbose=0)
    assert out.shape == (1, 2)
    _same(out, _layers_path(model, x))
    with pytest.raises(ck.errors.ShapeError, match="expected x"):
        model.predict(_images(1, size=27), verbose=0)


def test_model_call_of_one_sample_takes_the_lane_and_backward_still_works(need_accel):
    model = _mnist()
    x = _images(1)
    first = model(x)
    assert model._lane[:2] == (x.shape, x.dtype)
    again = model(x)                                       # through the lane
    np.testing.assert_array_equal(again, first)
    dx = model.backward(np.ones_like(again))              # the layers run first
    model._forward([x], training=False)
    expected = model.backward(np.ones_like(again))
    np.testing.assert_allclose(dx, expected, rtol=1e-6, atol=1e-7)
