"""Exceptions raised by convkit. All are ``ValueError`` subclasses, so callers that catch
``ValueError`` keep working."""


class ConvkitError(ValueError):
    """Base class of convkit's errors about bad arguments or data."""


class ShapeError(ConvkitError):
    """A shape, size or layout does not fit (wrong rank, channel mismatch, size <= 0, ...)."""


class FileFormatError(ConvkitError):
    """A file is truncated, corrupt, foreign or of an unsupported format version."""
