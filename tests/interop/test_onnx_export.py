"""ONNX export: every model is exported, checked with onnx.checker, run in onnxruntime and
compared with convkit's own predict (relative tolerance 1e-5)."""
import numpy as np
import pytest

import convkit as ck
from convkit.errors import ConvkitError, ShapeError
from convkit.io.onnx_export import export_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
L = ck.layers


def _session(proto):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def _assert_close(got, want):
    scale = max(1.0, float(np.max(np.abs(want))))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale)


def _roundtrip(model, x, tmp_path, **kwargs):
    """Export to a file, reload it, check it, run it; return (onnx outputs, proto)."""
    path = tmp_path / "model.onnx"
    export_onnx(model, path, **kwargs)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    name = proto.graph.input[0].name
    outputs = _session(proto).run(None, {name: x})
    return outputs, proto


def _check(model, x, tmp_path, **kwargs):
    outputs, proto = _roundtrip(model, x, tmp_path, **kwargs)
    _assert_close(outputs[0], model.predict(x))
    for node in proto.graph.node:
        assert all(a.name != "auto_pad" for a in node.attribute), node.op_type
    return proto


def _randomise_bn(layer, rng):
    channels = layer.channels
    layer.set_weights([rng.uniform(0.5, 1.5, channels), rng.normal(0, 0.5, channels),
                       rng.normal(0, 0.5, channels), rng.uniform(0.2, 2.0, channels)])


def _ops(proto):
    return [node.op_type for node in proto.graph.node]


def _attr(proto, op_type, name):
    node = next(n for n in proto.graph.node if n.op_type == op_type)
    return next(onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name)


def test_keras_mnist_convnet(tmp_path, rng):
    ck.random.set_seed(0)
    model = ck.Sequential([L.Input((28, 28, 1)), L.Conv2D(32, 3, activation="relu"),
                           L.MaxPooling2D(2), L.Conv2D(64, 3, activation="relu"),
                           L.MaxPooling2D(2), L.Flatten(), L.Dropout(0.5),
                           L.Dense(10, activation="softmax")])
    x = rng.random((4, 28, 28, 1), dtype=np.float32)
    proto = _check(model, x, tmp_path)
    ops = _ops(proto)
    # one Transpose into NCHW at the start, one back before Flatten; no Dropout
    assert ops.count("Transpose") == 2 and ops[0] == "Transpose"
    assert ops.index("Flatten") == ops.index("Transpose", 1) + 1
    assert "Dropout" not in ops and "Gemm" in ops
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [28, 28, 1]


def test_same_padding_stride_two_has_asymmetric_pads(tmp_path, rng):
    ck.random.set_seed(1)
    model = ck.Sequential([L.Input((10, 9, 3)),
                           L.Conv2D(4, 4, strides=2, padding="same", activation="tanh"),
                           L.Conv2D(6, 3, strides=(2, 1), dilation_rate=2, padding="same",
                                    groups=2, activation="elu"),
                           L.Conv2D(2, (2, 3), padding=((1, 0), (2, 1)))])
    x = rng.standard_normal((3, 10, 9, 3), dtype=np.float32)
    proto = _check(model, x, tmp_path)
    # 10 rows, k=4, s=2 -> total 2 (1, 1); 9 columns -> total 3 -> (1, 2): extra right
    assert _attr(proto, "Conv", "pads") == [1, 1, 1, 2]
    groups = [onnx.helper.get_attribute_value(a) for n in proto.graph.node if n.op_type == "Conv"
              for a in n.attribute if a.name == "group"]
    assert groups == [1, 2, 1]


