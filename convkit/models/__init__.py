"""Models: :class:`Sequential` (a stack of layers) and the functional :class:`Model` (a graph
of layers from symbolic tensors), with Keras's API for building, inspecting (``summary``),
training (``compile``/``fit``/``evaluate``/``predict``) and saving (``save``/``load_model``,
``save_weights``/``load_weights``, no pickle).

    import convkit as ck
    model = ck.Sequential([ck.layers.Input((28, 28, 1)),
                           ck.layers.Conv2D(32, 3, activation="relu"),
                           ck.layers.MaxPooling2D(2),
                           ck.layers.Flatten(),
                           ck.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=128, epochs=3, validation_split=0.1)
    model.save("out/mnist.convkit")
"""
from .graph import Model
from .saving import load_model, load_weights, model_from_config, save_model, save_weights
from .sequential import Sequential
from .summary import format_summary, print_summary, summary_rows

Functional = Model

__all__ = ["Model", "Functional", "Sequential", "load_model", "save_model", "save_weights",
           "load_weights", "model_from_config", "summary_rows", "format_summary",
           "print_summary"]
