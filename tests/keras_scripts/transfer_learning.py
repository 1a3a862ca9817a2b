"""Transfer learning and fine-tuning (keras.io style): a convolutional base trained on the
digits 0-4 is frozen and reused, as a layer of a new model, to classify the digits 5-9;
then the whole model is fine-tuned with a small learning rate.
"""
import numpy as np

import convkit as keras
from convkit import layers

keras.utils.set_random_seed(21)
(x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
x_train = np.expand_dims(x_train.astype("float32") / 255, -1)
x_test = np.expand_dims(x_test.astype("float32") / 255, -1)

low, high = y_train < 5, y_train >= 5
x_low, y_low = x_train[low][:600], y_train[low][:600]
x_high, y_high = x_train[high][:600], y_train[high][:600] - 5
test_high = y_test >= 5
x_test_high, y_test_high = x_test[test_high], y_test[test_high] - 5

# A base model, first trained on the digits 0-4
base_model = keras.Sequential(
    [
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(8, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(16, 3, activation="relu"),
        layers.MaxPooling2D(2),
    ],
    name="base",
)
pretraining = keras.Sequential([base_model, layers.Flatten(),
                                layers.Dense(5, activation="softmax")])
pretraining.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                    metrics=["accuracy"])
pretraining.fit(x_low, y_low, batch_size=64, epochs=2)

# Freeze the base model
base_model.trainable = False
frozen_weights = base_model.get_weights()

# Create a new model on top
inputs = keras.Input(shape=(28, 28, 1))
x = base_model(inputs, training=False)
x = layers.Flatten()(x)
x = layers.Dropout(0.2)(x)
outputs = layers.Dense(5, activation="softmax")(x)
model = keras.Model(inputs, outputs)
model.summary(expand_nested=True)

model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
history = model.fit(x_high, y_high, batch_size=64, epochs=3, validation_split=0.2)
unchanged = all(np.array_equal(a, b) for a, b in zip(frozen_weights, base_model.get_weights()))

# Fine-tune the whole model with a small learning rate
base_model.trainable = True
model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
fine_tuning = model.fit(x_high, y_high, batch_size=64, epochs=1)

score = model.evaluate(x_test_high, y_test_high, verbose=0)
print("Test loss:", score[0])
print("Test accuracy:", score[1])
