"""The scaffold every ``python -m mummi.jobs.<name>`` entry point shares.

Arguments (``--spec`` plus the job's own), logging, spec loading, and the exit
codes of :mod:`mummi.core.exit_codes`: a bad spec or bad input gives exit 2 with
a message on stderr and nothing written; an error while working is logged,
recorded as data by the job's ``on_failure`` (a ``failed`` status record) and gives
exit 1, so the coordinator sees why.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mummi.adapters.md_engine import DeterministicFailure
from mummi.core.exit_codes import EXIT_FAILED, EXIT_USAGE
from mummi.core.simdir import write_status
from mummi.core.spec import CampaignSpec
from mummi.core.spec_loader import SpecError, load_spec
from mummi.core.states import JobKind, Outcome

log = logging.getLogger(__name__)

Run = Callable[[CampaignSpec, argparse.Namespace], int]
AddArguments = Callable[[argparse.ArgumentParser], None]


class JobInputError(Exception):
    """The job's inputs are unusable (exit 2): a missing folder, no patch files, an unreadable file."""


def job_main(
    kind: JobKind,
    argv: Sequence[str] | None,
    run: Run,
    *,
    description: str,
    add_arguments: AddArguments | None = None,
    on_failure: Callable[[CampaignSpec, argparse.Namespace, Exception], None] | None = None,
    prog: str | None = None,
) -> int:
    """Parse ``--spec SPEC`` and the job's own options, load the spec, then ``run(spec, args)``."""
    prog = prog or f"python -m mummi.jobs.{kind.value}"
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--spec", required=True, type=Path, help="campaign spec (YAML)")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {kind.value} %(name)s %(levelname)s: %(message)s")
    logging.getLogger("MDAnalysis").setLevel(logging.WARNING)
    try:
        spec = load_spec(args.spec)
    except SpecError as err:
        sys.stderr.write(f"{prog}: {err}\n")
        return EXIT_USAGE
    try:
        return run(spec, args)
    except JobInputError as err:
        sys.stderr.write(f"{prog}: {err}\n")
        return EXIT_USAGE
    except Exception as err:  # the process boundary: report every failure as data
        log.exception("%s failed", kind.value)
        if on_failure is not None:
            on_failure(spec, args, err)
        return EXIT_FAILED


def sim_job_main(
    stage: JobKind,
    argv: Sequence[str] | None,
    run: Callable[[CampaignSpec, Path, argparse.Namespace], int],
    add_arguments: AddArguments | None = None,
) -> int:
    """:func:`job_main` for the jobs that work in one sim folder (``--sim-dir``); failures go to its status record."""

    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--sim-dir", required=True, type=Path, help="the sim's folder, W/sims/<sim-id>")
        if add_arguments is not None:
            add_arguments(parser)

    def run_in_sim_dir(spec: CampaignSpec, args: argparse.Namespace) -> int:
        if not args.sim_dir.is_dir():
            raise JobInputError(f"{args.sim_dir}: no such sim folder")
        return run(spec, args.sim_dir, args)

    def record_failure(_spec: CampaignSpec, args: argparse.Namespace, err: Exception) -> None:
        write_status(args.sim_dir, stage.value, Outcome.FAILED, error=f"{type(err).__name__}: {err}",
                     retry=not isinstance(err, DeterministicFailure))  # fmt: skip

    return job_main(stage, argv, run_in_sim_dir, description=f"the {stage.value} job of one sim",
                    add_arguments=arguments, on_failure=record_failure)  # fmt: skip
