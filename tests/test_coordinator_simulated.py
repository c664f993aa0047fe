"""The coordinator on the simulated backend: virtual days in seconds of wall time, faults injected, checked.

Each test runs a whole (small) campaign in-process on a few virtual nodes and
reads back the backend's history (``history.csv``) and the store.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from mummi.core.exit_codes import EXIT_OK, EXIT_RESUMABLE
from mummi.workflow.cli import run_main

DAY = 86400.0


def spec(tmp_path: Path, *, stop: dict[str, Any] | None = None, buffer: int = 4,
         feedback: dict[str, Any] | None = None, **simulated: Any) -> Path:  # fmt: skip
    data = {
        "campaign": {"name": "replay", "workdir": "run", "seed": 3, "stop": stop or {"max_sims": 40}},
        "resources": {
            "backend": "simulated", "nodes": 4, "cores_per_node": 16, "gpus_per_node": 4,
            "simulated": {"createsim": {"mean_min": 90.0}, "patches": {"per_frame": 20, "total": 20000},
                          **simulated},
        },
        "macro": {"resources": {"cores_per_task": 4, "walltime_min": 30 * 1440}},
        "sampler": {"warmup": 10, "checkpoint_interval_s": 3600},
        "createsim": {"engine": "mock", "buffer": buffer, "resources": {"cores_per_task": 4, "walltime_min": 120}},
        "sim": {"engine": "mock", "length_ns": 510.0,  # half a day at 1.02 µs/day
                "resources": {"gpus_per_task": 1, "walltime_min": 1440}},
        "analysis": {"resources": {"cores_per_task": 2, "walltime_min": 2 * 1440}},
        "feedback": feedback or {"enabled": False},
    }  # fmt: skip
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "replay.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def history(tmp_path: Path) -> list[dict[str, str]]:
    with open(tmp_path / "run" / "logs" / "simulated-backend" / "history.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def sims_done_once(tmp_path: Path) -> list[str]:
    """Every selection simulated exactly once (one successful sim job each), none made twice; their ids."""
    con = sqlite3.connect(tmp_path / "run" / "campaign.db")
    selections = con.execute("SELECT patch_id, sim_id, state FROM selections ORDER BY seq").fetchall()
    con.close()
    assert len({p for p, _, _ in selections}) == len(selections), "a patch was selected twice"
    done = Counter(row["subject"] for row in history(tmp_path)
                   if row["event"] == "end" and row["kind"] == "sim" and row["state"] == "done")  # fmt: skip
    assert all(n == 1 for n in done.values()), "a sim ran to its end twice"
    assert sorted(done) == sorted(s for _, s, state in selections if state == "done")
    return sorted(done)


def test_a_gpu_freed_by_a_sim_is_refilled_at_the_same_instant(tmp_path: Path) -> None:
    assert run_main([str(spec(tmp_path, buffer=16))]) == EXIT_OK  # a set-up sim is always ready
    assert len(sims_done_once(tmp_path)) == 40
    rows = history(tmp_path)
    sims = [r for r in rows if r["kind"] == "sim"]
    last_submit = max(float(r["time_s"]) for r in sims if r["event"] == "submit")
    submits = Counter(r["time_s"] for r in sims if r["event"] == "submit")
    ends = [r["time_s"] for r in sims if r["event"] == "end" and float(r["time_s"]) < last_submit]
    assert ends and all(submits[t] >= 1 for t in ends), "a sim slot was not refilled in the turn it was freed"
    # The new sim starts once the old one's analysis has read its last frames and freed its cores.
    lag = 60.0 * 1.0  # resources.simulated.analysis_lag_min
    started = sorted(float(r["time_s"]) for r in sims if r["event"] == "start")
    assert all(any(float(t) <= s <= float(t) + lag for s in started) for t in ends)
    analyses = {r["subject"]: r["node"] for r in rows if r["kind"] == "analysis" and r["event"] == "start"}
    assert all(analyses[r["subject"]] == r["node"] for r in sims if r["event"] == "start")  # in situ


def test_a_lost_node_takes_its_jobs_and_they_run_again_elsewhere(tmp_path: Path) -> None:
    assert run_main([str(spec(tmp_path, node_mtbf_h=48.0, node_repair_min=120.0))]) == EXIT_OK
    rows = history(tmp_path)
    lost = [r for r in rows if r["event"] == "end" and r["reason"].endswith("lost")]
    assert lost and any(r["event"] == "node_lost" for r in rows)
    assert len(sims_done_once(tmp_path)) == 40
    for victim in lost:
        later = [r for r in rows if r["subject"] == victim["subject"] and r["kind"] == victim["kind"]
                 and r["event"] == "start" and float(r["time_s"]) >= float(victim["time_s"])]  # fmt: skip
        assert later, f"{victim['kind']} of {victim['subject']} was not run again after its node was lost"


def test_a_hung_job_is_stopped_at_its_walltime_and_retried(tmp_path: Path) -> None:
    assert run_main([str(spec(tmp_path, hang_rate=0.1))]) == EXIT_OK
    rows = history(tmp_path)
    hung = [r for r in rows if r["event"] == "end" and "walltime" in r["reason"]]
    assert hung
    assert len(sims_done_once(tmp_path)) == 40


def test_allocations_end_and_each_rerun_resumes_with_nothing_lost_or_run_twice(tmp_path: Path) -> None:
    path = spec(tmp_path, allocation_min=720.0)
    codes = [run_main([str(path)]) for _ in range(12)]
    assert EXIT_OK in codes, codes
    runs = codes.index(EXIT_OK) + 1
    assert runs >= 3 and codes[: runs - 1] == [EXIT_RESUMABLE] * (runs - 1)
    assert len(sims_done_once(tmp_path)) == 40
    rows = history(tmp_path)
    incomplete = [r for r in rows if r["kind"] == "sim" and r["exit_code"] == str(EXIT_RESUMABLE)]
    assert incomplete, "no sim was stopped by an allocation's end"


def test_the_stop_conditions_in_campaign_time(tmp_path: Path) -> None:
    assert run_main([str(spec(tmp_path / "wall", stop={"wall_time_h": 6.0}))]) == EXIT_OK
    ends = [float(r["time_s"]) for r in history(tmp_path / "wall")]
    assert 6 * 3600 <= max(ends) < 6 * 3600 + 600  # virtual hours, in a second of wall time
    assert run_main([str(spec(tmp_path / "macro", stop={"macro_time_us": 2.0}))]) == EXIT_OK
    con = sqlite3.connect(tmp_path / "macro" / "run" / "campaign.db")
    (time_ns,) = con.execute("SELECT MAX(frame_time_ns) FROM patches").fetchone()
    con.close()
    assert 2000.0 <= time_ns < 2100.0


def test_the_same_spec_gives_the_same_history_byte_for_byte(tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert run_main([str(spec(tmp_path / name, fail_rate=0.05, hang_rate=0.02, node_mtbf_h=72.0))]) == EXIT_OK
    first, second = (tmp_path / n / "run" / "logs" / "simulated-backend" / "history.csv" for n in ("a", "b"))
    assert first.read_bytes() == second.read_bytes()


def test_the_replay_benchmark_reports_what_the_store_and_history_hold(tmp_path: Path) -> None:
    from mummi.core.spec_loader import load_spec
    from mummi.workflow.bench_replay import replay

    path = spec(tmp_path, stop={"max_sims": None, "wall_time_h": 48.0}, allocation_min=1440.0, fail_rate=0.1)
    figures = replay(path, load_spec(path))
    assert figures["runs"] >= 2 and figures["finished"] and figures["exit_codes"] == [EXIT_OK, EXIT_RESUMABLE]
    done = sims_done_once(tmp_path)
    assert figures["sims_done"] == len(done) == figures["sims_run_to_end"] > 0
    assert figures["sims_run_to_end_twice"] == 0
    assert 0.8 < figures["gpu_occupancy_after_rampup"] <= 1.0
    idle = figures["idle_after_rampup"]
    assert abs(figures["gpu_occupancy_after_rampup"] + idle["queued_in_backend"] + idle["none_ready"] - 1) < 1e-3
    assert 0 < figures["gpu_time_in_failed_attempts"] < 0.2
    assert figures["turns"] > 0 and figures["turn_wall_ms"]["p50_worst_run"] <= figures["turn_wall_ms"]["max"]


def test_feedback_rounds_heal_the_macro_models_mismatch_with_the_hidden_truth(tmp_path: Path) -> None:
    feedback = {"interval_sims": 10, "min_sims": 5, "start_h": 12.0, "damping": 0.5}
    assert run_main([str(spec(tmp_path, stop={"max_sims": None, "wall_time_h": 96.0}, feedback=feedback))]) == EXIT_OK
    con = sqlite3.connect(tmp_path / "run" / "campaign.db")
    rounds = con.execute("SELECT round, details, n_sims, parameter_version, distance FROM feedback_rounds"
                         " ORDER BY round").fetchall()  # fmt: skip
    done = [r[0] for r in con.execute("SELECT sim_id FROM selections WHERE state = 'done'")]
    con.close()
    assert len(rounds) >= 5
    assert json.loads(rounds[0][1])["campaign_time_s"] >= 12 * 3600  # feedback.start_h
    assert [r[3] for r in rounds] == list(range(2, len(rounds) + 2)), "parameter versions not contiguous"
    assert all(b[2] >= a[2] + 10 for a, b in zip(rounds, rounds[1:]))
    distances = [r[4] for r in rounds]
    assert distances[-1] < 0.5 * distances[0], distances
    table = (tmp_path / "run" / "feedback" / "rdf-table" / "sims.txt").read_text().split()
    assert set(table) <= set(done) and len(table) >= len(done) - 16  # all but those whose analysis was finishing


def test_split_into_allocations_the_campaign_makes_the_same_selections_and_totals(tmp_path: Path) -> None:
    figures = {}
    for name, split in (("whole", {}), ("split", {"allocation_min": 720.0})):
        path = spec(tmp_path / name, stop={"max_sims": None, "wall_time_h": 72.0},
                    patches={"per_frame": 20, "total": 1_000_000}, **split)  # fmt: skip
        codes = [run_main([str(path)])]
        while codes[-1] == EXIT_RESUMABLE and len(codes) < 20:
            codes.append(run_main([str(path)]))
        assert codes[-1] == EXIT_OK and (len(codes) >= 6 if split else len(codes) == 1), codes
        con = sqlite3.connect(tmp_path / name / "run" / "campaign.db")
        figures[name] = (
            con.execute("SELECT COUNT(*) FROM patches").fetchone()[0],
            con.execute("SELECT state, COUNT(*) FROM selections GROUP BY state ORDER BY state").fetchall(),
            [r[0] for r in con.execute("SELECT patch_id FROM selections ORDER BY seq")],
        )
        con.close()
    assert figures["split"] == figures["whole"]
