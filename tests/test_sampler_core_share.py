"""The sampler's parallel loops leave the cores that other processes use to them."""

from __future__ import annotations

import time
from pathlib import Path

from mummi.sampler.bench_load import busy_cores
from mummi.sampler.core_share import CoreShare


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "R"
    except OSError:
        return False


def test_busy_cores_spins_in_other_processes_and_stops_them() -> None:
    with busy_cores(1) as spinners:
        time.sleep(0.2)
        assert len(spinners) == 1 and _running(spinners[0].pid)
    assert spinners[0].poll() is not None


def test_a_core_kept_busy_elsewhere_is_left_to_it() -> None:
    share = CoreShare()
    with busy_cores(1):
        share.taken_by_others()  # start the window with the spinner running
        time.sleep(0.5)
        taken = share.taken_by_others()
        threads = share.threads(share.cores)
    assert taken >= 0.7, f"one spinning process should take about a core, measured {taken:.2f}"
    assert threads <= max(1, share.cores - 1)


def test_the_limit_and_one_thread_bound_the_count() -> None:
    share = CoreShare()
    assert 1 <= share.threads(1) == 1
    assert 1 <= share.threads(10**6) <= share.cores
