"""Convolutional autoencoder for image denoising (keras.io style): an encoder of Conv2D and
MaxPooling2D, a decoder of Conv2DTranspose and UpSampling2D, trained on noisy MNIST digits
to give back the clean ones.
"""
import numpy as np

import convkit as keras
from convkit import layers


def preprocess(array):
    """Normalizes the supplied array and reshapes it into the appropriate format."""
    array = array.astype("float32") / 255.0
    array = np.reshape(array, (len(array), 28, 28, 1))
    return array


def noise(array):
    """Adds random noise to each image in the supplied array."""
    noise_factor = 0.4
    noisy_array = array + noise_factor * np.random.normal(loc=0.0, scale=1.0,
                                                          size=array.shape)
    return np.clip(noisy_array, 0.0, 1.0).astype("float32")


keras.utils.set_random_seed(3)
(train_data, _), (test_data, _) = keras.datasets.mnist.load_data()
train_data = preprocess(train_data[:512])
test_data = preprocess(test_data[:128])
noisy_train_data = noise(train_data)
noisy_test_data = noise(test_data)

input = keras.Input(shape=(28, 28, 1))

# Encoder
x = layers.Conv2D(16, (3, 3), activation="relu", padding="same")(input)
x = layers.MaxPooling2D((2, 2), padding="same")(x)
x = layers.Conv2D(16, (3, 3), activation="relu", padding="same")(x)
x = layers.MaxPooling2D((2, 2), padding="same")(x)

# Decoder
x = layers.Conv2DTranspose(16, (3, 3), strides=2, activation="relu", padding="same")(x)
x = layers.UpSampling2D((2, 2))(x)
x = layers.Conv2D(16, (3, 3), activation="relu", padding="same")(x)
x = layers.Conv2D(1, (3, 3), activation="sigmoid", padding="same")(x)

# Autoencoder
autoencoder = keras.Model(input, x)
autoencoder.compile(optimizer="adam", loss="binary_crossentropy")
autoencoder.summary()

history = autoencoder.fit(
    x=noisy_train_data,
    y=train_data,
    epochs=3,
    batch_size=64,
    shuffle=True,
    validation_data=(noisy_test_data, test_data),
)

predictions = autoencoder.predict(noisy_test_data)
score = autoencoder.evaluate(noisy_test_data, test_data, verbose=0)
print("Denoising loss:", score)
