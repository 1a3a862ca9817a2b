"""The old path of :mod:`convkit.fast.kernels` (the compiled kernels and the switch's
functions), kept for code written against it: importing this module gives that module."""
import sys

from ..fast import kernels as _kernels

sys.modules[__name__] = _kernels
