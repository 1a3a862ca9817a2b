"""Checks that a committed generated module is what its generator in ``tools/`` writes."""
import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def assert_current(tool: str, module: str) -> None:
    """``tools/<tool>.py``'s ``generate()`` equals ``convkit/fast/_generated/<module>.py``."""
    tools = os.path.join(ROOT, "tools")
    sys.path.insert(0, tools)          # the generators import their shared helper
    try:
        spec = importlib.util.spec_from_file_location(tool, os.path.join(tools, tool + ".py"))
        gen = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(gen)
    finally:
        sys.path.remove(tools)
    with open(os.path.join(ROOT, "convkit", "fast", "_generated", module + ".py"),
              encoding="utf-8") as f:
        assert f.read() == gen.generate(), f"run: python tools/{tool}.py"
