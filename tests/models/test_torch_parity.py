"""A few steps of plain SGD on a small CNN give the same losses as PyTorch, step by step."""
import numpy as np
import pytest

import convkit as ck

from ._nets import L

pytestmark = pytest.mark.torch


def test_sgd_steps_match_pytorch(torch, rng):
    nn = torch.nn
    ck.set_floatx("float64")
    ck.set_seed(0)
    model = ck.Sequential([L.Input((10, 10, 2)),
                           L.Conv2D(4, 3, activation="relu"),        # (None, 8, 8, 4)
                           L.MaxPooling2D(2),                        # (None, 4, 4, 4)
                           L.Flatten(),                              # (None, 64)
                           L.Dense(5, activation="softmax")])
    lr = 0.1
    model.compile(optimizer=ck.optimizers.SGD(learning_rate=lr),
                  loss="sparse_categorical_crossentropy")
    kernel, bias, dense_w, dense_b = model.get_weights()

    conv = nn.Conv2d(2, 4, 3).double()
    dense = nn.Linear(64, 5).double()
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1)))   # HWIO -> OIHW
        conv.bias.copy_(torch.from_numpy(bias))
        dense.weight.copy_(torch.from_numpy(dense_w.T))            # (in, out) -> (out, in)
        dense.bias.copy_(torch.from_numpy(dense_b))
    params = list(conv.parameters()) + list(dense.parameters())
    opt = torch.optim.SGD(params, lr=lr, momentum=0.0)

    def torch_forward(x_nhwc):
        x = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))
        h = nn.functional.max_pool2d(torch.relu(conv(x)), 2)                # (N, 4, 4, 4) NCHW
        h = h.permute(0, 2, 3, 1).reshape(len(x_nhwc), -1)                  # flatten as NHWC
        return dense(h)                                                      # logits

    ours, theirs = [], []
    for _ in range(4):
        x = rng.random((8, 10, 10, 2))
        y = rng.integers(0, 5, 8)
        ours.append(model.train_on_batch(x, y))
        opt.zero_grad()
        loss = nn.functional.cross_entropy(torch_forward(x), torch.from_numpy(y))
        loss.backward()
        opt.step()
        theirs.append(loss.item())
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)
    new_kernel = model.get_weights()[0]
    np.testing.assert_allclose(new_kernel.transpose(3, 2, 0, 1),
                               conv.weight.detach().numpy(), rtol=1e-9, atol=1e-12)
