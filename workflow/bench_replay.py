"""``mummi-bench replay``: the Sierra campaign replayed on the simulated backend, measured.

Runs ``mummi-run`` (in this process) on ``--spec`` (default: the packaged
``sierra-sim.yaml``), optionally shortened (``--days``), resized (``--nodes``)
or split into allocations of ``--allocation-h`` hours, each run ending with exit
75 and resumed by the next, as on the real machine. Reported: the coordinator's
wall time (total and per simulated day), peak memory, its turns (count and wall
time per turn: p50, p99), the latency of its decisions (the wall time a GPU freed
by a sim waits on the coordinator's turn: p50, p99 over every freed GPU), the
feedback rounds (count, distance first and last, wall time of the slowest at full
size), totals (patches
evaluated, sims selected, done, failed), GPU occupancy after ramp-up (the
fraction of sim-GPU-hours held by a sim, from the first moment 98 % of the sim
GPUs were busy) with the idle time by cause and the GPU time lost to failed
attempts, the state store's size, and the runs and their exit codes.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import resource
import sqlite3
import sys
import tempfile
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from mummi.core.exit_codes import EXIT_OK, EXIT_RESUMABLE
from mummi.core.resources import ResourcePolicy
from mummi.core.spec import CampaignSpec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", type=Path, default=None, help="default: the packaged specs/sierra-sim.yaml")
    parser.add_argument("--days", type=float, default=None, help="campaign days to replay (default: the spec's)")
    parser.add_argument("--nodes", type=int, default=None, help="nodes (default: the spec's)")
    parser.add_argument("--allocation-h", type=float, default=None, help="split into allocations of this length")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the campaign here (default: a temp dir)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    data = yaml.safe_load((args.spec or files("mummi.specs") / "sierra-sim.yaml").read_text())
    if args.days is not None:
        data["campaign"]["stop"] = {"max_sims": None, "wall_time_h": 24.0 * args.days}
    if args.nodes is not None:
        data["resources"]["nodes"] = args.nodes
    if args.allocation_h is not None:
        data["resources"].setdefault("simulated", {})["allocation_min"] = 60.0 * args.allocation_h
    with tempfile.TemporaryDirectory(prefix="mummi-replay-") as tmp:
        root = args.workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        data["campaign"]["workdir"] = str(root / "campaign")
        spec_path = root / "replay.yaml"
        spec_path.write_text(yaml.safe_dump(data))
        return replay(spec_path, CampaignSpec.model_validate(data))


def replay(spec_path: Path, spec: CampaignSpec) -> dict[str, Any]:
    from mummi.workflow.cli import run_main

    began = time.perf_counter()
    codes: list[int] = []
    while not codes or codes[-1] == EXIT_RESUMABLE:
        with contextlib.redirect_stdout(sys.stderr):  # each run's summary; stdout is for the JSON
            codes.append(run_main([str(spec_path)]))
        if len(codes) > 1000:
            break
    wall = time.perf_counter() - began
    workdir = spec.campaign.workdir
    days = (spec.campaign.stop.wall_time_h or 0.0) / 24.0
    result: dict[str, Any] = {
        "nodes": spec.resources.nodes,
        "gpus": spec.resources.nodes * spec.resources.gpus_per_node,
        "simulated_days": days,
        "runs": len(codes),
        "exit_codes": sorted(set(codes)),
        "finished": codes[-1] == EXIT_OK,
        "wall_s": round(wall, 1),
        "wall_s_per_simulated_day": round(wall / days, 2) if days else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "store_mb": round((workdir / "campaign.db").stat().st_size / 2**20, 2),
    }
    result.update(_store_figures(workdir / "campaign.db"))
    slots = ResourcePolicy.from_spec(spec).sim_slots
    result.update(_occupancy(workdir / "logs" / "simulated-backend" / "history.csv", slots))
    return result


def _store_figures(db: Path) -> dict[str, Any]:
    import json

    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        patches = con.execute("SELECT COUNT(*) FROM patches").fetchone()[0]
        by_state = dict(con.execute("SELECT state, COUNT(*) FROM selections GROUP BY state").fetchall())
        events = con.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        row = con.execute("SELECT value FROM meta WHERE key = 'turn_wall_s'").fetchone()
        rounds = con.execute("SELECT distance, details FROM feedback_rounds WHERE finished_at IS NOT NULL"
                             " ORDER BY round").fetchall()  # fmt: skip
    finally:
        con.close()
    runs = json.loads(row[0]) if row else []
    turns = sum(r["turns"] for r in runs)
    details = [json.loads(d) for _, d in rounds]
    return {
        "patches_evaluated": patches,
        "sims_selected": sum(by_state.values()),
        "sims_done": by_state.get("done", 0),
        "sims_failed": by_state.get("failed", 0),
        "store_events": events,
        "turns": turns,
        "turn_wall_ms": {
            "mean": round(1000 * sum(r["total"] for r in runs) / max(1, turns), 3),
            "p50_worst_run": round(1000 * max((r["p50"] for r in runs), default=0.0), 3),
            "p99_worst_run": round(1000 * max((r["p99"] for r in runs), default=0.0), 3),
            "max": round(1000 * max((r["max"] for r in runs), default=0.0), 3),
        },
        "decision_latency_ms": {
            "gpus_freed": sum(r.get("gpus_freed", 0) for r in runs),
            "p50_worst_run": _ms(max((r.get("decision_p50") or 0.0 for r in runs), default=None)),
            "p99_worst_run": _ms(max((r.get("decision_p99") or 0.0 for r in runs), default=None)),
        },
        "feedback": {
            "rounds": len(rounds),
            "first_round_day": round(details[0]["campaign_time_s"] / 86400, 2) if details else None,
            "distance_first_last": [rounds[0][0], rounds[-1][0]] if rounds else None,
            "sims_in_last_round": details[-1].get("sims_with_counts") if details else None,
            "round_wall_s_max": round(max(d.get("wall_s", 0.0) for d in details), 3) if details else None,
        },
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000 * seconds, 3)


def _occupancy(history: Path, slots: int) -> dict[str, Any]:
    """Sim-GPU occupancy after ramp-up from the backend's history, and where the idle GPU time went.

    Ramp-up ends the first moment 98 % of the ``slots`` sim GPUs are busy. Idle GPU time after it is
    "queued" while sims wait in the backend for room on a node (placement, an analysis still finishing)
    and "none ready" otherwise (no set-up sim to start: setups or selection behind). "failed" is GPU time
    held by sim attempts that ended failed or lost (their work is redone), counted inside the busy time.
    """
    changes: list[tuple[float, int, int]] = []  # (time, busy delta, queued delta)
    started: dict[str, float] = {}
    failed_s = 0.0
    ran_to_end: dict[str, int] = {}
    with open(history, newline="") as fh:
        for row in csv.DictReader(fh):
            if row["kind"] != "sim":
                continue
            t, event = float(row["time_s"]), row["event"]
            if event == "submit":
                changes.append((t, 0, 1))
            elif event == "start":
                changes.append((t, 1, -1))
                started[row["job"]] = t
            elif event == "end" and row["job"] in started:
                changes.append((t, -1, 0))
                if row["state"] == "failed" and row["exit_code"] != str(EXIT_RESUMABLE):
                    failed_s += t - started[row["job"]]
                elif row["state"] == "done":
                    ran_to_end[row["subject"]] = ran_to_end.get(row["subject"], 0) + 1
            elif event == "end":
                changes.append((t, 0, -1))  # cancelled while queued
    changes.sort(key=lambda c: c[0])
    accounted = {"sims_run_to_end": len(ran_to_end), "sims_run_to_end_twice": sum(n > 1 for n in ran_to_end.values())}
    if not changes:
        return {"gpu_occupancy_after_rampup": None, **accounted}
    busy = queued = 0
    ramped_at: float | None = None
    busy_s = queued_s = idle_s = 0.0
    last = changes[0][0]
    for t, d_busy, d_queued in changes:
        if ramped_at is not None:
            span = t - last
            idle = slots - busy
            busy_s += busy * span
            idle_s += idle * span
            queued_s += min(idle, queued) * span
        busy, queued, last = busy + d_busy, queued + d_queued, t
        if ramped_at is None and busy >= 0.98 * slots:
            ramped_at = t
    end = changes[-1][0]
    if ramped_at is None or end <= ramped_at:
        return {"gpu_occupancy_after_rampup": None, "rampup_h": None, **accounted}
    total = slots * (end - ramped_at)
    return {
        **accounted,
        "rampup_h": round(ramped_at / 3600, 2),
        "gpu_occupancy_after_rampup": round(busy_s / total, 4),
        "idle_after_rampup": {
            "queued_in_backend": round(queued_s / total, 4),
            "none_ready": round((idle_s - queued_s) / total, 4),
        },
        "gpu_time_in_failed_attempts": round(failed_s / (slots * end), 4),
    }
