"""A seeded sample of the reliability benchmark: a dry run's coordinator killed at random moments loses nothing."""

from __future__ import annotations

import argparse

import pytest

from mummi.workflow.bench_reliability import run


@pytest.mark.slow
def test_coordinator_killed_at_random_moments_and_resumed_keeps_every_invariant() -> None:
    figures = run(argparse.Namespace(trials=2, kills_per_campaign=2, seed=7, max_delay_s=12.0, timeout_s=600.0))
    assert figures["problems"] == []
    assert figures["invariant_violations"] == 0 and figures["corrupted"] == 0
    assert figures["trials"] == 2 and figures["faults_injected"].get("coordinator SIGKILL", 0) >= 1
    assert figures["resumed"] >= 1 and figures["files_checked"] > 100
