"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Write to a temporary name in the same directory, flush and fsync, then
``os.replace`` it into place (atomic on POSIX within one file system).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | Path, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    The caller writes the temporary file (with any library that takes a path);
    if the block raises, the temporary file is removed and ``path`` is untouched.
    ``durable=False`` skips the fsyncs: still atomic for any process that dies,
    but not across a crash of the machine itself (for records that die with it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(path.parent)


def atomic_write(path: str | Path, writer: Callable[[Path], object], *, durable: bool = True) -> Path:
    """Call ``writer(tmp_path)`` and move the result into place atomically."""
    with atomic_path(path, durable=durable) as tmp:
        writer(tmp)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, *, durable: bool = True) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), durable=durable)


def atomic_savez(path: str | Path, **arrays: Any) -> Path:
    """``np.savez(path, **arrays)``, atomically; ``path`` keeps its name (no ``.npz`` is appended)."""
    return _savez(path, arrays, durable=True)


def atomic_savez_unsynced(path: str | Path, **arrays: Any) -> Path:
    """:func:`atomic_savez` without the fsyncs (``durable=False``): for files that can be made again."""
    return _savez(path, arrays, durable=False)


def _savez(path: str | Path, arrays: dict[str, Any], *, durable: bool) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    return atomic_write(path, write, durable=durable)


def numbered(directory: str | Path, name: re.Pattern[str]) -> list[int]:
    """The numbers (``name``'s first group) of the files in ``directory`` whose whole name matches, ascending:
    the versions of a file written under a new numbered name each time."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := name.fullmatch(p.name)))


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, for manifests that prove a file set is whole."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