def test_depthwise_and_batch_norm(tmp_path, rng):
    ck.random.set_seed(2)
    model = ck.Sequential([L.Input((12, 12, 3)),
                           L.DepthwiseConv2D(3, depth_multiplier=2, padding="same",
                                             activation="relu6"),
                           L.BatchNormalization(),
                           L.Conv2D(5, 1, activation="swish"),
                           L.BatchNormalization(epsilon=1e-5, center=False),
                           L.GlobalAveragePooling2D(),
                           L.BatchNormalization(scale=False),
                           L.Dense(3, activation="gelu")])
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            weights = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape) if i == len(weights) - 1
                               else rng.normal(0, 0.5, w.shape)
                               for i, w in enumerate(weights)])
    x = rng.standard_normal((2, 12, 12, 3), dtype=np.float32)
    proto = _check(model, x, tmp_path)
    assert _ops(proto).count("BatchNormalization") == 3
    assert _attr(proto, "Conv", "group") == 3
    assert "Erf" in _ops(proto)


@pytest.mark.parametrize("pool", [
    lambda: L.AveragePooling2D(3, strides=2, padding="same"),
    lambda: L.AveragePooling2D(2, padding="same"),
    lambda: L.AveragePooling2D(3, strides=2, padding=1, count_include_pad=True),
    lambda: L.AveragePooling2D(3, strides=2, padding=1, count_include_pad=False),
    lambda: L.AveragePooling2D(3, strides=2, padding=1, ceil_mode=True,
                               count_include_pad=True),
    lambda: L.AveragePooling2D(3, strides=2, ceil_mode=True),
    lambda: L.MaxPooling2D(3, strides=2, padding="same"),
    lambda: L.MaxPooling2D(2, strides=2, padding=1, ceil_mode=True),
    lambda: L.MaxPooling2D(3, strides=2, dilation_rate=2, padding=1),
    lambda: L.GlobalMaxPooling2D(keepdims=True),
], ids=["avg-same-s2", "avg-same", "avg-pad-include", "avg-pad-exclude",
        "avg-ceil-include", "avg-ceil", "max-same", "max-ceil", "max-dilated", "gmax-keep"])
def test_pooling(pool, tmp_path, rng):
    layer = pool()
    model = ck.Sequential([L.Input((7, 6, 2)), layer])
    x = rng.standard_normal((2, 7, 6, 2), dtype=np.float32)
    proto = _check(model, x, tmp_path)
    out_dims = [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim[1:]]
    assert out_dims == list(model.output_shape[1:])
    # ceil_mode is written as uncounted extra padding, so ONNX shape inference agrees too
    inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    pooled = [v for v in inferred.graph.value_info
              if v.name.endswith(("max_pool", "avg_pool", "GlobalMaxPool"))]
    assert [d.dim_value for d in pooled[0].type.tensor_type.shape.dim[2:]] == \
        [model.output_shape[1], model.output_shape[2]]
    if getattr(layer, "ceil_mode", False) and getattr(layer, "count_include_pad", False):
        assert "Pad" in _ops(proto)                # counted zeros, uncounted ceil extra


def test_average_pool_same_does_not_count_padding(tmp_path):
    model = ck.Sequential([L.Input((3, 3, 1)), L.AveragePooling2D(2, padding="same")])
    proto = _check(model, np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1), tmp_path)
    assert _attr(proto, "AveragePool", "count_include_pad") == 0
    assert _attr(proto, "AveragePool", "pads") == [0, 0, 1, 1]


def test_residual_functional_graph(tmp_path, rng):
    ck.random.set_seed(3)
    inputs = L.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    y = L.Conv2D(8, 3, padding="same")(x)
    y = L.BatchNormalization()(y)
    x = L.ReLU()(L.Add()([x, y]))
    z = L.Conv2D(4, 1, activation="sigmoid")(x)
    w = L.Conv2D(4, 1)(x)
    x = L.Concatenate()([L.Multiply()([z, w]), x])
    x = L.MaxPooling2D(2)(x)
    x = L.GlobalAveragePooling2D()(x)
    outputs = L.Dense(5, activation="softmax")(x)
    model = ck.Model(inputs, outputs)
    _randomise_bn(next(layer for layer in model.layers
                       if isinstance(layer, L.BatchNormalization)), rng)
    data = rng.standard_normal((3, 8, 8, 3), dtype=np.float32)
    proto = _check(model, data, tmp_path)
    ops = _ops(proto)
    assert ops.count("Transpose") == 1          # NCHW all the way to the global pool
    assert _attr(proto, "Concat", "axis") == 1  # channels_last axis -1 -> NCHW axis 1


