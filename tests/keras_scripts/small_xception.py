"""Image classification from scratch (keras.io style): image_dataset_from_directory, data
augmentation inside the model, Rescaling, and a small Xception-like network of
SeparableConv2D blocks with residual connections. The images are a tiny synthetic
two-class set (horizontal against vertical stripes) written to disk first.
"""
import os

import numpy as np
from PIL import Image

import convkit as keras
from convkit import layers

keras.utils.set_random_seed(1)

# A small two-class image folder: one sub-folder per class, as for cats and dogs
rng = np.random.default_rng(0)
data_dir = "stripes"
for class_name, axis in (("horizontal", 0), ("vertical", 1)):
    os.makedirs(os.path.join(data_dir, class_name), exist_ok=True)
    for i in range(48):
        period = rng.integers(3, 7)
        wave = (np.arange(36) // period) % 2 * 200 + 30
        picture = np.repeat(wave[:, None] if axis == 0 else wave[None, :], 36, axis=1 - axis)
        picture = np.stack([picture] * 3, axis=-1) + rng.integers(0, 25, (36, 36, 3))
        Image.fromarray(np.clip(picture, 0, 255).astype("uint8")).save(
            os.path.join(data_dir, class_name, f"{i}.png"))

image_size = (32, 32)
batch_size = 16

train_ds, val_ds = keras.utils.image_dataset_from_directory(
    data_dir,
    validation_split=0.2,
    subset="both",
    seed=1337,
    image_size=image_size,
    batch_size=batch_size,
)

data_augmentation_layers = [
    layers.RandomFlip("horizontal"),
    layers.RandomRotation(0.1),
]


def data_augmentation(images):
    for layer in data_augmentation_layers:
        images = layer(images)
    return images


def make_model(input_shape, num_classes):
    inputs = keras.Input(shape=input_shape)

    # Entry block
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(16, 3, strides=2, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)

    previous_block_activation = x  # Set aside residual

    for size in [16, 32]:
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)

        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)

        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)

        # Project residual
        residual = layers.Conv2D(size, 1, strides=2, padding="same")(
            previous_block_activation
        )
        x = layers.add([x, residual])  # Add back residual
        previous_block_activation = x  # Set aside next residual

    x = layers.SeparableConv2D(32, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)

    x = layers.GlobalAveragePooling2D()(x)
    if num_classes == 2:
        units = 1
    else:
        units = num_classes

    x = layers.Dropout(0.25)(x)
    # We specify activation=None so as to return logits
    outputs = layers.Dense(units, activation=None)(x)
    return keras.Model(inputs, outputs)


augmentation = keras.Sequential(data_augmentation_layers, name="augmentation")
inputs = keras.Input(shape=image_size + (3,))
model = keras.Model(inputs, make_model(image_size + (3,), num_classes=2)(augmentation(inputs)))
keras.utils.plot_model(model, "small_xception.png", show_shapes=True)

epochs = 4
model.compile(
    optimizer=keras.optimizers.Adam(3e-3),
    loss=keras.losses.BinaryCrossentropy(from_logits=True),
    metrics=[keras.metrics.BinaryAccuracy(name="acc", threshold=0.0)],
)
history = model.fit(train_ds, epochs=epochs, validation_data=val_ds)
score = model.evaluate(val_ds, verbose=0)
print("Validation loss and accuracy:", score)

images, labels = train_ds[0]
augmented = data_augmentation(images)
