"""A small residual network with the functional API, trained briefly on the 8x8 digits.

A residual block adds its input back to its output, ``y = relu(x + F(x))``: the block only has
to learn the *change* F, and in backpropagation the gradient reaches x along two paths --
through F and straight through the addition -- which convkit adds up (a tensor that feeds
several layers receives the sum of their gradients).

    input 8x8x1
      -> Conv2D(16, 3, same, relu)                        stem
      -> [Conv2D(16, 3, same, relu) -> Conv2D(16, 3, same)] + stem -> ReLU    residual block
      -> Concatenate with a 1x1 conv of the input          a second, cheap branch
      -> MaxPooling2D(2) -> Flatten -> Dense(10, softmax)

Run it from the repository root (well under a minute):

    python examples/residual_network.py
"""
import convkit as ck

L = ck.layers
ck.set_seed(0)

# 1. Data: scikit-learn's 1,797 8x8 digits, 80% train / 20% test, (N, 8, 8, 1) in [0, 1].
(x_train, y_train), (x_test, y_test) = ck.datasets.load_digits()
print("train:", x_train.shape, " test:", x_test.shape)

# 2. The graph. Calling a layer on a symbolic tensor records the connection; no data runs.
inputs = L.Input((8, 8, 1))
stem = L.Conv2D(16, 3, padding="same", activation="relu")(inputs)         # (None, 8, 8, 16)
branch = L.Conv2D(16, 3, padding="same", activation="relu")(stem)
branch = L.Conv2D(16, 3, padding="same")(branch)
block = L.ReLU()(L.Add()([stem, branch]))                                  # the skip connection
side = L.Conv2D(8, 1, activation="relu")(inputs)                           # (None, 8, 8, 8)
merged = L.Concatenate()([block, side])                                    # (None, 8, 8, 24)
pooled = L.MaxPooling2D(2)(merged)                                         # (None, 4, 4, 24)
outputs = L.Dense(10, activation="softmax")(L.Flatten()(pooled))          # (None, 10)
model = ck.Model(inputs, outputs, name="small_resnet")

# The summary gets a "Connected to" column because the graph branches and merges.
model.summary()

# 3. Train briefly and evaluate on the held-out digits.
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, batch_size=32, epochs=10, validation_split=0.1, verbose=2)
loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
print(f"test accuracy {accuracy:.4f} on {len(x_test)} held-out digits")

# 4. The saved file keeps the graph (which layer reads which) and the weights.
model.save("out/residual_network_example.convkit")
print("saved to out/residual_network_example.convkit")
