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
from collections.abc import Sequence
from pathlib import Path

from mummi.adapters.md_engine import get_engine, production_seed
from mummi.core.exit_codes import EXIT_OK, EXIT_RESUMABLE
from mummi.core.simdir import is_done, read_status, write_status
from mummi.core.spec import SETUP_ENGINE, CampaignSpec
from mummi.core.states import JobKind, Outcome
from mummi.jobs.entry import sim_job_main

log = logging.getLogger(__name__)


def run_sim(spec: CampaignSpec, sim_dir: Path, deadline: float | None = None) -> Outcome:
    """Run or resume the sim; returns ``done`` or ``incomplete``."""
    sim_dir = Path(sim_dir)
    if is_done(sim_dir, "sim"):
        return Outcome.DONE
    engine_name = spec.sim.engine
    setup = read_status(sim_dir, "createsim") or {}
    if setup.get("state") is not Outcome.DONE:
        raise RuntimeError(f"{sim_dir}: createsim has not finished; run it first")
    if setup.get("engine") != SETUP_ENGINE[engine_name]:
        raise ValueError(
            f"sim.engine {engine_name!r} needs createsim.engine {SETUP_ENGINE[engine_name]!r}, "
            f"this sim was set up with {setup.get('engine')!r}"
        )
    seed = production_seed(spec, sim_dir)
    complete = get_engine(engine_name).production(sim_dir, spec, seed, deadline)
    state = Outcome.DONE if complete else Outcome.INCOMPLETE
    write_status(sim_dir, "sim", state, engine=engine_name)
    log.info("sim %s: %s", sim_dir.name, state.value)
    return state


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--walltime-min", type=float, default=None, help="this job's walltime; default sim.resources.walltime_min"
    )


def _run(spec: CampaignSpec, sim_dir: Path, args: argparse.Namespace) -> int:
    walltime = args.walltime_min if args.walltime_min is not None else spec.sim.resources.walltime_min
    deadline = time.monotonic() + 60 * max(0.0, walltime - spec.sim.stop_margin_min)
    return EXIT_OK if run_sim(spec, sim_dir, deadline) is Outcome.DONE else EXIT_RESUMABLE


def main(argv: Sequence[str] | None = None) -> int:
    return sim_job_main(JobKind.SIM, argv, _run, _add_arguments)


if __name__ == "__main__":
    raise SystemExit(main())
