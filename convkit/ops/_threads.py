"""The old path of :mod:`convkit.fast.runtime.threads` (the thread pool), kept for code
written against it: importing this module gives that module."""
import sys

from ..fast.runtime import threads as _threads

sys.modules[__name__] = _threads
