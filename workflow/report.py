"""``mummi-report WORKDIR [--out DIR]``: a campaign as one static HTML page with its figures and their numbers.

Works on any campaign folder (a dry run, a real run, the simulated Sierra replay,
one copied back from the cluster) and while the campaign runs: it only reads.
The page (``index.html``) links its figures (PNG) and the numbers behind each
(CSV), all in the output folder (default ``WORKDIR/report``), so the folder can
be copied and read anywhere without a server or a network.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mummi.analysis.coverage import divergences as kl_divergences
from mummi.core.atomic import atomic_write_text
from mummi.core.exit_codes import EXIT_OK, EXIT_USAGE
from mummi.core.layout import CampaignLayout
from mummi.workflow import report_data, report_figures, report_jobs
from mummi.workflow.report_page import PageContent, render, summary_rows
from mummi.workflow.store import StateStore, StoreError

REPORT_DIR = "report"
"""The default output folder, under the campaign's workdir."""
GANTT_NODES = 8
"""Nodes the job timeline shows (the first by name); every node's jobs count in the occupancy."""


class ReportError(Exception):
    """No campaign to report on at the given place."""


@dataclass
class BuiltReport:
    index: Path
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time of each stage of the build."""


def build(workdir: str | Path, out: str | Path | None = None) -> BuiltReport:
    """Write the report of the campaign in ``workdir`` into ``out`` (default ``workdir/report``)."""
    cdir = CampaignLayout(Path(workdir))
    try:
        db = StateStore.open_readonly(cdir.db)
    except StoreError as err:
        raise ReportError(f"{err}; is {workdir} a campaign workdir?") from err
    target = Path(out) if out is not None else cdir.root / REPORT_DIR
    target.mkdir(parents=True, exist_ok=True)
    try:
        return _build(db, cdir, target)
    except sqlite3.DatabaseError as err:
        raise ReportError(f"{cdir.db}: cannot be read ({err})") from err
    finally:
        db.close()


def _build(db: sqlite3.Connection, cdir: CampaignLayout, out: Path) -> BuiltReport:
    built = BuiltReport(out / "index.html")
    began = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal began
        now = time.perf_counter()
        built.seconds[stage] = round(now - began, 3)
        began = now

    summary = report_data.read_summary(db, cdir)
    spec = report_data.load_campaign_spec(cdir)
    attempts = report_jobs.read_attempts(db)
    backend_log = report_jobs.read_backend_log(cdir)
    origin = float(summary.meta.get("created_at") or (summary.runs[0].began_unix if summary.runs else 0.0))
    clock = report_jobs.campaign_clock(origin, attempts, backend_log)
    attempts.to_hours(clock)
    end_h = max(float(clock.hours(summary.last_event_unix or origin)), 0.0)
    lap("read store")

    figures: dict[str, report_figures.FigureFiles | None] = {}
    history = report_data.read_selection_history(db, clock, summary)
    figures["selection_history"] = report_figures.selection_history(history, end_h, out)
    lap("selection history")

    coverage = report_data.read_coverage(cdir, summary.meta)
    bins, divergences = 0, []
    figures["coverage"] = figures["parallel_coordinates"] = None
    if coverage is not None:
        bins = report_data.density_bins(len(coverage.selected))
        marginals = coverage.marginals(bins)
        divergences = [kl_divergences(densities) for densities in marginals]
        figures["coverage"] = report_figures.coverage_densities(coverage, marginals, out)
        figures["parallel_coordinates"] = report_figures.parallel_coordinates(
            coverage, int(summary.meta.get("seed", 0)), out
        )
    lap("coverage")

    figures["feedback"] = report_figures.feedback(report_data.read_feedback(cdir, spec, summary), out)
    lap("feedback")

    r = spec.resources if spec is not None else None
    gpus_per_node = r.gpus_per_node if r is not None else 0
    capacity = (r.nodes * r.gpus_per_node, r.nodes * r.cores_per_node) if r is not None else (0, 0)
    sim_states = report_jobs.read_sim_states(db, clock)
    candidates = report_data.read_candidates(cdir, clock)
    usage = report_jobs.usage(attempts, backend_log, sim_states, candidates, capacity, gpus_per_node, end_h)
    lanes, placed, n_nodes = report_jobs.timeline_lanes(attempts, backend_log, gpus_per_node, GANTT_NODES)
    figures["timeline"] = report_figures.timeline(attempts, lanes, placed, end_h, out) if placed else None
    figures["occupancy"] = report_figures.occupancy(usage, end_h, out)
    figures["queues"] = report_figures.queues(usage, end_h, out)
    failures = report_jobs.failures(db, attempts)
    lap("resources")

    spec_file = None
    if cdir.spec_copy.is_file():
        spec_file = "campaign.yaml"
        shutil.copyfile(cdir.spec_copy, out / spec_file)
    content = PageContent(
        workdir=str(cdir.root.resolve()),
        summary=summary,
        clock=clock,
        end_h=end_h,
        gpu_hours=usage.busy_gpu_h,
        figures=figures,
        tables={},
        usage=usage,
        coverage=coverage,
        divergences=divergences,
        density_bins=bins,
        failures=failures,
        nodes_shown=min(GANTT_NODES, n_nodes),
        nodes_total=n_nodes,
        spec_file=spec_file,
    )
    content.tables = _tables(content, out)
    atomic_write_text(built.index, render(content), durable=False)
    lap("page")
    return built


def _tables(content: PageContent, out: Path) -> dict[str, str]:
    """The page's tables as CSV files."""
    write = report_figures.write_csv
    clock = content.clock
    tables = {
        "summary": write(out / "summary.csv", ("key", "label", "value"), summary_rows(content)),
        "runs": write(
            out / "runs.csv",
            ("run", "began_h", "ended_h", "reason", "resumable"),
            (
                (
                    r.number,
                    float(clock.hours(r.began_unix)),
                    "" if r.ended_unix is None else float(clock.hours(r.ended_unix)),
                    r.reason or "",
                    "" if r.resumable is None else r.resumable,
                )
                for r in content.summary.runs
            ),
        ),
        "gpu_hours": report_figures.idle_table(content.usage, out),
        "failures": write(
            out / "failures.csv",
            ("job", "kind", "subject", "state", "attempts", "failures", "last_failure", "exit_code", "log_path"),
            (
                (
                    f.job,
                    f.kind,
                    f.subject,
                    f.state,
                    f.attempts,
                    f.failures,
                    f.reason,
                    "" if f.exit_code is None else f.exit_code,
                    f.log_path,
                )
                for f in content.failures
            ),
        ),
    }
    if content.coverage is not None:
        tables["coverage_kl"] = report_figures.coverage_divergences(content.coverage, content.divergences, out)
    return tables


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mummi-report", description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path, help="the campaign's workdir (holds campaign.db)")
    parser.add_argument("--out", type=Path, default=None, help=f"output folder (default: WORKDIR/{REPORT_DIR})")
    args = parser.parse_args(argv)
    return write_report(args.workdir, args.out, "mummi-report")


def write_report(workdir: Path, out: Path | None, prog: str) -> int:
    """Build the report and print where its page is; the exit code of ``prog``."""
    try:
        built = build(workdir, out)
    except ReportError as err:
        sys.stderr.write(f"{prog}: {err}\n")
        return EXIT_USAGE
    sys.stdout.write(f"{built.index}\n")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
