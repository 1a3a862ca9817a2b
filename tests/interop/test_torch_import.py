"""PyTorch weight import: mirror networks in torch and convkit, copy the weights, compare
outputs (torch in eval mode; inputs NCHW for torch, NHWC for convkit)."""
import numpy as np
import pytest

import convkit as ck
from convkit.errors import ConvkitError, ShapeError
from convkit.io.torch_import import flatten_permutation, load_torch_state_dict

L = ck.layers


def _assert_close(got, want):
    scale = max(1.0, float(np.max(np.abs(want))))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale)


def _randomise(torch, net):
    """Non-trivial BatchNorm statistics and affine parameters, so every weight matters."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
                module.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.3)
                if module.affine:
                    module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                    module.bias.copy_(torch.randn(n, generator=gen) * 0.3)
    return net.eval()


def _torch_convnet(torch):
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 6, 3, stride=2, padding=1, bias=False), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 3 * 2, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 4))
    return _randomise(torch, net)


def _convkit_convnet():
    return ck.Sequential([
        L.Input((10, 7, 3)),                   # not square: catches H/W mix-ups in Flatten
        L.Conv2D(8, 3, padding=1), L.BatchNormalization(epsilon=1e-5, momentum=0.9),
        L.ReLU(), L.MaxPooling2D(2),
        L.Conv2D(6, 3, strides=2, padding=1, use_bias=False, activation="relu"),
        L.Flatten(), L.Dense(16, activation="relu"), L.Dropout(0.5), L.Dense(4)])


def _compare(torch, net, model, shape_nchw, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape_nchw).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    got = model.predict(x.transpose(0, 2, 3, 1))           # NCHW -> NHWC
    _assert_close(got, want)


def test_convnet_matches_torch(torch):
    net = _torch_convnet(torch)
    model = _convkit_convnet()
    pairs = load_torch_state_dict(model, net.state_dict())
    assert [p for _, p in pairs] == ["0", "1", "4", "7", "10"]
    _compare(torch, net, model, (3, 3, 10, 7))


def test_numpy_state_dict_and_module(torch):
    net = _torch_convnet(torch)
    arrays = {k: v.numpy() for k, v in net.state_dict().items()}
    model = _convkit_convnet()
    load_torch_state_dict(model, arrays)
    _compare(torch, net, model, (2, 3, 10, 7), seed=1)
    other = _convkit_convnet()
    load_torch_state_dict(other, net)                       # an nn.Module works too
    for a, b in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_flatten_permutation_without_torch():
    """Hand-checkable: features (c, h, w) in torch order land at (h, w, c)."""
    perm = flatten_permutation(L.Flatten(), (None, 2, 2, 3))
    torch_order = np.arange(12).reshape(3, 2, 2)            # value = torch feature index
    assert perm.tolist() == torch_order.transpose(1, 2, 0).reshape(-1).tolist()
    assert perm[:3].tolist() == [0, 4, 8]                   # pixel (0, 0), channels 0, 1, 2
    assert flatten_permutation(L.Flatten(), (None, 2, 2, 3), "channels_first") is None
    assert flatten_permutation(L.Flatten(), (None, 12)) is None


def test_depthwise_and_grouped(torch):
    nn = torch.nn
    torch.manual_seed(1)
    net = _randomise(torch, nn.Sequential(
        nn.Conv2d(4, 8, 3, padding=1, groups=4), nn.BatchNorm2d(8), nn.ReLU6(),
        nn.Conv2d(8, 6, 3, groups=2), nn.ReLU(),
        nn.Conv2d(6, 6, 1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)))
    model = ck.Sequential([
        L.Input((9, 8, 4)),
        L.DepthwiseConv2D(3, depth_multiplier=2, padding=1),
        L.BatchNormalization(epsilon=1e-5), L.Activation("relu6"),
        L.Conv2D(6, 3, groups=2, activation="relu"),
        L.Conv2D(6, 1),
        L.GlobalAveragePooling2D(), L.Flatten(), L.Dense(3)])
    load_torch_state_dict(model, net.state_dict())
    # channel c*dm + m of torch's grouped conv is kernel [:, :, c, m] in convkit
    w = net[0].weight.detach().numpy()
    np.testing.assert_array_equal(model.layers[0].get_weights()[0][:, :, 1, 0], w[2, 0])
    _compare(torch, net, model, (2, 4, 9, 8))


def test_functional_model_with_mapping(torch):
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(5 * 5 * 4, 3)     # registered first: order differs
            self.conv = nn.Conv2d(2, 4, 3, padding=1)
            self.norm = nn.BatchNorm1d(5 * 5 * 4)

        def forward(self, x):
            y = torch.relu(self.conv(x)) + x.repeat(1, 2, 1, 1)
            return self.head(self.norm(torch.flatten(y, 1)))

    torch.manual_seed(2)
    net = _randomise(torch, Net())
    inputs = L.Input((5, 5, 2))
    y = L.Conv2D(4, 3, padding=1, activation="relu", name="c")(inputs)
    y = L.Add()([y, L.Concatenate()([inputs, inputs])])
    y = L.BatchNormalization(epsilon=1e-5, name="bn")(L.Flatten()(y))
    model = ck.Model(inputs, L.Dense(3, name="fc")(y))
    # x.repeat(1, 2, 1, 1) stacks the channels [0, 1, 0, 1], as Concatenate does
    with pytest.raises(ShapeError, match="Conv2D 'c' <- torch 'head.weight'"):
        load_torch_state_dict(model, net.state_dict())
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ShapeError):
        load_torch_state_dict(model, net.state_dict())
    for a, b in zip(before, model.get_weights()):            # untouched after an error
        np.testing.assert_array_equal(a, b)
    pairs = load_torch_state_dict(model, net.state_dict(),
                                  mapping={"c": "conv", "bn": "norm", "fc": "head"})
    assert pairs == [("c", "conv"), ("bn", "norm"), ("fc", "head")]
    _compare(torch, net, model, (3, 2, 5, 5))


def test_shape_mismatch_names_both_sides(torch):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5), torch.nn.Flatten(),
                              torch.nn.Linear(8, 2))
    model = ck.Sequential([L.Input((5, 5, 3)), L.Conv2D(8, 3), L.Flatten(), L.Dense(2)])
    with pytest.raises(ShapeError, match=r"Conv2D 'conv2d.*' <- torch '0.weight': shape "
                                         r"\(8, 3, 5, 5\), expected \(8, 3, 3, 3\)"):
        load_torch_state_dict(model, net.state_dict())


def test_count_bias_and_mapping_errors():
    model = ck.Sequential([L.Input((4, 4, 1)), L.Conv2D(2, 3, name="only_conv"),
                           L.Flatten(), L.Dense(2, name="only_dense")])
    conv = {"c.weight": np.zeros((2, 1, 3, 3)), "c.bias": np.zeros(2)}
    dense = {"d.weight": np.zeros((2, 8)), "d.bias": np.zeros(2)}
    with pytest.raises(ShapeError, match=r"2 layers with weights.*1 modules \['c'\]"):
        load_torch_state_dict(model, conv)
    assert load_torch_state_dict(model, conv, strict=False) == [("only_conv", "c")]
    with pytest.raises(ShapeError, match="has a bias but torch 'd' has none"):
        load_torch_state_dict(model, {**conv, "d.weight": np.zeros((2, 8))})
    with pytest.raises(ConvkitError, match="does not have; its layers"):
        load_torch_state_dict(model, {**conv, **dense}, mapping={"nope": "c"})
    with pytest.raises(ConvkitError, match=r"torch 'x', which the state dict does not have"):
        load_torch_state_dict(model, {**conv, **dense}, mapping={"only_conv": "x"})
    with pytest.raises(ShapeError, match="strict loading"):
        load_torch_state_dict(model, {**conv, **dense}, mapping={"only_conv": "c"})
    with pytest.raises(ShapeError, match="'d.extra' that"):
        load_torch_state_dict(model, {**conv, **dense, "d.extra": np.zeros(2)})


def test_batch_norm_counters_are_ignored_and_flags_checked():
    model = ck.Sequential([L.Input((3, 3, 2)), L.BatchNormalization(scale=False)])
    state = {"bn.weight": np.ones(2), "bn.bias": np.zeros(2), "bn.running_mean": np.zeros(2),
             "bn.running_var": np.ones(2), "bn.num_batches_tracked": np.array(7)}
    with pytest.raises(ShapeError, match="'weight' but BatchNormalization .* scale=False"):
        load_torch_state_dict(model, state)
    del state["bn.weight"]
    state["bn.running_mean"] = np.array([1.0, 2.0])
    load_torch_state_dict(model, state)
    np.testing.assert_array_equal(model.layers[0].get_weights()[1], [1.0, 2.0])


def test_never_unpickles_files(tmp_path):
    model = ck.Sequential([L.Input((2,)), L.Dense(1)])
    path = tmp_path / "weights.pt"
    path.write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(ConvkitError, match=r"weights_only=True"):
        load_torch_state_dict(model, path)
    with pytest.raises(FileNotFoundError):
        load_torch_state_dict(model, tmp_path / "w.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    with pytest.raises(ck.errors.FileFormatError):
        load_torch_state_dict(model, bad)
    with pytest.raises(ConvkitError, match="expected a state dict"):
        load_torch_state_dict(model, [1, 2, 3])


def test_module_does_not_import_torch():
    import subprocess
    import sys
    code = ("import sys, convkit.io.torch_import, convkit.io.keras_import, "
            "convkit.io.onnx_export; print('torch' in sys.modules, 'onnx' in sys.modules, "
            "'h5py' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False", "False"]
