import doctest
import importlib

import pytest

MODULES = ["convkit.ops.conv", "convkit.ops.pool", "convkit.ops.padding", "convkit.ops.dense",
           "convkit.fast", "convkit.fast.kernels", "convkit.fast.runtime.backend",
           "convkit.fast.dispatch", "convkit.fast.runtime.threads",
           "convkit.fast.runtime.compiling", "convkit.ops.batch_threads",
           "convkit.ops.activations", "convkit.shapes", "convkit.ops.winograd",
           "convkit.ops.windows"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, extraglobs={"np": __import__("numpy")})
    assert result.attempted > 0 and result.failed == 0
