"""The whole loop, end to end, in dry-run mode: macro model, encoder, sampler, mock sims, analysis, feedback.

Also the restart guarantees: after SIGTERM (exit 75) or a SIGKILL of the
coordinator at a random moment, running ``mummi-run`` again completes the
campaign; every selected patch is simulated exactly once and no file is corrupt.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from campaign_helpers import MAX_SIMS, SPEC, check_campaign, db_count, finish, mummi


@pytest.fixture
def campaign(tmp_path: Path) -> Path:
    (tmp_path / "tiny.yaml").write_text(SPEC)
    return tmp_path


@pytest.mark.slow
def test_dry_run_completes_the_whole_loop(finished_dry_run):
    folder, code, out = finished_dry_run
    assert code == 0, out[-4000:]
    run = folder / "run"
    result = check_campaign(run)
    assert (run / "feedback" / "feedback.png").stat().st_size > 1000
    status = subprocess.run(
        [
            sys.executable,
            "-c",
            "from mummi.workflow.cli import status_main; raise SystemExit(status_main())",
            str(run),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    figures = json.loads(status.stdout)
    assert figures["sims"]["done"] == result["sims"] and figures["patches"]["total"] > MAX_SIMS
    assert "summary" in out.lower()


@pytest.mark.slow
def test_sigterm_then_sigkill_at_random_moments_lose_nothing(campaign):
    rng = random.Random(int(os.environ.get("MUMMI_TEST_SEED", "3")))
    db = campaign / "run" / "campaign.db"

    first = mummi("tiny.yaml", "--dry-run", cwd=campaign)
    deadline = time.monotonic() + 240
    while db_count(db, "SELECT COUNT(*) FROM selections") < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    live = subprocess.run(
        [
            sys.executable,
            "-c",
            "from mummi.workflow.cli import status_main; raise SystemExit(status_main())",
            str(campaign / "run"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert live.returncode == 0 and json.loads(live.stdout)["sims"]["total"] >= 2  # mummi-status on a running campaign
    time.sleep(rng.uniform(0.0, 2.0))
    first.send_signal(signal.SIGTERM)
    code, out = finish(first)
    assert code == 75, out[-4000:]

    second = mummi("tiny.yaml", "--dry-run", cwd=campaign)
    target = db_count(db, "SELECT COUNT(*) FROM selections") + 2
    while db_count(db, "SELECT COUNT(*) FROM selections") < target and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(rng.uniform(0.0, 3.0))
    os.kill(second.pid, signal.SIGKILL)  # the coordinator only: its jobs live on in their own sessions
    second.communicate(timeout=60)
    in_flight = db_count(db, "SELECT COUNT(*) FROM jobs WHERE state IN ('pending', 'submitted', 'running')")
    assert in_flight > 0, "the kill should land while jobs are in flight"

    code, out = finish(mummi("tiny.yaml", "--dry-run", cwd=campaign))
    assert code == 0, out[-4000:]
    assert "resuming campaign" in out
    check_campaign(campaign / "run")


@pytest.mark.slow
def test_each_allocation_ends_resumably_and_reruns_finish_the_campaign(campaign):
    # 9 s of work per allocation: the pre-campaign, the encoder training and 8 sims need several.
    spec = SPEC.replace(
        "resources: {cores_per_node: 8, gpus_per_node: 2}",
        "resources: {cores_per_node: 8, gpus_per_node: 2, allocation_walltime_min: 0.35}",
    )
    (campaign / "tiny.yaml").write_text(spec + "checkpoint: {end_margin_min: 0.2}\n")
    codes = []
    while not codes or codes[-1] != 0:
        assert len(codes) < 20, f"no end in sight: exit codes {codes}"
        code, out = finish(mummi("tiny.yaml", "--dry-run", cwd=campaign))
        assert code in (0, 75), out[-3000:]
        assert code == 0 or "allocation ending" in out
        codes.append(code)
    assert codes[0] == 75, codes
    check_campaign(campaign / "run", feedback=False)


@pytest.mark.slow
def test_a_failing_job_is_retried_then_its_sim_fails_with_its_log(campaign):
    bad = campaign / "bad_truth.json"
    bad.write_text("{not json")
    spec = SPEC.replace("stop: {max_sims: 8", "stop: {max_sims: 2")
    spec = spec.replace(
        "  mock: {frames: 40, steps_per_frame: 10}",
        f"  mock: {{frames: 40, steps_per_frame: 10, truth: {bad}}}\n  retry: {{max_retries: 1, backoff_s: 0.2}}",
    )
    spec = spec.replace(
        "createsim: {lipids_per_cell: 4, buffer: 1}",
        "createsim: {lipids_per_cell: 4, buffer: 1, retry: {max_retries: 1, backoff_s: 0.2}}",
    )
    (campaign / "tiny.yaml").write_text(spec)
    code, out = finish(mummi("tiny.yaml", "--dry-run", cwd=campaign))
    assert code == 0, out[-3000:]
    con = sqlite3.connect(campaign / "run" / "campaign.db")
    assert con.execute("SELECT COUNT(*) FROM selections WHERE state = 'failed'").fetchone()[0] >= 2
    failures = [f for (f,) in con.execute("SELECT failures FROM jobs WHERE state = 'failed'")]
    assert failures and max(failures) == 1, "each failing job gets max_retries = 1 more attempt"
    reasons = [
        json.loads(d).get("reason", "")
        for (d,) in con.execute("SELECT data FROM events WHERE kind = 'sim.state'")
        if json.loads(d).get("to") == "failed"
    ]
    assert reasons and all(".log" in r and "failed 2 times" in r for r in reasons)


def _sim_processes(run: Path) -> dict[str, int]:
    """Running mock sim processes of this campaign: sim id -> pid."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"mummi.jobs.sim" in argv and b"--sim-dir" in argv:
            sim_dir = Path(argv[argv.index(b"--sim-dir") + 1].decode())
            if sim_dir.parent == run / "sims":
                found[sim_dir.name] = int(proc.name)
    return found


