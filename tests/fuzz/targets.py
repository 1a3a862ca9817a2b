"""The loaders the fuzzer attacks, registered in :data:`tests.fuzz.harness.TARGETS`.

=====================  =========================================================  ========
target                 load call                                                  seeds
=====================  =========================================================  ========
convkit                ``ck.load_model(path)``                                    2 models
keras-weights-h5       ``load_keras_weights(model, path)``, Keras 3 and Keras 2   2 files
keras-zip              ``load_keras_weights(model, path)`` on a ``.keras`` zip    1 file
keras-model            ``ck.load_model(path)`` on a ``.keras`` zip                1 file
safetensors            ``load_torch_state_dict(model, path)``                     2 files
torch-state-dict       ``load_torch_state_dict(model, dict(np.load(npz)))``       1 dict
torch-pt (long runs)   ``torch.load(path, weights_only=True)`` then the above     1 file
=====================  =========================================================  ========

``torch-state-dict`` mutates the dict itself (names, shapes, dtypes, values) rather than
bytes, and writes it as an ``.npz`` of plain arrays; ``torch-pt`` needs PyTorch and counts
files that ``torch.load`` refuses as ``rejected``. Files that point outside themselves
(HDF5 external storage and external links, see :mod:`tests.fuzz.crafting`) join the Keras
seeds once :func:`keras_refuses_external_files` says the loader refuses them.
"""
from __future__ import annotations

import io
import os
import random
import tempfile

import numpy as np

from . import crafting
from .harness import BYTE_MUTATORS, ZIP_MUTATORS, Target, register, safetensors_header


class Rejected(Exception):
    """A third-party reader refused the file before convkit saw it."""


# ------------------------------------------------------------------------------ load calls
def load_convkit(path):
    import convkit as ck
    ck.load_model(path)


def load_keras_weights_file(path):
    from convkit.io.keras_import import load_keras_weights
    load_keras_weights(crafting.keras_seed_model(), path)


def load_keras_model(path):
    import convkit as ck
    ck.load_model(path)


def load_safetensors(path):
    from convkit.io.torch_import import load_torch_state_dict
    load_torch_state_dict(crafting.torch_seed_model(), path)


def load_state_dict_npz(path):
    import zipfile

    from convkit.io.torch_import import load_torch_state_dict
    try:
        with np.load(path, allow_pickle=False) as archive:
            state = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:     # the harness's own reader
        raise Rejected(f"np.load: {type(exc).__name__}") from None
    strict = not path.endswith("1.npz")          # one case in ten loads with strict=False
    load_torch_state_dict(crafting.torch_seed_model(), state, strict=strict)


def load_torch_pt(path):
    import torch

    from convkit.io.torch_import import load_torch_state_dict
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - whatever torch.load refuses never reaches convkit
        raise Rejected(f"torch.load: {type(exc).__name__}") from None
    load_torch_state_dict(crafting.torch_seed_model(), state)


load_torch_pt.prepare = lambda: __import__("torch")


# ------------------------------------------------------------------------------ seeds
def convkit_seeds(directory):
    return crafting.convkit_model_bytes()


def keras_refuses_external_files() -> bool:
    """True once the Keras loader refuses HDF5 external storage (then the crafted files
    are fuzz seeds too: their mutations must all be clean errors)."""
    from convkit.errors import FileFormatError
    from convkit.io.keras_import import load_keras_weights
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "ext.weights.h5")
        with open(path, "wb") as handle:
            handle.write(crafting.h5_external_storage("/etc/hostname"))
        import convkit as ck
        model = ck.Sequential([ck.layers.Input((3, 3, 1)), ck.layers.Conv2D(2, 3)])
        try:
            load_keras_weights(model, path)
        except FileFormatError:
            return True
        except Exception:  # noqa: BLE001
            return False
        return False


def _external_seeds(directory) -> list:
    if not keras_refuses_external_files():
        return []
    other = os.path.join(directory, "other.weights.h5")
    with open(other, "wb") as handle:
        handle.write(crafting.keras3_weights_h5(crafting.keras_seed_model()))
    return [crafting.h5_external_storage("/etc/hostname"), crafting.h5_external_link(other),
            crafting.h5_external_link(other, soft=True)]


def keras_h5_seeds(directory):
    model = crafting.keras_seed_model()
    return [crafting.keras3_weights_h5(model), crafting.legacy_h5(model)] \
        + _external_seeds(directory)


def keras_zip_seeds(directory):
    """A ``.keras`` file as convkit writes it (a real config, compiled with Adam after one
    step, so config, compile_config and optimizer variables are all read) and a crafted one
    with a bare config."""
    import convkit as ck
    from convkit.io.keras_export import save_keras
    model = crafting.keras_seed_model()
    model.compile(optimizer=ck.optimizers.Adam(1e-3), loss="mse")
    model.fit(np.ones((2, 6, 6, 1), np.float32), np.zeros((2, 2), np.float32), epochs=1,
              verbose=0)
    path = os.path.join(directory, "seed.keras")
    save_keras(model, path)
    with open(path, "rb") as handle:
        written = handle.read()
    return [written,
            crafting.keras_zip(crafting.keras3_weights_h5(crafting.keras_seed_model()))]


