"""The ``convkit`` command line."""
from __future__ import annotations

import sys


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    print("convkit: the command line is not available yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
