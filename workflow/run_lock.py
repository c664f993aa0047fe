"""One coordinator per campaign: an exclusive lock on ``WORKDIR/.mummi-run.lock`` while its store is open.

Two coordinators on one campaign would both select, submit and record: sims run
twice, selections made twice. The lock is a POSIX record lock (``lockf``, which
NFS and Lustre honour), so it dies with its process, however the process ends: a
coordinator killed without warning never blocks the next. The file names its
holder, for the message a second ``mummi-run`` gets.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

LOCK_NAME = ".mummi-run.lock"

_held: dict[Path, list[int]] = {}
"""Locks this process holds, by workdir: [file descriptor, holds]. POSIX locks belong to the process, so a
second hold in one process shares the first, and the lock goes with the last release."""


class CampaignBusy(Exception):
    """Another process runs this campaign."""


def hold(root: str | Path) -> Callable[[], None]:
    """Take the campaign's lock in ``root`` (an existing folder); returns the function that releases it."""
    root = Path(root).resolve()
    if root in _held:
        _held[root][1] += 1
        return lambda: _release(root)
    path = root / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = path.read_text(encoding="utf-8", errors="replace").strip() or "a process"
        os.close(fd)
        raise CampaignBusy(
            f"{root}: another mummi-run ({holder}) is running this campaign; wait for it to stop, or stop it "
            "(SIGTERM: it stops resumably), then run again"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
    _held[root] = [fd, 1]
    return lambda: _release(root)


def _release(root: Path) -> None:
    held = _held.get(root)
    if held is None:
        return
    held[1] -= 1
    if held[1] == 0:
        del _held[root]
        os.close(held[0])
