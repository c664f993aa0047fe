"""Helpers of the end-to-end campaign tests: a tiny campaign spec, running mummi-run, and the end-of-campaign checks."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import MDAnalysis as mda
import numpy as np

from mummi.analysis.rdf import RDFCounts
from mummi.core import simdir
from mummi.workflow.bench_reliability import TINY_SPEC

MAX_SIMS = 8

SPEC = TINY_SPEC.format(name="tiny", seed=11, max_sims=MAX_SIMS, wall_time_h=0.2)


def mummi(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mummi.workflow.cli", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen, timeout_s: float = 400) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout_s)
    return proc.returncode, out


def db_count(db: Path, sql: str) -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            return int(con.execute(sql).fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def check_campaign(run: Path, n_sims: int = MAX_SIMS, feedback: bool = True) -> dict:
    """The guarantees of a finished campaign, asserted from its files and store."""
    con = sqlite3.connect(run / "campaign.db")
    selections = con.execute("SELECT patch_id, sim_id, state FROM selections ORDER BY seq").fetchall()
    assert len({p for p, _, _ in selections}) == len(selections), "a patch was selected twice"
    done = [s for _, s, state in selections if state == "done"]
    assert len(done) >= n_sims
    assert sorted(p.name for p in (run / "sims").iterdir()) == sorted(s for _, s, _ in selections)
    for sim_id in done:
        sim_dir = run / "sims" / sim_id
        assert simdir.is_done(sim_dir, "sim") and simdir.is_done(sim_dir, "createsim")
        times = [
            ts.time
            for ts in mda.Universe(str(sim_dir / simdir.EQ_STRUCTURE), str(sim_dir / simdir.TRAJECTORY)).trajectory
        ]
        assert len(times) == len(set(times)) and np.all(np.diff(times) > 0), f"{sim_id}: duplicate or unordered frames"
        successes = (
            con.execute(
                "SELECT COUNT(*) FROM jobs WHERE kind = 'sim' AND subject = ? AND state = 'done'", (sim_id,)
            ).fetchone()[0]
            + con.execute(  # a forgotten job whose folder says done finished too
                "SELECT COUNT(*) FROM events WHERE kind = 'job.done_from_outputs' AND subject = ? "
                "AND json_extract(data, '$.stage') = 'sim'",
                (sim_id,),
            ).fetchone()[0]
        )
        assert successes == 1, f"{sim_id} was simulated {successes} times"
        counts = RDFCounts.load(sim_dir / simdir.RDF_COUNTS)
        assert 0 < counts.frames_done <= len(times)
    rounds = con.execute(
        "SELECT round, distance, parameter_version FROM feedback_rounds WHERE finished_at IS NOT NULL"
    ).fetchall()
    con.close()
    assert rounds or not feedback, "no feedback round ran"
    for f in sorted((run / "feedback").glob("round-*.npz")):
        np.load(f, allow_pickle=False)["g_md"]
    return {"sims": len(done), "rounds": rounds}


def kill_mid_campaign_and_resume(campaign: Path, spec_name: str = "tiny.yaml") -> Path:
    """Start the campaign, SIGKILL its coordinator (only: its jobs live on) once it has selected patches and
    has jobs in flight, run it again to the end, and check the result; returns the campaign's run folder."""
    run, db = campaign / "run", campaign / "run" / "campaign.db"
    first = mummi(spec_name, cwd=campaign)
    deadline = time.monotonic() + 300
    while db_count(db, "SELECT COUNT(*) FROM selections") < 3 and time.monotonic() < deadline:
        assert first.poll() is None, finish(first)[1][-3000:]
        time.sleep(0.2)
    os.kill(first.pid, signal.SIGKILL)
    first.communicate(timeout=60)
    in_flight = db_count(db, "SELECT COUNT(*) FROM jobs WHERE state IN ('submitted', 'running')")
    assert in_flight > 0, "the kill should land while jobs are in flight"
    code, out = finish(mummi(spec_name, cwd=campaign))
    assert code == 0, out[-4000:]
    assert "resuming campaign" in out
    check_campaign(run)
    assert db_count(db, "SELECT COUNT(*) FROM jobs WHERE state = 'failed'") == 0, "no job failed"
    return run


def events(db: Path, kind: str) -> list[tuple[str | None, str]]:
    """(subject, data) of the store's events of ``kind``, read-only; empty while there is no store."""
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("SELECT subject, data FROM events WHERE kind = ? ORDER BY id", (kind,)).fetchall()
    except sqlite3.Error:
        return []
    finally:
        con.close()


def follow_chain(db: Path, cancel: Callable[[list[str]], object], timeout_s: float = 900) -> list[str]:
    """Wait until a chained campaign stops for good, then ``cancel`` its allocations; their ids, follow-ups last."""
    deadline = time.monotonic() + timeout_s
    try:
        while not any('"resumable": false' in data for _, data in events(db, "campaign.stopped")):
            assert time.monotonic() < deadline, f"the chain did not finish: {events(db, 'campaign.stopped')}"
            time.sleep(2)
    finally:
        chained = [subject for subject, _ in events(db, "campaign.chained") if subject]
        cancel(chained)
    return chained
