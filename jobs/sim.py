"""``python -m mummi.jobs.sim --spec SPEC --sim-dir DIR [--walltime-min M]``: production MD.

Runs the sim engine from its own checkpoint until the sim is complete or its
deadline nears (the job's walltime minus ``sim.stop_margin_min``), then writes
``sim.status.json``: ``done`` (exit 0), or ``incomplete`` after a clean stop (exit
75, EX_TEMPFAIL: run it again to continue). Rerunning a finished sim does nothing.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Sequence

from mummi.adapters.md_engine import get_engine, seed_for
from mummi.jobs.runner import job_main
from mummi.jobs.simdir import DONE, EXIT_INCOMPLETE, INCOMPLETE, is_done, read_status, write_status
from mummi.workflow.spec import CampaignSpec

log = logging.getLogger(__name__)

#: The createsim engine each sim engine starts from.
SETUP_ENGINE = {"gromacs": "gromacs", "ddcmd": "gromacs", "mock": "mock"}


def run_sim(spec: CampaignSpec, sim_dir: Path, deadline: float | None = None) -> str:
    """Run or resume the sim; returns ``done`` or ``incomplete``."""
    sim_dir = Path(sim_dir)
    if is_done(sim_dir, "sim"):
        return DONE
    engine_name = spec.sim.engine
    setup = read_status(sim_dir, "createsim") or {}
    if setup.get("state") != DONE:
        raise RuntimeError(f"{sim_dir}: createsim has not finished; run it first")
    if setup.get("engine") != SETUP_ENGINE[engine_name]:
        raise ValueError(f"sim.engine {engine_name!r} needs createsim.engine {SETUP_ENGINE[engine_name]!r}, this sim was set up with {setup.get('engine')!r}")
    complete = get_engine(engine_name).production(sim_dir, spec, seed_for(spec.campaign.seed, sim_dir.name, "sim"), deadline)
    state = DONE if complete else INCOMPLETE
    write_status(sim_dir, "sim", state, engine=engine_name)
    log.info("sim %s: %s", sim_dir.name, state)
    return state


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--walltime-min", type=float, default=None, help="this job's walltime; default sim.resources.walltime_min")


def _run(spec: CampaignSpec, sim_dir: Path, args: argparse.Namespace) -> int:
    walltime = args.walltime_min if args.walltime_min is not None else spec.sim.resources.walltime_min
    deadline = time.time() + 60 * max(0.0, walltime - spec.sim.stop_margin_min)
    return 0 if run_sim(spec, sim_dir, deadline) == DONE else EXIT_INCOMPLETE


def main(argv: Sequence[str] | None = None) -> int:
    return job_main("sim", argv, _run, _add_arguments)


if __name__ == "__main__":
    raise SystemExit(main())
