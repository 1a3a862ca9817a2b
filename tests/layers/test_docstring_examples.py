"""The docstring examples of the resampling, reshaping, separable and 1-D layers and their
ops run and give what they show."""
import doctest
import importlib

import numpy as np
import pytest

MODULES = ["convkit.ops.conv_transpose", "convkit.ops.resize", "convkit.ops.separable",
           "convkit.layers.conv_transpose", "convkit.layers.separable",
           "convkit.layers.resampling", "convkit.layers.reshaping", "convkit.layers.conv1d",
           "convkit.layers.pooling1d"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), extraglobs={"np": np})
    assert result.attempted > 0 and result.failed == 0
