"""``python -m mummi.jobs.macro --spec SPEC --workdir W [--until-ns T] [--uncoupled]``: the macro model job.

Runs (or resumes) the campaign's macro model, writing frames, patches and
checkpoints under ``W`` (see :mod:`mummi.macro.driver` for the layout), until the
macro time reaches ``--until-ns`` (default: ``campaign.stop.macro_time_us``, else
forever). ``--uncoupled`` ignores new parameter versions (the pre-campaign run
that trains the encoder). It stops cleanly (checkpoint, exit 75) on SIGTERM or
SIGINT and before ``--walltime-min`` runs out; exit 0 means the target time was
reached, after which ``W/macro/macro.status.json`` says ``done``. Running it again
resumes; a finished run does nothing.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from mummi.core.exit_codes import EXIT_OK, EXIT_RESUMABLE
from mummi.core.layout import CampaignLayout
from mummi.core.spec import CampaignSpec
from mummi.core.states import JobKind, Outcome
from mummi.core.status_record import read_status_record, write_status_record
from mummi.jobs.entry import job_main
from mummi.macro.backend import tune_allocator
from mummi.macro.driver import MacroRun

log = logging.getLogger(__name__)

#: Stop this long before ``--walltime-min`` ends, to checkpoint.
STOP_MARGIN_MIN = 2.0


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workdir", type=Path, default=None, help="campaign directory (default: campaign.workdir of the spec)"
    )
    parser.add_argument("--until-ns", type=float, default=None, help="macro time to reach (ns)")
    parser.add_argument("--uncoupled", action="store_true", help="do not reload new parameter versions")
    parser.add_argument("--walltime-min", type=float, default=None, help="stop cleanly before this much wall time")
    parser.add_argument(
        "--pace-ns-per-s",
        type=float,
        default=None,
        help="advance at most this much macro time per wall-clock second (dry runs: keeps the macro "
        "model in step with the sims, as on a real allocation)",
    )
    parser.add_argument("--compute", choices=("auto", "numpy", "torch"), default=None, help="override macro.compute")


def _layout(spec: CampaignSpec, args: argparse.Namespace) -> CampaignLayout:
    return CampaignLayout(args.workdir if args.workdir is not None else spec.campaign.workdir)


def _run(spec: CampaignSpec, args: argparse.Namespace) -> int:
    layout = _layout(spec, args)
    until = args.until_ns
    if until is None:
        until = spec.campaign.stop.macro_time_us * 1000.0 if spec.campaign.stop.macro_time_us else math.inf
    status = read_status_record(layout.macro_status)
    if status and status["state"] is Outcome.DONE and float(status.get("time_ns", -1)) >= until:
        log.info("macro already done at t = %s ns", status.get("time_ns"))
        return EXIT_OK

    stop: dict[str, int | None] = {"signal": None}
    deadline = time.monotonic() + 60 * (args.walltime_min - STOP_MARGIN_MIN) if args.walltime_min else math.inf

    def on_signal(signum: int, _frame: object) -> None:
        stop["signal"] = signum

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    tune_allocator()
    run = MacroRun(spec, layout.root, coupled=not args.uncoupled, compute=args.compute)
    pace = _Pace(args.pace_ns_per_s, run.model.time_ns)

    def should_stop() -> bool:
        pace.wait(run.model.time_ns, lambda: stop["signal"] is not None)
        return stop["signal"] is not None or time.monotonic() > deadline

    reached = run.run(until, should_stop=should_stop)
    model = run.model
    info = {
        "time_ns": model.time_ns,
        "step": model.step_count,
        "param_version": model.params.version,
        "positivity_fixes": model.positivity_fixes,
    }
    write_status_record(
        layout.macro_status, JobKind.MACRO.value, Outcome.DONE if reached else Outcome.INCOMPLETE, durable=True, **info
    )
    return EXIT_OK if reached else EXIT_RESUMABLE


def main(argv: Sequence[str] | None = None) -> int:
    def record_failure(spec: CampaignSpec, args: argparse.Namespace, err: Exception) -> None:
        error = f"{type(err).__name__}: {err}"
        write_status_record(_layout(spec, args).macro_status, JobKind.MACRO.value, Outcome.FAILED, error=error)

    return job_main(
        JobKind.MACRO,
        argv,
        _run,
        description=__doc__.splitlines()[0],
        add_arguments=_add_arguments,
        on_failure=record_failure,
    )


class _Pace:
    """Sleeps while the model is ahead of ``ns_per_s`` macro time per wall second."""

    def __init__(self, ns_per_s: float | None, start_ns: float) -> None:
        self.ns_per_s, self.start_ns, self.start = ns_per_s, start_ns, time.monotonic()

    def wait(self, time_ns: float, stopping: Callable[[], bool]) -> None:
        if not self.ns_per_s:
            return
        while not stopping():
            ahead = (time_ns - self.start_ns) / self.ns_per_s - (time.monotonic() - self.start)
            if ahead <= 0:
                return
            time.sleep(min(ahead, 0.25))


if __name__ == "__main__":
    raise SystemExit(main())
