"""Small models shared by the model tests (tiny sizes: every test runs in well under a second)."""
import numpy as np

import convkit as ck

L = ck.layers


def mnist_convnet():
    """Keras's simple MNIST convnet (34,826 parameters)."""
    return ck.Sequential([L.Input((28, 28, 1)),
                          L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
                          L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2),
                          L.Flatten(), L.Dropout(0.5), L.Dense(10, activation="softmax")])


def tiny_cnn(input_shape=(8, 8, 1), classes=3, dropout=0.0):
    layers = [L.Input(input_shape), L.Conv2D(4, 3, padding="same", activation="relu"),
              L.MaxPooling2D(2), L.Flatten()]
    if dropout:
        layers.append(L.Dropout(dropout))
    layers.append(L.Dense(classes, activation="softmax"))
    return ck.Sequential(layers)


def residual_net(input_shape=(6, 6, 2), classes=3):
    """Input feeds two branches; a conv output feeds both a conv and an Add; then a
    Concatenate merges the residual block with a 1x1 shortcut."""
    inputs = L.Input(input_shape)
    a = L.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    b = L.Conv2D(4, 3, padding="same")(a)
    c = L.Add()([a, b])
    d = L.Conv2D(3, 1)(inputs)
    e = L.Concatenate()([c, d])
    f = L.GlobalAveragePooling2D()(e)
    outputs = L.Dense(classes, activation="softmax")(f)
    return ck.Model(inputs, outputs)


def toy_data(n=16, shape=(8, 8, 1), classes=3, seed=0):
    """Images whose class is the quadrant holding a bright blob: learnable by a tiny CNN."""
    rng = np.random.default_rng(seed)
    x = rng.random((n,) + shape).astype(np.float32) * 0.1
    y = np.arange(n) % classes
    h, w = shape[0] // 2, shape[1] // 2
    for i, label in enumerate(y):
        r, c = divmod(int(label), 2)
        x[i, r * h:(r + 1) * h, c * w:(c + 1) * w, :] += 0.9
    return x, y.astype(np.int64)
