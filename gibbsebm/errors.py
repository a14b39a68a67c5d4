"""The library's own exception types for files and resumed runs (core layer: imports nothing).

* :class:`CorruptFileError`: a file the library reads back (checkpoint, shard result,
  :class:`~gibbsebm.Samples` file, run manifest) is not what the library wrote: no gibbsebm
  header, an unknown format version, another kind of file, a checksum that does not match
  (flipped or truncated bytes), content other than plain data (a pickle that would run code),
  or a symbolic link where a file is expected.
* :class:`CheckpointMismatchError`: a checkpoint belongs to another run (the method, an
  option, ``beta``, the energy's parameters or code, dtype, device kind, counts or seed
  differ); the message names every field that differs.

Both are :class:`ValueError` subclasses, so code that catches ``ValueError`` for bad input
keeps working.
"""

from __future__ import annotations

__all__ = ["CorruptFileError", "CheckpointMismatchError"]


class CorruptFileError(ValueError):
    """A file written by gibbsebm fails its checks on read; nothing from it was used.

    Attributes
    ----------
    path : str or None
        The file.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class CheckpointMismatchError(ValueError):
    """A checkpoint was written by a different run than the one asked to resume it.

    Attributes
    ----------
    fields : dict of str to tuple
        Field name -> ``(value in the checkpoint, value of this call)`` for every field that
        differs.
    path : str or None
        The checkpoint.
    """

    def __init__(self, message: str, fields: dict | None = None, path: str | None = None) -> None:
        super().__init__(message)
        self.fields = dict(fields or {})
        self.path = path