@pytest.mark.slow
def test_a_hung_sim_is_cancelled_once_its_trajectory_stops_growing_and_retried(campaign):
    spec = SPEC.replace("stop: {max_sims: 8", "stop: {max_sims: 2")
    spec = spec.replace(
        "  mock: {frames: 40, steps_per_frame: 10}",
        "  mock: {frames: 400, steps_per_frame: 10}\n  stall_min: 0.25\n  retry: {max_retries: 2, backoff_s: 0.2}",
    )
    (campaign / "tiny.yaml").write_text(spec)
    run = campaign / "run"
    proc = mummi("tiny.yaml", "--dry-run", cwd=campaign)
    deadline, hung = time.monotonic() + 300, None
    while hung is None and time.monotonic() < deadline and proc.poll() is None:
        for sim_id, pid in _sim_processes(run).items():
            trajectory = run / "sims" / sim_id / "md.xtc"
            if trajectory.exists() and trajectory.stat().st_size > 0:
                os.kill(pid, signal.SIGSTOP)  # hung: alive, holding its GPU, writing nothing
                hung = sim_id
                break
        time.sleep(0.1)
    assert hung is not None, "no sim was caught running"
    code, out = finish(proc)
    assert code == 0, out[-3000:]
    assert f"sim {hung} stalled" in out
    check_campaign(run, n_sims=2, feedback=False)
    con = sqlite3.connect(run / "campaign.db")
    assert con.execute("SELECT COUNT(*) FROM events WHERE kind = 'sim.stalled' AND subject = ?", (hung,)).fetchone()[0]
    (failures,) = con.execute("SELECT failures FROM jobs WHERE kind = 'sim' AND subject = ?", (hung,)).fetchone()
    assert failures == 1, "a stalled sim is retried as a failure"
    assert con.execute("SELECT state FROM selections WHERE sim_id = ?", (hung,)).fetchone()[0] == "done"


def _processes_of(run: Path) -> list[int]:
    """Every process whose command line names the campaign's folder (the jobs and their runners)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if str(run).encode() in (proc / "cmdline").read_bytes() and int(proc.name) != os.getpid():
                pids.append(int(proc.name))
        except (OSError, ValueError):
            continue
    return pids


@pytest.mark.slow
def test_a_hard_kill_whose_scheduler_forgot_the_jobs_is_resumed_from_the_outputs(campaign):
    """The allocation dies without warning and the backend's records with it: a restarted coordinator knows
    nothing of its jobs; a sim folder with a valid done record is done, everything else runs again."""
    (campaign / "tiny.yaml").write_text(SPEC.replace("stop: {max_sims: 8", "stop: {max_sims: 4"))
    run, db = campaign / "run", campaign / "run" / "campaign.db"
    first = mummi("tiny.yaml", "--dry-run", cwd=campaign)
    deadline = time.monotonic() + 300
    while db_count(db, "SELECT COUNT(*) FROM jobs WHERE kind = 'sim' AND state = 'running'") < 2:
        assert first.poll() is None and time.monotonic() < deadline, finish(first)[1][-3000:]
        time.sleep(0.1)
    os.kill(first.pid, signal.SIGKILL)
    first.communicate(timeout=60)
    con = sqlite3.connect(db)
    running = [s for (s,) in con.execute("SELECT subject FROM jobs WHERE kind = 'sim' AND state = 'running'")]
    con.close()
    deadline = time.monotonic() + 120  # a sim finishes while nobody watches
    while not any((run / "sims" / s / "sim.status.json").exists() for s in running):
        assert time.monotonic() < deadline, "no running sim finished"
        time.sleep(0.1)
    for pid in _processes_of(run):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(run / "logs" / "local-backend")
    code, out = finish(mummi("tiny.yaml", "--dry-run", cwd=campaign))
    assert code == 0, out[-4000:]
    check_campaign(run, n_sims=4, feedback=False)
    con = sqlite3.connect(db)
    from_outputs = [s for (s,) in con.execute("SELECT subject FROM events WHERE kind = 'job.done_from_outputs'")]
    assert set(from_outputs) & set(running), "a forgotten sim whose folder says done is done"
    assert con.execute("SELECT MAX(failures) FROM jobs").fetchone()[0] == 0, "forgotten jobs spend no retry"
