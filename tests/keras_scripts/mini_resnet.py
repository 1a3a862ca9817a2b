"""A toy ResNet: the functional API with residual connections made by layers.add
(keras.io's functional API guide), on small random images whose class is their brightest
colour channel.
"""
import numpy as np

import convkit as keras
from convkit import layers

keras.utils.set_random_seed(7)
rng = np.random.default_rng(7)

inputs = keras.Input(shape=(16, 16, 3), name="img")
x = layers.Conv2D(16, 3, activation="relu")(inputs)
x = layers.Conv2D(32, 3, activation="relu")(x)
block_1_output = layers.MaxPooling2D(3)(x)

x = layers.Conv2D(32, 3, activation="relu", padding="same")(block_1_output)
x = layers.Conv2D(32, 3, activation="relu", padding="same")(x)
block_2_output = layers.add([x, block_1_output])

x = layers.Conv2D(32, 3, activation="relu", padding="same")(block_2_output)
x = layers.Conv2D(32, 3, activation="relu", padding="same")(x)
block_3_output = layers.add([x, block_2_output])

x = layers.Conv2D(32, 3, activation="relu")(block_3_output)
x = layers.GlobalAveragePooling2D()(x)
x = layers.Dense(64, activation="relu")(x)
x = layers.Dropout(0.5)(x)
outputs = layers.Dense(3)(x)

model = keras.Model(inputs, outputs, name="toy_resnet")
model.summary()
keras.utils.plot_model(model, "mini_resnet.png", show_shapes=True)

# Small random "images": the label is the colour channel with the most light
x_train = rng.random((512, 16, 16, 3)).astype("float32")
x_train[np.arange(512), :, :, rng.integers(0, 3, 512)] += 0.5
y_train = keras.utils.to_categorical(x_train.mean(axis=(1, 2)).argmax(axis=1), 3)
x_test, y_test = x_train[-128:], y_train[-128:]
x_train, y_train = x_train[:-128], y_train[:-128]

model.compile(
    optimizer=keras.optimizers.RMSprop(1e-3),
    loss=keras.losses.CategoricalCrossentropy(from_logits=True),
    metrics=["acc"],
)
history = model.fit(x_train, y_train, batch_size=64, epochs=3, validation_split=0.2)
score = model.evaluate(x_test, y_test, verbose=0)
print("Test loss:", score[0], "Test accuracy:", score[1])
