"""The cores the sampler's compiled loops can use now: their thread limit, less what other processes are using.

A parallel loop with a thread per core waits at its end for the slowest thread, and
a thread that shares its core with another process runs at half speed or is
descheduled for a whole time slice: the coordinator's node is never idle in a
campaign (in situ analyses, the macro model, other users). So before each parallel
phase the sampler asks :meth:`CoreShare.threads`: the CPU time that other processes
used since the last measurement (``/proc/stat`` less this process's own time) says
how many cores are taken; the loops get the rest, at least one. Where ``/proc/stat``
does not exist, the limit is used as it is.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PROC_STAT = Path("/proc/stat")
MIN_WINDOW_S = 0.05  # shorter windows are too coarse for clock ticks of 10 ms


def _cpu_busy_s() -> float | None:
    """CPU seconds spent busy by the whole machine since boot (None without /proc/stat)."""
    try:
        with PROC_STAT.open() as stat:  # the first line only: the whole file is long (a count per interrupt)
            fields = stat.readline().split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


class CoreShare:
    """Thread counts for the sampler's parallel loops that leave the cores other processes use to them."""

    def __init__(self) -> None:
        self.cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self._taken = 0.0  # cores other processes used in the last window
        self._mark = self._sample()

    def _sample(self) -> tuple[float, float | None, float]:
        return time.monotonic(), _cpu_busy_s(), _own_cpu_s()

    def taken_by_others(self) -> float:
        """Cores other processes kept busy since the last measurement (the previous figure within 50 ms)."""
        if time.monotonic() - self._mark[0] < MIN_WINDOW_S:
            return self._taken
        now = self._sample()
        (t0, busy0, own0), (t1, busy1, own1) = self._mark, now
        if busy0 is None or busy1 is None:
            return 0.0
        self._taken = max(0.0, ((busy1 - busy0) - (own1 - own0)) / (t1 - t0))
        self._mark = now
        return self._taken

    def threads(self, limit: int) -> int:
        """At most ``limit`` threads, one per core that other processes leave free, at least one."""
        free = self.cores - round(self.taken_by_others())
        return max(1, min(limit, free))
