import doctest
import importlib

import pytest

MODULES = ["convkit.ops.conv", "convkit.ops.pool", "convkit.ops.padding", "convkit.ops.dense",
           "convkit.ops.accel", "convkit.ops.accel.backend",
           "convkit.ops.activations", "convkit.shapes"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, extraglobs={"np": __import__("numpy")})
    assert result.attempted > 0 and result.failed == 0
