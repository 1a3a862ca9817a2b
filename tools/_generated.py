"""What the kernel generators in this folder share: writing the generated module."""
from __future__ import annotations

import os


def write_module(target: str, text: str) -> int:
    """Write ``text`` to ``target`` atomically (a temporary file, then a rename) and say so."""
    tmp = target + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, target)
    print(f"wrote {target} ({text.count(chr(10))} lines)")
    return 0
