"""The campaign invariants hold after a campaign, and each kind of damage is caught."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from test_coordinator_simulated import spec

from mummi.core.exit_codes import EXIT_OK
from mummi.workflow.cli import run_main
from mummi.workflow.invariants import check


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("invariants")
    feedback = {"interval_sims": 10, "min_sims": 5}
    assert run_main([str(spec(root, stop={"max_sims": None, "wall_time_h": 48.0}, feedback=feedback))]) == EXIT_OK
    return root / "run"


def damaged(finished: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    return run


def test_a_finished_campaign_holds_every_invariant(finished: Path) -> None:
    report = check(finished)
    assert report.ok, report.violations + report.corrupted
    assert report.files_checked > 100


def test_a_truncated_file_is_reported_corrupted(finished: Path, tmp_path: Path) -> None:
    run = damaged(finished, tmp_path)
    victim = sorted((run / "feedback").glob("round-*.npz"))[0]
    victim.write_bytes(victim.read_bytes()[:200])
    status = sorted((run / "sims").glob("*/sim.status.json"))[0]
    status.write_text('{"state": "do')
    report = check(run)
    assert {Path(c.split(":")[0]) for c in report.corrupted} == {victim, status}
    (run / "sims" / f".{victim.name}.tmp-123").write_bytes(b"half")  # an interrupted atomic write: not counted
    before = check(run)
    assert len(before.corrupted) == 2
    status.chmod(0o666)
    assert set(check(run).violations) - set(before.violations) == {f"{status}: writable by any user"}


def test_a_sim_run_twice_and_a_lost_selection_are_violations(finished: Path, tmp_path: Path) -> None:
    run = damaged(finished, tmp_path)
    con = sqlite3.connect(run / "campaign.db")
    (sim_id,) = con.execute("SELECT sim_id FROM selections WHERE state = 'done' LIMIT 1").fetchone()
    con.execute("INSERT INTO jobs (kind, subject, state, command, resources, created_at, updated_at)"
                " SELECT kind, subject, state, command, resources, created_at, updated_at FROM jobs"
                " WHERE kind = 'sim' AND subject = ? AND state = 'done'", (sim_id,))  # fmt: skip
    con.execute("DELETE FROM selections WHERE seq = (SELECT MAX(seq) FROM selections)")
    con.commit()
    con.close()
    violations = check(run).violations
    assert any(f"{sim_id}: simulated 2 times" in v for v in violations)
    assert any("the recovered sampler selected" in v for v in violations)


def test_feedback_rounds_must_be_contiguous(finished: Path, tmp_path: Path) -> None:
    run = damaged(finished, tmp_path)
    con = sqlite3.connect(run / "campaign.db")
    con.execute("DELETE FROM feedback_rounds WHERE round = 2")
    con.commit()
    con.close()
    assert any("feedback rounds not numbered" in v for v in check(run).violations)
