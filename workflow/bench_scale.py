"""``mummi-bench scale``: the replay at several machine sizes, a few simulated days each, and how its cost grows.

Each size runs ``mummi-bench replay --days D --nodes N`` in a process of its own
(so peak memory is that run's), side by side in one invocation; 3 days by
default, since the first sims end after about 1.9 days and a single day would
measure the ramp-up only. Reported per
size: wall seconds per simulated day, store events handled per wall second,
turns, store size and peak memory; then, between consecutive sizes, the growth
exponent of each (log ratio of the figure over log ratio of the node count: 1
is linear in the machine, 0 flat).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

FIGURES = ("wall_s_per_simulated_day", "events_per_wall_s", "turns", "store_mb", "peak_rss_mb")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", default="100,1000,4000,16000", help="comma-separated node counts")
    parser.add_argument("--days", type=float, default=3.0, help="simulated days per size")
    parser.add_argument("--spec", type=Path, default=None, help="default: the packaged specs/sierra-sim.yaml")


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [int(n) for n in args.nodes.split(",") if n.strip()]
    rows = []
    for nodes in sizes:
        command = [sys.executable, "-m", "mummi.workflow.bench", "replay", "--days", str(args.days),
                   "--nodes", str(nodes)]  # fmt: skip
        if args.spec is not None:
            command += ["--spec", str(args.spec)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        figures = json.loads(done.stdout)
        rows.append({
            "nodes": nodes,
            "wall_s_per_simulated_day": figures["wall_s_per_simulated_day"],
            "events_per_wall_s": round(figures["store_events"] / figures["wall_s"], 1),
            "turns": figures["turns"],
            "turn_wall_ms": figures["turn_wall_ms"],
            "store_mb": figures["store_mb"],
            "peak_rss_mb": figures["peak_rss_mb"],
            "sims_selected": figures["sims_selected"],
            "sims_done": figures["sims_done"],
            "gpu_occupancy_after_rampup": figures["gpu_occupancy_after_rampup"],
            "decision_latency_ms": figures["decision_latency_ms"],
        })  # fmt: skip
    growth = []
    for small, large in zip(rows, rows[1:]):
        ratio = math.log(large["nodes"] / small["nodes"])
        growth.append({
            "nodes": f"{small['nodes']}->{large['nodes']}",
            **{f: round(math.log(large[f] / small[f]) / ratio, 2) for f in FIGURES if small[f] and large[f]},
        })  # fmt: skip
    return {"simulated_days": args.days, "sizes": rows, "growth_exponents": growth}
