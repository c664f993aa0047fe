"""A campaign whose disk fills: it stops resumably (exit 75) naming the path, loses nothing, and resumes once freed.

The campaign runs in a small tmpfs of its own (mounting one needs root, as in CI);
a file filling the disk arrives while sims run.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from campaign_helpers import SPEC, check_campaign, db_count, finish, mummi

from mummi.core.exit_codes import EXIT_RESUMABLE
from mummi.workflow.invariants import check

RESERVE_MB, HEADROOM_MB = 60, 30
RUNNING_SIMS = "SELECT COUNT(*) FROM jobs WHERE kind = 'sim' AND state = 'running'"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _free_mb(path: Path) -> float:
    fs = os.statvfs(path)
    return fs.f_bavail * fs.f_frsize / 2**20


def _fill(filler: Path) -> None:
    """Take every free block (the campaign writes meanwhile), so that the next write anywhere fails with ENOSPC."""
    with open(filler, "wb") as fh:
        block = 2**20
        while block >= 4096:
            try:
                os.posix_fallocate(fh.fileno(), os.fstat(fh.fileno()).st_size, block)
            except OSError:
                block //= 2


def _start_until_a_sim_runs(disk: Path, min_free_mb: int) -> subprocess.Popen:
    """Start the tiny campaign in ``disk``, reserving ``min_free_mb``, and wait until one of its sims runs."""
    spec = SPEC.replace("  workdir: run\n", f"  workdir: run\n  min_free_mb: {min_free_mb}\n")
    (disk / "tiny.yaml").write_text(spec)
    proc = mummi("tiny.yaml", "--dry-run", cwd=disk)
    deadline = time.monotonic() + 300
    while db_count(disk / "run" / "campaign.db", RUNNING_SIMS) < 1:
        assert proc.poll() is None and time.monotonic() < deadline, finish(proc)[1][-3000:]
        time.sleep(0.2)
    return proc


def _assert_intact(run: Path) -> None:
    report = check(run)
    assert not report.violations and not report.corrupted, report


def _resume_to_the_end(disk: Path) -> str:
    """Run the stopped campaign in ``disk`` again, check that it finishes whole, and return its output."""
    code, out = finish(mummi("tiny.yaml", "--dry-run", cwd=disk))
    assert code == 0, out[-3000:]
    check_campaign(disk / "run", feedback=False)
    assert not check(disk / "run").violations
    return out


@pytest.mark.slow
def test_a_full_disk_stops_the_campaign_resumably_and_it_resumes_once_space_is_freed(small_disk: Path) -> None:
    proc = _start_until_a_sim_runs(small_disk, RESERVE_MB)
    filler = small_disk / "filler"
    with open(filler, "wb") as fh:  # leaves HEADROOM_MB free: below the reserve, room for the jobs to stop
        fh.truncate(0)
        os.posix_fallocate(fh.fileno(), 0, int((_free_mb(small_disk) - HEADROOM_MB) * 2**20))
    code, out = finish(proc)
    assert code == EXIT_RESUMABLE, out[-3000:]
    assert "disk nearly full" in out and str(small_disk / "run") in out and "min_free_mb" in out
    _assert_intact(small_disk / "run")
    filler.unlink()
    assert "resuming campaign" in _resume_to_the_end(small_disk)


@pytest.mark.slow
def test_a_write_that_finds_no_space_stops_the_campaign_with_exit_75_and_nothing_corrupted(small_disk: Path) -> None:
    proc = _start_until_a_sim_runs(small_disk, 0)
    filler = small_disk / "filler"
    _fill(filler)
    code, out = finish(proc)
    assert code == EXIT_RESUMABLE, out[-3000:]
    assert "no space left" in out, out[-3000:]
    filler.unlink()
    _assert_intact(small_disk / "run")
    _resume_to_the_end(small_disk)