def test_functional_with_two_inputs_and_outputs(tmp_path, rng):
    ck.random.set_seed(4)
    a, b = L.Input((6, 6, 2)), L.Input((6, 6, 2))
    joined = L.Concatenate(axis=2)([a, L.Conv2D(2, 3, padding="same")(b)])
    flat = L.Dense(3)(L.Flatten()(joined))
    model = ck.Model([a, b], [flat, L.GlobalMaxPooling2D()(joined)])
    xa = rng.standard_normal((2, 6, 6, 2), dtype=np.float32)
    xb = rng.standard_normal((2, 6, 6, 2), dtype=np.float32)
    proto = export_onnx(model, tmp_path / "two.onnx", input_name=["left", "right"])
    got = _session(proto).run(None, {"left": xa, "right": xb})
    want = model.predict([xa, xb])
    assert [o.name for o in proto.graph.output] == ["output_0", "output_1"]
    for g, w in zip(got, want):
        _assert_close(g, w)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("opset", [17, 19])
def test_padding_modes(mode, opset, tmp_path, rng):
    ck.random.set_seed(5)
    model = ck.Sequential([L.Input((7, 8, 2)),
                           L.Conv2D(3, 3, strides=2, padding="same", padding_mode=mode),
                           L.ZeroPadding2D(((1, 0), (2, 1))),
                           L.Conv2D(2, 3, padding=1, padding_mode=mode)])
    x = rng.standard_normal((2, 7, 8, 2), dtype=np.float32)
    proto = _check(model, x, tmp_path, opset=opset)
    ops = _ops(proto)
    if mode == "circular" and opset < 19:
        assert "Slice" in ops and ops.count("Pad") == 1          # only ZeroPadding2D
    else:
        assert ops.count("Pad") == 3
    assert all(p == 0 for n in proto.graph.node if n.op_type == "Conv"
               for a in n.attribute if a.name == "pads" for p in a.ints)


@pytest.mark.parametrize("activation", [
    "linear", "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "gelu_tanh", "sigmoid",
    "hard_sigmoid", "swish", "tanh", "softplus", "softsign", "exponential", "softmax",
    "log_softmax"])
def test_activations_on_images(activation, tmp_path, rng):
    ck.random.set_seed(6)
    model = ck.Sequential([L.Input((5, 5, 3)), L.Conv2D(4, 3, padding="same"),
                           L.Activation(activation)])
    x = rng.standard_normal((2, 5, 5, 3), dtype=np.float32)
    _check(model, x, tmp_path)


@pytest.mark.parametrize("kwargs", [{}, {"negative_slope": 0.1}, {"max_value": 1.0},
                                    {"threshold": 0.5, "negative_slope": 0.3, "max_value": 2.0},
                                    {"threshold": 0.2}])
def test_relu_layer(kwargs, tmp_path, rng):
    model = ck.Sequential([L.Input((4, 4, 2)), L.ReLU(**kwargs)])
    x = rng.standard_normal((3, 4, 4, 2), dtype=np.float32) * 2
    _check(model, x, tmp_path)


def test_dense_on_images_and_channels_first(tmp_path, rng):
    ck.random.set_seed(7)
    model = ck.Sequential([L.Input((3, 6, 6)),
                           L.Conv2D(4, 3, data_format="channels_first"),
                           L.MaxPooling2D(2, data_format="channels_first"),
                           L.Flatten(data_format="channels_first"),
                           L.Dense(3)])
    x = rng.standard_normal((2, 3, 6, 6), dtype=np.float32)
    proto = _check(model, x, tmp_path)
    assert _ops(proto)[0] == "Conv"              # already NCHW: no Transpose at the start

    per_pixel = ck.Sequential([L.Input((4, 4, 3)), L.Conv2D(5, 1), L.Dense(2)])
    proto = _check(per_pixel, rng.standard_normal((2, 4, 4, 3), dtype=np.float32), tmp_path)
    assert "MatMul" in _ops(proto)


