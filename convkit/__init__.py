"""convkit: convolutional neural networks from first principles on NumPy.

Keras names and semantics (channels_last, 'same' padding with the odd pad bottom/right),
PyTorch's extras (explicit and reflect/replicate/circular padding, ceil_mode, dilation,
groups), a backward pass for every op, and a model API that trains on real data.

    import convkit as ck
    model = ck.Sequential([ck.layers.Input((28, 28, 1)),
                           ck.layers.Conv2D(32, 3, activation="relu"),
                           ck.layers.MaxPooling2D(2),
                           ck.layers.Flatten(),
                           ck.layers.Dense(10, activation="softmax")])
"""
from __future__ import annotations

import importlib as _importlib

from . import config, shapes
from .config import floatx, set_floatx
from .random import set_seed

__version__ = "0.1.0"

_SUBMODULES = {
    "ops": ".ops", "layers": ".layers", "filters": ".filters", "initializers": ".initializers",
    "losses": ".losses", "optimizers": ".optimizers", "metrics": ".metrics",
    "callbacks": ".callbacks", "schedules": ".schedules", "progress": ".progress",
    "regularizers": ".regularizers", "models": ".models", "data": ".data", "datasets": ".data",
    "io": ".io", "viz": ".viz", "explain": ".explain", "jobs": ".jobs", "utils": ".utils",
    "activations": ".ops.activations", "random": ".random", "backend": ".backend",
    "distributed": ".distributed", "wrappers": ".wrappers",
}
# Keras's top-level names: ``import convkit as keras`` then ``keras.Input``, ``keras.Model``...
_NAMES = {
    "Sequential": (".models", "Sequential"),
    "Model": (".models", "Model"),
    "load_model": (".models", "load_model"),
    "Input": (".layers", "Input"),
    "Layer": (".layers", "Layer"),
}

__all__ = ["set_seed", "floatx", "set_floatx", "shapes", "config", "__version__",
           *_SUBMODULES, *_NAMES]


def __getattr__(name):
    # Submodules load on first use, so `import convkit` stays fast and matplotlib, Pillow
    # and friends are imported only by the parts that need them.
    if name in _SUBMODULES:
        module = _importlib.import_module(_SUBMODULES[name], __name__)
        globals()[name] = module
        return module
    if name in _NAMES:
        module_name, attr = _NAMES[name]
        value = getattr(_importlib.import_module(module_name, __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'convkit' has no attribute {name!r}")


def __dir__():
    # The lazy names too, so dir(convkit) and tab completion list them before first use.
    return sorted((set(globals()) - {"annotations"}) | set(__all__))
