"""A busy node for benchmarks: ``busy_cores(n)`` keeps n cores busy with a plain CPU loop in other processes."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from subprocess import Popen

SPIN = "while True:\n    pass\n"


@contextlib.contextmanager
def busy_cores(n: int) -> Iterator[list[Popen]]:
    """Run the body while ``n`` processes spin (each one core's worth of plain Python arithmetic)."""
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(n)]
    try:
        time.sleep(0.2 if n else 0.0)  # let them start spinning
        yield spinners
    finally:
        for p in spinners:
            p.kill()
        for p in spinners:
            p.wait()
