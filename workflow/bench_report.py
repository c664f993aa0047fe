"""``mummi-bench report``: how long ``mummi-report`` takes on a campaign the size of Sierra's.

Builds the report of ``--workdir`` (a campaign folder, such as ``DIR/campaign``
that ``mummi-bench replay --workdir DIR`` keeps), or first replays ``--days`` of
the Sierra campaign (``specs/sierra-sim.yaml``) into a temporary folder.
Reported: the build's wall time in all and per stage, the process's peak memory,
the campaign's size (patches, selections, job attempts, store events), the
report folder's size, and the machine's load average before and after (the
figures depend on what else runs).
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from mummi.workflow import bench_replay
from mummi.workflow.report import build


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", type=Path, default=None, help="the campaign to report on (default: replay one)")
    parser.add_argument("--days", type=float, default=1.0, help="without --workdir: campaign days to replay first")
    parser.add_argument("--nodes", type=int, default=None, help="without --workdir: nodes (default: the spec's)")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: WORKDIR/report)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.workdir is not None:
        return measure(args.workdir, args.out)
    with tempfile.TemporaryDirectory(prefix="mummi-bench-report-") as tmp:
        replay = argparse.Namespace(spec=None, days=args.days, nodes=args.nodes, allocation_h=None, workdir=Path(tmp))
        replayed = bench_replay.run(replay)
        return {
            "replay_wall_s": replayed["wall_s"],
            "simulated_days": args.days,
            **measure(Path(tmp) / "campaign", args.out),
        }


def measure(workdir: Path, out: Path | None) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    built = build(workdir, out)
    wall = time.perf_counter() - began
    folder = built.index.parent
    return {
        "workdir": str(workdir),
        "report_wall_s": round(wall, 2),
        "stages_s": built.seconds,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "report_mb": round(sum(f.stat().st_size for f in folder.iterdir()) / 2**20, 2),
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        **_campaign_size(workdir / "campaign.db"),
    }


def _campaign_size(db: Path) -> dict[str, int]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        count = {
            table: con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("patches", "selections", "jobs", "events")
        }
        attempts = con.execute(
            "SELECT COUNT(*) FROM events WHERE kind = 'job.state' AND json_extract(data, '$.to') = 'submitted'"
        ).fetchone()[0]
    finally:
        con.close()
    return {
        "patches": count["patches"],
        "selections": count["selections"],
        "jobs": count["jobs"],
        "job_attempts": attempts,
        "store_events": count["events"],
    }
