"""``ck.distributed`` and ``ck.wrappers`` load on first use, like the other submodules."""
import importlib

import convkit as ck


def test_distributed_and_wrappers_are_lazy_top_level_names():
    assert {"distributed", "wrappers"} <= set(dir(ck))
    assert ck.distributed is importlib.import_module("convkit.distributed")
    assert ck.wrappers is importlib.import_module("convkit.wrappers")
    assert callable(ck.distributed.fit)
