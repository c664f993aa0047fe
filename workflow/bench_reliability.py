"""``mummi-bench reliability``: a dry-run campaign's coordinator killed at random moments, resumed, checked.

Each trial starts ``mummi-run --dry-run`` on a tiny campaign (the pre-campaign,
the encoder training, createsims, sims and analyses, feedback rounds), waits a
random time drawn from the seed, and SIGKILLs the coordinator alone (its jobs
live on in their own sessions, as on a real machine), then checks every
invariant of :mod:`mummi.workflow.invariants` on what it left. A campaign takes
``--kills-per-campaign`` trials, then runs to its end and is checked again.
Reported: trials, resumed runs, invariant violations and corrupted files (both
must be 0), files checked, and the faults injected by kind.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from mummi.workflow.invariants import Report, check

TINY_SPEC = """
campaign:
  name: {name}
  workdir: run
  seed: {seed}
  stop: {{max_sims: {max_sims}, wall_time_h: {wall_time_h}}}
resources: {{cores_per_node: 8, gpus_per_node: 2}}
macro: {{output_interval_ns: 200.0, reload_interval_ns: 400.0, checkpoint_interval_ns: 400.0, pace_ns_per_s: 400.0}}
encoder:
  training: {{pre_campaign_ns: 2000.0, epochs: 4, patience: 2}}
sampler: {{warmup: 2, checkpoint_interval_s: 2}}
createsim: {{lipids_per_cell: 4, buffer: 1}}
sim:
  length_ns: 2.0
  mock: {{frames: 40, steps_per_frame: 10}}
feedback: {{interval_sims: 3, min_sims: 3}}
"""
"""A dry run of a few minutes: the pre-campaign, the encoder training, sims, analyses and feedback rounds (the tests'
campaign too)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, default=20, help="coordinator kills in all")
    parser.add_argument("--kills-per-campaign", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-delay-s", type=float, default=20.0, help="kill within this long of a run's start")
    parser.add_argument("--timeout-s", type=float, default=900.0, help="the longest a campaign may take to finish")


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    totals: Counter[str] = Counter()
    faults: Counter[str] = Counter()
    problems: list[str] = []
    campaigns = 0
    while totals["trials"] < args.trials:
        with tempfile.TemporaryDirectory(prefix="mummi-reliability-") as tmp:
            root = Path(tmp)
            spec = TINY_SPEC.format(name="reliability", seed=args.seed + campaigns, max_sims=8, wall_time_h=0.5)
            (root / "campaign.yaml").write_text(spec)
            campaigns += 1
            kills = min(args.kills_per_campaign, args.trials - totals["trials"])
            for _ in range(kills):
                killed, out = _kill_after(_start(root), rng.uniform(0.5, args.max_delay_s))
                totals["resumed"] += out.count("resuming campaign")
                totals["trials"] += 1
                faults["coordinator SIGKILL" if killed else "none (the campaign finished first)"] += 1
                _tally(check(root / "run"), totals, problems)
            proc = _start(root)
            out, _ = proc.communicate(timeout=args.timeout_s)
            totals["resumed"] += out.count("resuming campaign")
            if proc.returncode != 0:
                problems.append(f"campaign {campaigns} ended with exit {proc.returncode}: {out[-2000:]}")
            _tally(check(root / "run"), totals, problems)
    return {
        "trials": totals["trials"],
        "campaigns": campaigns,
        "resumed": totals["resumed"],
        "invariant_violations": totals["violations"],
        "files_checked": totals["files"],
        "corrupted": totals["corrupted"],
        "faults_injected": dict(faults),
        "problems": problems[:20],
    }


def _start(root: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mummi.workflow.cli", "campaign.yaml", "--dry-run"],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def _kill_after(proc: subprocess.Popen[str], delay_s: float) -> tuple[bool, str]:
    """SIGKILL the coordinator ``delay_s`` after its start (False: it ended before); and what it printed."""
    deadline = time.monotonic() + delay_s
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    return killed, out


def _tally(report: Report, totals: Counter[str], problems: list[str]) -> None:
    totals["violations"] += len(report.violations)
    totals["corrupted"] += len(report.corrupted)
    totals["files"] += report.files_checked
    problems.extend(report.violations + report.corrupted)