def safetensors_seeds(directory):
    state = crafting.torch_style_state(crafting.torch_seed_model())
    return [crafting.safetensors_bytes(state),
            crafting.safetensors_bytes(state, {"format": "pt"})]


def _state_npz(state: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **state)
    return buffer.getvalue()


def state_dict_seeds(directory):
    return [_state_npz(crafting.torch_style_state(crafting.torch_seed_model()))]


def torch_pt_seeds(directory):
    import torch
    state = {k: torch.from_numpy(np.ascontiguousarray(v))
             for k, v in crafting.torch_style_state(crafting.torch_seed_model()).items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return [buffer.getvalue()]


# ------------------------------------------------------------------------------ mutators
_ODD_ARRAYS = [np.zeros((0,), np.float32), np.array(np.nan, np.float32),
               np.full((2, 2, 1, 1), np.inf, np.float32), np.array(["a", "b"]),
               np.zeros((2, 2, 1, 1), np.complex64), np.ones((2, 2, 1, 1), bool),
               np.zeros((1,) * 9, np.float32), np.arange(4, dtype=np.int64)]


def mutate_state_dict(data: bytes, rng: random.Random) -> bytes:
    """Rename, drop, add, reshape or retype entries of a state dict saved as ``.npz``."""
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        state = {name: archive[name] for name in archive.files}
    names = list(state)
    for _ in range(rng.choice((1, 2, 3))):
        with np.errstate(all="ignore"):
            _mutate_entry(state, names, rng)
    return _state_npz(state)


def _mutate_entry(state: dict, names: list, rng: random.Random) -> None:
    """One change to one entry of ``state`` (in place)."""
    name = rng.choice(names) if names else "x"
    action = rng.randrange(7) if name in state else 4
    if action == 0:
        del state[name]
    elif action == 1:
        prefix, _, param = name.rpartition(".")
        new_name = rng.choice((f"{prefix}.{param}x", f"{prefix}0.{param}", param,
                               f"features.{rng.randrange(100)}.{param}", ""))
        state[new_name] = state.pop(name)
    elif action == 2:
        state[name] = state[name].reshape(-1)
    elif action == 3:
        state[name] = state[name].astype(rng.choice((np.float64, np.int8, np.float16)))
    elif action == 4:
        param = rng.choice(("weight", "bias", "running_var"))
        state[f"features.{rng.randrange(20)}.{param}"] = rng.choice(_ODD_ARRAYS)
    elif action == 5 and state[name].ndim:
        state[name] = np.swapaxes(state[name], 0, -1)
    else:
        state[name] = rng.choice(_ODD_ARRAYS)


def mutate_keras_zip_member(data: bytes, rng: random.Random) -> bytes:
    """Flip bits of the HDF5 member inside a .keras zip and re-zip it with good CRCs."""
    from .harness import _rezip, _zip_members
    members = _zip_members(data)
    index = next((i for i, (info, _) in enumerate(members)
                  if info.filename.endswith(".h5")), 0)
    info, content = members[index]
    members[index] = (info, rng.choice(BYTE_MUTATORS)(content, rng))
    return _rezip(members)


def _has(module: str):
    def check() -> bool:
        import importlib.util
        return importlib.util.find_spec(module) is not None
    return check


register(Target("convkit", ".convkit", convkit_seeds, "tests.fuzz.targets:load_convkit",
                mutators=BYTE_MUTATORS + ZIP_MUTATORS * 2))
register(Target("keras-weights-h5", ".weights.h5", keras_h5_seeds,
                "tests.fuzz.targets:load_keras_weights_file", mutators=BYTE_MUTATORS,
                available=_has("h5py")))
register(Target("keras-zip", ".keras", keras_zip_seeds,
                "tests.fuzz.targets:load_keras_weights_file",
                mutators=BYTE_MUTATORS + ZIP_MUTATORS[:2] + (mutate_keras_zip_member,) * 3,
                available=_has("h5py")))
register(Target("keras-model", ".keras", keras_zip_seeds, "tests.fuzz.targets:load_keras_model",
                mutators=ZIP_MUTATORS[:2] + (mutate_keras_zip_member,) * 2,
                available=_has("h5py")))
register(Target("safetensors", ".safetensors", safetensors_seeds,
                "tests.fuzz.targets:load_safetensors",
                mutators=BYTE_MUTATORS + (safetensors_header,) * 4))
register(Target("torch-state-dict", ".npz", state_dict_seeds,
                "tests.fuzz.targets:load_state_dict_npz", mutators=(mutate_state_dict,)))
register(Target("torch-pt", ".pt", torch_pt_seeds, "tests.fuzz.targets:load_torch_pt",
                mutators=BYTE_MUTATORS, fast=False, available=_has("torch")))

__all__ = ["Rejected"]
