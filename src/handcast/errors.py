"""User-facing errors.

A :class:`HandcastError` is a mistake a user can fix (a missing file, a wrong shape, an unknown
preset). The CLI prints its message on one line and exits non-zero, without a traceback.
Anything else that escapes is a bug in handcast and keeps its traceback.
"""


class HandcastError(Exception):
    """A problem with the user's input or environment, reported as one line."""


class AssetMissingError(HandcastError):
    """A licensed or generated asset (MANO files, a checkpoint) is not where it should be."""
