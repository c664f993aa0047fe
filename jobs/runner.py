"""What the job entry points share: arguments, logging, spec loading, failures as status records."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Callable, Sequence

from mummi.jobs.simdir import write_status
from mummi.workflow.spec import CampaignSpec, SpecError, load_spec

log = logging.getLogger(__name__)

Run = Callable[[CampaignSpec, Path, argparse.Namespace], int]


def job_main(stage: str, argv: Sequence[str] | None, run: Run, add_arguments: Callable[[argparse.ArgumentParser], None] | None = None) -> int:
    """Parse ``--spec SPEC --sim-dir DIR`` (and the job's own options), then ``run``.

    An exception is recorded as ``{"state": "failed", "error": ...}`` in the stage's
    status record and gives exit status 1, so the workflow manager sees why.
    """
    parser = argparse.ArgumentParser(prog=f"python -m mummi.jobs.{stage}")
    parser.add_argument("--spec", required=True, type=Path, help="campaign spec (YAML)")
    parser.add_argument("--sim-dir", required=True, type=Path, help="the sim's folder, W/sims/<sim-id>")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {stage} %(name)s %(levelname)s: %(message)s")
    logging.getLogger("MDAnalysis").setLevel(logging.WARNING)
    try:
        spec = load_spec(args.spec)
    except SpecError as err:
        log.error("%s", err)
        return 2
    if not args.sim_dir.is_dir():
        log.error("%s: no such sim folder", args.sim_dir)
        return 2
    try:
        return run(spec, args.sim_dir, args)
    except Exception as err:  # the process boundary: report every failure as data
        log.exception("%s failed in %s", stage, args.sim_dir)
        write_status(args.sim_dir, stage, "failed", error=f"{type(err).__name__}: {err}")
        return 1
