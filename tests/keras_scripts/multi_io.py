"""A model with several inputs and outputs (keras.io's functional API guide, with images in
place of text): from a scan and its tags, predict a priority score and the department the
scan goes to. Inputs and targets are given as dicts by name; each output has its own loss,
loss weight and metric.
"""
import numpy as np

import convkit as keras
from convkit import layers

num_tags = 12  # Number of unique issue tags
num_departments = 4  # Number of departments for predictions

keras.utils.set_random_seed(11)
rng = np.random.default_rng(11)

image_input = keras.Input(shape=(16, 16, 1), name="image")  # Variable-size images
tags_input = keras.Input(shape=(num_tags,), name="tags")  # Binary vectors of size `num_tags`

# Reduce the image to a feature vector
image_features = layers.Conv2D(8, 3, activation="relu")(image_input)
image_features = layers.MaxPooling2D(2)(image_features)
image_features = layers.Conv2D(16, 3, activation="relu")(image_features)
image_features = layers.GlobalAveragePooling2D()(image_features)

# Merge all available features into a single large vector via concatenation
x = layers.Concatenate()([image_features, tags_input])

# Stick a logistic regression for priority prediction on top of the features
priority_pred = layers.Dense(1, name="priority")(x)
# Stick a department classifier on top of the features
department_pred = layers.Dense(num_departments, name="department")(x)

# Instantiate an end-to-end model predicting both priority and department
model = keras.Model(
    inputs=[image_input, tags_input],
    outputs=[priority_pred, department_pred],
)
model.summary()
keras.utils.plot_model(model, "multi_input_and_output_model.png", show_shapes=True)

model.compile(
    optimizer=keras.optimizers.RMSprop(1e-2),
    loss={
        "priority": keras.losses.BinaryCrossentropy(from_logits=True),
        "department": keras.losses.CategoricalCrossentropy(from_logits=True),
    },
    loss_weights={"priority": 1.0, "department": 0.2},
    metrics={"department": ["accuracy"]},
)

# Dummy input data whose targets can be learned
image_data = rng.random((320, 16, 16, 1)).astype("float32")
tags_data = rng.integers(0, 2, size=(320, num_tags)).astype("float32")
priority_targets = (tags_data[:, :3].sum(axis=1, keepdims=True) >= 2).astype("float32")
department_targets = keras.utils.to_categorical(tags_data[:, 3:5] @ np.array([1, 2]),
                                                num_departments)

history = model.fit(
    {"image": image_data, "tags": tags_data},
    {"priority": priority_targets, "department": department_targets},
    epochs=5,
    batch_size=32,
    validation_split=0.2,
)
score = model.evaluate({"image": image_data, "tags": tags_data},
                       {"priority": priority_targets, "department": department_targets},
                       verbose=0, return_dict=True)
print(score)
priority, department = model.predict({"image": image_data[:5], "tags": tags_data[:5]})
