"""The sampler's parallel loops leave the cores that other processes use to them."""

from __future__ import annotations

import time
from pathlib import Path

import numba
import numpy as np
import pytest

from mummi.core.spec import SamplerSettings
from mummi.sampler import dynim, index
from mummi.sampler.bench_load import busy_cores
from mummi.sampler.core_share import CoreShare
from mummi.sampler.kernels import sampler_threads


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


def test_every_parallel_phase_of_the_sampler_runs_on_the_threads_the_cores_leave(monkeypatch) -> None:
    """With every core taken by others, no compiled parallel loop of adds, selections or weights may run on
    more than one thread (a loop waits at its end for a descheduled thread)."""
    sampler = dynim.DynimSampler(6, SamplerSettings(k=5, candidate_cap=3000, warmup=2))
    seen: dict[str, set[int]] = {}

    def counted(module, name):
        original = getattr(module, name)

        def call(*args, **kwargs):
            seen.setdefault(name, set()).add(numba.get_num_threads())
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, call)

    for name in ("spatial_order", "block_shells", "greedy_picks", "absorb", "grouped_knn"):
        counted(dynim, name)
    counted(index, "grouped_knn")
    monkeypatch.setattr(CoreShare, "threads", lambda self, limit: 1)
    previous = numba.get_num_threads()
    try:
        if sampler_threads(2) < 2:
            pytest.skip("numba has one thread here")
        rng = np.random.default_rng(0)
        for b in range(4):
            sampler.add_candidates([f"p{b}-{i}" for i in range(2000)], rng.normal(size=(2000, 6)))
            sampler.select(300)
        sampler.weight_array()
    finally:
        sampler_threads(previous)
    assert {"spatial_order", "block_shells", "greedy_picks", "grouped_knn"} <= seen.keys()
    assert all(counts == {1} for counts in seen.values()), seen