def test_fixed_batch_size_and_names(tmp_path, rng):
    model = ck.Sequential([L.Input((4, 4, 1)), L.Flatten(), L.Dense(2)])
    proto = export_onnx(model, None, batch_size=3, input_name="pixels")
    assert proto.graph.input[0].name == "pixels"
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 3
    assert proto.opset_import[0].version == 17
    names = {init.name for init in proto.graph.initializer}
    assert f"{model.layers[1].name}/kernel" in names


def test_float64_model_exports_float32(tmp_path, rng):
    ck.config.set_floatx("float64")
    model = ck.Sequential([L.Input((5, 5, 2)), L.Conv2D(3, 3), L.Flatten(), L.Dense(2)])
    proto = export_onnx(model, None)
    assert all(init.data_type == onnx.TensorProto.FLOAT for init in proto.graph.initializer)
    x = rng.standard_normal((2, 5, 5, 2))
    got = _session(proto).run(None, {"input": x.astype(np.float32)})[0]
    np.testing.assert_allclose(got, model.predict(x), rtol=1e-4, atol=1e-5)


def test_unsupported_layer_is_named(tmp_path):
    class Scale(L.Layer):
        def forward(self, x, training=False):
            return 2 * x

    model = ck.Sequential([L.Input((4, 4, 1)), Scale(name="my_scale")])
    with pytest.raises(ConvkitError, match="my_scale.*Scale.*no ONNX export"):
        export_onnx(model, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_custom_activation_is_refused():
    model = ck.Sequential([L.Input((4, 4, 1)), L.Conv2D(2, 3, activation=np.abs,
                                                         name="odd_conv")])
    with pytest.raises(ConvkitError, match="odd_conv.*activation 'absolute'"):
        export_onnx(model, None)


def test_unknown_size_where_pads_depend_on_it():
    model = ck.Sequential([L.Input((None, None, 1)), L.Conv2D(2, 3, strides=2, padding="same")])
    with pytest.raises(ShapeError, match="known input height and width"):
        export_onnx(model, None)
    ok = ck.Sequential([L.Input((None, None, 1)), L.Conv2D(2, 3, padding="same"),
                        L.GlobalAveragePooling2D()])
    proto = export_onnx(ok, None)
    x = np.random.default_rng(0).standard_normal((1, 7, 5, 1)).astype(np.float32)
    _assert_close(_session(proto).run(None, {"input": x})[0], ok.predict(x))


def test_write_is_atomic(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    bad = ck.Sequential([L.Input((4, 4, 1)), L.Conv2D(2, 3, activation=np.abs)])
    with pytest.raises(ConvkitError):
        export_onnx(bad, target)
    assert target.read_bytes() == b"old"
    good = ck.Sequential([L.Input((4, 4, 1)), L.Flatten()])
    export_onnx(good, target)
    assert onnx.load(str(target)).graph.node[-1].op_type == "Identity"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    with pytest.raises(FileNotFoundError):
        export_onnx(good, tmp_path / "missing" / "m.onnx")


def test_bad_arguments():
    model = ck.Sequential([L.Input((4, 4, 1)), L.Flatten()])
    with pytest.raises(ConvkitError, match="opset"):
        export_onnx(model, None, opset=9)
    with pytest.raises(ConvkitError, match="batch_size"):
        export_onnx(model, None, batch_size=0)
    with pytest.raises(ConvkitError, match="not built"):
        export_onnx(ck.Sequential([L.Dense(2)]), None)
