"""The benchmark models, in convkit and mirrored layer for layer in PyTorch with the same
initial weights (HWIO -> OIHW for kernels, (in, out) -> (out, in) for dense, and Flatten in
channels_last order on both sides)."""
from __future__ import annotations

import numpy as np


def convkit_model(arch: str, lr: float = 0.01, optimizer=None, seed: int = 0):
    """``mnist_convnet`` (Keras's simple MNIST convnet) or ``lenet5``, compiled with plain SGD
    unless an optimizer is given."""
    import convkit as ck
    L = ck.layers
    ck.set_seed(seed)
    if arch == "mnist_convnet":
        layers = [L.Input((28, 28, 1)),
                  L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
                  L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2),
                  L.Flatten(), L.Dropout(0.5), L.Dense(10, activation="softmax")]
    elif arch == "lenet5":
        layers = [L.Input((28, 28, 1)),
                  L.Conv2D(6, 5, padding="same", activation="relu"), L.AveragePooling2D(2),
                  L.Conv2D(16, 5, activation="relu"), L.AveragePooling2D(2),
                  L.Flatten(), L.Dense(120, activation="relu"), L.Dense(84, activation="relu"),
                  L.Dense(10, activation="softmax")]
    else:
        raise ValueError(f"unknown benchmark model {arch!r}")
    model = ck.Sequential(layers)
    model.compile(optimizer=optimizer or ck.optimizers.SGD(learning_rate=lr),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def train_flops(model, batch: int) -> float:
    """FLOPs of one training step: forward multiply-adds of conv and dense layers, times 2
    FLOPs per multiply-add, times 3 (forward, input gradient, weight gradient)."""
    from convkit.shapes import to_pair
    macs = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            _, ho, wo, cout = layer.output_shape
            kh, kw = to_pair(layer.kernel_size, "kernel_size")
            cin = layer.input_shape[-1]
            macs += ho * wo * kh * kw * (cin // layer.groups) * cout
        elif kind == "Dense":
            macs += layer.input_shape[-1] * layer.units
    return 3 * 2 * macs * batch


def torch_mirror(torch, ck_model, lr: float = 0.01, channels_last: bool = False,
                 optimizer: str = "sgd"):
    """A torch ``nn.Sequential`` equal to ``ck_model`` (same weights), its optimizer, and the
    index of the Flatten (so inputs are NCHW and flattening happens in NHWC order)."""
    nn = torch.nn
    mods = []
    for layer in ck_model.layers:
        kind = type(layer).__name__
        cfg = layer.get_config()
        act = cfg.get("activation")
        if kind == "InputLayer":
            continue
        if kind == "Conv2D":
            w, b = layer.get_weights()
            kh = w.shape[0]
            pad = 0 if str(cfg["padding"]).lower() == "valid" else kh // 2
            conv = nn.Conv2d(w.shape[2], w.shape[3], kh, stride=layer.strides, padding=pad)
            conv.weight.data = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
            conv.bias.data = torch.from_numpy(b.copy())
            mods.append(conv)
        elif kind == "MaxPooling2D":
            mods.append(nn.MaxPool2d(layer.pool_size))
        elif kind == "AveragePooling2D":
            mods.append(nn.AvgPool2d(layer.pool_size))
        elif kind == "Flatten":
            mods.append(_NHWCFlatten(torch))
        elif kind == "Dropout":
            mods.append(nn.Dropout(layer.rate))
        elif kind == "Dense":
            w, b = layer.get_weights()
            lin = nn.Linear(w.shape[0], w.shape[1])
            lin.weight.data = torch.from_numpy(np.ascontiguousarray(w.T))
            lin.bias.data = torch.from_numpy(b.copy())
            mods.append(lin)
        else:
            raise ValueError(f"no torch mirror for {kind}")
        if act == "relu":
            mods.append(nn.ReLU())
        elif act not in (None, "linear", "softmax"):
            raise ValueError(f"no torch mirror for activation {act}")
    model = nn.Sequential(*mods)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr, eps=1e-7)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr)
    return model, opt


def _NHWCFlatten(torch):
    class NHWCFlatten(torch.nn.Module):
        def forward(self, x):
            return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
    return NHWCFlatten()


def torch_step_fns(torch, ck_model, x, y, lr=0.01):
    """(step, predict, model) for the faster of NCHW and channels_last; the final softmax is
    folded into the loss (cross-entropy on logits) as PyTorch users write it."""
    F = torch.nn.functional
    best = None
    for channels_last in (False, True):
        model, opt = torch_mirror(torch, ck_model, lr, channels_last)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))) \
            .contiguous(memory_format=fmt)
        yt = torch.from_numpy(np.asarray(y, dtype=np.int64))

        def step(model=model, opt=opt, xt=xt, yt=yt):
            model.train()
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xt), yt)
            loss.backward()
            opt.step()
            return loss

        def predict(batch, model=model, fmt=fmt):
            model.eval()
            with torch.no_grad():
                bt = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2))) \
                    .contiguous(memory_format=fmt)
                return torch.softmax(model(bt), dim=-1).numpy()

        import time
        for _ in range(2):
            step()
        t = time.perf_counter()
        for _ in range(3):
            step()
        cost = time.perf_counter() - t
        if best is None or cost < best[0]:
            best = (cost, step, predict, model)
    return best[1], best[2], best[3]


def torch_predict(torch, ck_model, batch) -> np.ndarray:
    """Softmax outputs of the torch mirror of ``ck_model`` (its current weights)."""
    model, _ = torch_mirror(torch, ck_model)
    model.eval()
    with torch.no_grad():
        bt = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))
        return torch.softmax(model(bt), dim=-1).numpy()
