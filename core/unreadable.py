"""The one error every file reader raises for a file that is there but is not what it should be.

A truncated HDF5 or npz file, a JSON record cut short, an array of the wrong
shape: libraries report these with a dozen exception types (``OSError`` from
HDF5, ``BadZipFile``, ``zlib.error``, ``EOFError``, ``KeyError``, ``ValueError``,
...). Readers wrap their parsing in :func:`reading`, so callers handle one error,
whose message names the file and what it should have been. A file that is
missing or that this process may not read is the file system's business and
keeps its own ``OSError``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


class UnreadableFileError(ValueError):
    """A file that cannot be what it should be: truncated, corrupt, of another kind or shape."""


@contextlib.contextmanager
def reading(path: str | Path, what: str) -> Iterator[None]:
    """Raise :class:`UnreadableFileError` naming ``path`` and ``what`` for anything the block raises on bad content."""
    try:
        yield
    except (UnreadableFileError, FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as err:  # libraries raise many kinds of error on malformed files
        raise UnreadableFileError(f"{path}: not a readable {what} ({type(err).__name__}: {err})") from err
