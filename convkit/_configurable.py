"""A small base for objects described by their config (initializers, regularizers): equal when
their class and config are equal, and a repr that shows the config; and the lookup that the
``deserialize`` functions share."""
from __future__ import annotations

from .errors import ConvkitError


def from_registry(registry: dict, config: dict, where: str, kind: str):
    """``registry[config["class_name"]].from_config(config["config"])``, or a ConvkitError
    naming ``where``, the unknown ``kind`` and the known class names."""
    name = config.get("class_name")
    if name not in registry:
        raise ConvkitError(f"{where}: unknown {kind} {name!r}; known: "
                           f"{', '.join(sorted(registry))}")
    return registry[name].from_config(config.get("config", {}))


class Configurable:
    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash(type(self).__name__)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
