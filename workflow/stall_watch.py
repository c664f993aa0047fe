"""Sims that hang: a running sim whose trajectory has not grown for ``sim.stall_min`` is stalled.

A hung engine (a deadlocked GPU driver, a stuck file system, a process stopped
by a signal) would otherwise hold its GPU until the job's walltime, a day on a
real campaign. The watch reads only file sizes, at most every quarter of
``stall_min`` on the coordinator's clock, so it costs one ``stat`` per running sim
a few times per ``stall_min``; a stall is found between ``stall_min`` and 1.25
``stall_min`` after the last growth. A sim's clock starts when it is first seen
running, so a slow start-up counts against it only from then.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from mummi.workflow.store import JobRecord


class StallWatch:
    """Which running sim jobs have a trajectory that stopped growing ``stall_s`` ago."""

    def __init__(self, stall_s: float, trajectory_of: Callable[[str], Path]) -> None:
        self.stall_s = stall_s
        self._trajectory_of = trajectory_of
        self._seen: dict[int, tuple[int, float]] = {}
        """Job id -> (trajectory size, when it was first seen at that size)."""
        self._next_check = -math.inf

    def due(self, now: float) -> bool:
        """Whether to look again (every ``stall_s / 4``); True starts the next wait."""
        if now < self._next_check:
            return False
        self._next_check = now + self.stall_s / 4
        return True

    def stalled(self, running: Iterable[JobRecord], now: float) -> list[JobRecord]:
        """The jobs among ``running`` whose trajectory has not grown for ``stall_s`` (``running``: every one)."""
        seen, stalled = {}, []
        for job in running:
            size = _size(self._trajectory_of(job.subject or ""))
            last = self._seen.get(job.id)
            if last is None or last[0] != size:
                seen[job.id] = (size, now)
                continue
            seen[job.id] = last
            if now - last[1] >= self.stall_s:
                stalled.append(job)
        self._seen = seen
        return stalled


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1
