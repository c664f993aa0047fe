"""The ``index.html`` of ``mummi-report``: one static page, its figures and tables linked by relative paths.

No script, no style sheet or font from elsewhere: the page reads the same from a
laptop's disk as from the cluster's. Each figure of the summary that a test or a
script may want to read back carries an ``id``.
"""

from __future__ import annotations

import datetime
import html
import math
from dataclasses import dataclass
from typing import Any

from mummi.analysis.coverage import COMPARISONS
from mummi.workflow.report_data import CampaignClock, Coverage, Summary
from mummi.workflow.report_figures import SAMPLE_TITLES, FigureFiles
from mummi.workflow.report_jobs import IDLE_CAUSES, Failure, Usage

SECTIONS = {
    "summary": "Summary",
    "selection-history": "Selection history",
    "coverage": "Coverage of the latent space",
    "feedback": "Feedback",
    "resources": "Resources",
    "failures": "Failures",
}
MAX_FAILURE_ROWS = 500
"""Failures listed on the page; the CSV file lists them all."""

_STYLE = """
body { font-family: sans-serif; margin: 0 auto; max-width: 1080px; padding: 0 1em 3em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-top: 0.6em; }
nav a { margin-right: 1em; } .muted { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; } pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; }
"""


@dataclass
class PageContent:
    """Everything the page shows, as :func:`mummi.workflow.report.build` gathered it."""

    workdir: str
    summary: Summary
    clock: CampaignClock
    end_h: float
    gpu_hours: float
    figures: dict[str, FigureFiles | None]
    tables: dict[str, str]
    """CSV files of the page's tables, by name (summary, gpu_hours, coverage_kl, failures, runs)."""
    usage: Usage
    coverage: Coverage | None
    divergences: list[dict[str, float]]
    density_bins: int
    failures: list[Failure]
    nodes_shown: int
    nodes_total: int
    spec_file: str | None


def summary_rows(content: PageContent) -> list[tuple[str, str, Any]]:
    """(id, label, value) of the summary table, also written as ``summary.csv``."""
    s = content.summary
    distances = [r["distance"] for r in s.rounds if r["distance"] is not None]
    macro_ns = s.meta.get("macro_time_ns")
    return [
        ("campaign", "campaign", s.campaign),
        ("runs", "runs (allocations)", len(s.runs)),
        ("macro-time-us", "macro time (µs)", None if macro_ns is None else round(macro_ns / 1000, 4)),
        ("patches-evaluated", "patches evaluated", s.patches["evaluated"]),
        ("patches-selected", "patches selected", s.patches["selected"]),
        ("patches-candidates", "patches in the sampler's candidate queue", s.patches["candidates"]),
        ("patches-discarded", "patches discarded (fell off the candidate queue)", s.patches["discarded"]),
        ("sims-done", "sims done", s.sims["done"]),
        ("sims-failed", "sims failed", s.sims["failed"]),
        ("sims-unfinished", "sims unfinished", s.sims["unfinished"]),
        ("feedback-rounds", "feedback rounds", len(s.rounds)),
        ("distance-first", "g(r) distance, first round (kT)", distances[0] if distances else None),
        ("distance-last", "g(r) distance, last round (kT)", distances[-1] if distances else None),
        ("wall-hours", "wall hours (the coordinator's runs)", round(float(s.meta.get("wall_s", 0.0)) / 3600, 3)),
        ("campaign-hours", "campaign hours (created to last event)", round(content.end_h, 3)),
        ("gpu-hours", "GPU hours held by jobs", round(content.gpu_hours, 3)),
        ("failed-jobs", "jobs with a failed attempt", len(content.failures)),
    ]


def render(content: PageContent) -> str:
    s = content.summary
    clock = "the simulated backend's virtual clock" if content.clock.virtual else "wall-clock time"
    made = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(s.campaign or 'campaign')}: mummi report</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Campaign {_e(s.campaign or '?')}</h1>",
        f'<p class="muted">{_e(content.workdir)} · report made {_e(made)} · times are campaign hours on {clock}</p>',
        "<nav>" + "".join(f'<a href="#{k}">{v}</a>' for k, v in SECTIONS.items()) + "</nav>",
        _summary(content),
        _selection_history(content),
        _coverage(content),
        _feedback(content),
        _resources(content),
        _failures(content),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------ sections
def _section(key: str, *body: str) -> str:
    return f'<section id="{key}">\n<h2>{SECTIONS[key]}</h2>\n' + "\n".join(body) + "\n</section>"


def _summary(content: PageContent) -> str:
    rows = "".join(
        f'<tr><th>{_e(label)}</th><td class="num" id="{key}">{_e(_fmt(value))}</td></tr>'
        for key, label, value in summary_rows(content)
    )
    runs = "".join(
        f"<tr><td class='num'>{r.number}</td><td class='num'>{_fmt(_hours(content.clock, r.began_unix))}</td>"
        f"<td class='num'>{'' if r.ended_unix is None else _fmt(_hours(content.clock, r.ended_unix))}</td>"
        f"<td>{_e(r.reason or 'no stop recorded (killed, crashed, or still running)')}</td>"
        f"<td>{_exit(r.resumable, r.reason)}</td></tr>"
        for r in content.summary.runs
    )
    spec = (
        f'<details><summary>The spec as run (<a href="{content.spec_file}">{content.spec_file}</a>)</summary>'
        f"<pre>{_e(content.summary.spec_text or '')}</pre></details>"
        if content.spec_file
        else "<p>The campaign's spec copy (campaign.yaml) is missing.</p>"
    )
    return _section(
        "summary",
        f'<table id="summary-table">{rows}</table>{_csv_links(content.tables["summary"])}',
        "<h3>Runs</h3><table id='runs-table'><tr><th>run</th><th>began (h)</th><th>ended (h)</th>"
        f"<th>why it stopped</th><th>exit</th></tr>{runs}</table>{_csv_links(content.tables['runs'])}",
        spec,
    )


def _selection_history(content: PageContent) -> str:
    return _section(
        "selection-history",
        _figure(
            content.figures["selection_history"],
            "The DynIm score of every selected patch (grey dots, left axis) against campaign time, and the "
            "cumulative numbers of patches evaluated and selected (right axis); red lines: feedback rounds. "
            "Like seed 000's Fig. 3.",
        ),
    )


def _coverage(content: PageContent) -> str:
    cov = content.coverage
    if cov is None:
        return _section("coverage", "<p>No sampler checkpoint with a selection yet: nothing to show.</p>")
    names = [name for name, _, _ in COMPARISONS]
    head = "".join(f"<th>{_e(n)}</th>" for n in names)
    body = "".join(
        f"<tr><td>z{i}, z{j}</td>" + "".join(f'<td class="num">{_fmt(d[n])}</td>' for n in names) + "</tr>"
        for (i, j), d in zip(cov.pairs, content.divergences)
    )
    means = "".join(f'<td class="num">{_fmt(_mean([d[n] for d in content.divergences]))}</td>' for n in names)
    checkpoint = f"generation {cov.generation}" if cov.generation is not None else "the latest"
    return _section(
        "coverage",
        f"<p>From the sampler's checkpoint ({_e(checkpoint)}, store event {cov.event_id}): "
        f"{len(cov.latents):,} patches seen, {len(cov.selected):,} selected, latent dimension "
        f"{cov.latents.shape[1]}. The random selection is a uniform draw of the same size (campaign seed). "
        f"The weighted DynIm density weighs each selected patch by its DynIm weight (1 + the unselected "
        f"patches whose nearest selected patch it is).</p>",
        _figure(
            content.figures["coverage"],
            f"2-D marginal densities of pairs of latent dimensions ({content.density_bins}×"
            f"{content.density_bins} cells over the range all patches span; one colour scale per column), "
            f"rows: {', '.join(SAMPLE_TITLES.values())}. Like seed 000's Fig. 4 (bottom).",
        ),
        "<h3>KL divergences (seed 000, Fig. 6)</h3>"
        "<p>KL(sample ‖ reference) in nats on the same 2-D histograms: against the uniform density over the range "
        "(lower: more even coverage) and against the density of all patches (lower: closer to the true "
        "distribution). Per pair of dimensions, and their mean.</p>"
        f'<table id="kl-table"><tr><th>dimensions</th>{head}</tr>{body}'
        f"<tr><th>mean</th>{means}</tr></table>{_csv_links(content.tables['coverage_kl'])}",
        _figure(
            content.figures["parallel_coordinates"],
            "Parallel coordinates: each line one patch across all latent dimensions, each dimension scaled "
            "to the range all patches span; a sample of each distribution (the weighted one drawn in "
            "proportion to the weights). Like seed 000's Fig. 4 (top right).",
        ),
    )


def _feedback(content: PageContent) -> str:
    rounds = content.summary.rounds
    if not rounds:
        return _section("feedback", "<p>No feedback round has finished.</p>")
    rows = "".join(
        f"<tr><td class='num'>{r['round']}</td><td class='num'>{_fmt(_hours(content.clock, r['finished_unix']))}"
        f"</td><td class='num'>{r['n_sims']}</td><td class='num'>{r['details'].get('sims_with_counts', '')}</td>"
        f"<td class='num'>{r['parameter_version']}</td><td class='num'>{_fmt(r['distance'])}</td></tr>"
        for r in rounds
    )
    return _section(
        "feedback",
        _figure(
            content.figures["feedback"],
            "Per corrected channel: the MD g(r) (DynIm-weighted, latest round) against the macro model's g(r) at "
            "the first round and at the latest; last panel: the distance per round. Like seed 000's Fig. 5.",
        ),
        '<table id="feedback-table"><tr><th>round</th><th>finished (h)</th><th>sims run</th><th>sims with counts'
        f"</th><th>parameter version written</th><th>g(r) distance (kT)</th></tr>{rows}</table>",
    )


def _resources(content: PageContent) -> str:
    use = content.usage
    capacity_h = use.gpu_capacity * content.end_h

    def share(gpu_h: float) -> str:
        return _fmt(100 * gpu_h / capacity_h) if capacity_h else ""

    idle_rows = "".join(
        f"<tr><th>idle: {_e(k)}</th><td class='num'>{_fmt(v)}</td><td class='num'>{share(v)}</td>"
        f"<td>{_e(IDLE_CAUSES[k])}</td></tr>"
        for k, v in use.idle_gpu_h.items()
    )
    shown = (
        f"the first {content.nodes_shown} of {content.nodes_total} nodes (by name)"
        if content.nodes_shown < content.nodes_total
        else f"all {content.nodes_total} nodes"
    )
    return _section(
        "resources",
        _figure(
            content.figures["timeline"],
            f"Every job attempt as a bar on the GPUs it held, or for a CPU-only job on a CPU lane of its node, "
            f"coloured by kind; {shown}. GPU indices are the backend's where it records them, else the lowest "
            f"free; CPU lanes are only as many as CPU-only jobs ran at once.",
        ),
        _figure(
            content.figures["occupancy"],
            f"GPUs in use and idle GPUs by cause (top; {use.gpu_capacity} GPUs in the allocation), and cores in "
            f"use (bottom; {use.core_capacity}), as means over bins of "
            f"{_duration(content.end_h / max(1, len(use.centres_h)))}.",
        ),
        '<table id="gpu-hours-table"><tr><th>GPU time</th><th>GPU hours</th><th>% of the allocation</th>'
        f"<th>meaning</th></tr><tr><th>in use</th><td class='num'>{_fmt(use.busy_gpu_h)}</td>"
        f"<td class='num'>{share(use.busy_gpu_h)}</td><td></td></tr>{idle_rows}</table>"
        f"{_csv_links(content.tables['gpu_hours'])}",
        _figure(
            content.figures["queues"],
            "Queue depths: the sampler's candidates (top) and the sims waiting before they run (bottom).",
        ),
    )


def _failures(content: PageContent) -> str:
    shown = content.failures[:MAX_FAILURE_ROWS]
    more = len(content.failures) - len(shown)
    rows = "".join(
        f"<tr><td class='num'>{f.job}</td><td>{_e(f.kind)}</td><td>{_e(f.subject)}</td><td>{_e(f.state)}</td>"
        f"<td class='num'>{f.attempts}</td><td class='num'>{f.failures}</td><td>{_e(f.reason)}</td>"
        f"<td class='num'>{'' if f.exit_code is None else f.exit_code}</td><td><code>{_e(f.log_path)}</code></td></tr>"
        for f in shown
    )
    note = f"<p>{more:,} more in the CSV file.</p>" if more > 0 else ""
    if not content.failures:
        return _section("failures", "<p>No job failed.</p>" + _csv_links(content.tables["failures"]))
    return _section(
        "failures",
        "<p>Every job with a failed attempt (a clean stop to be continued, exit 75, is none), with its last "
        "failure. Attempts: submissions of the job in all; failures: attempts that failed.</p>"
        '<table id="failures-table"><tr><th>job</th><th>kind</th><th>subject</th><th>state</th><th>attempts</th>'
        f"<th>failures</th><th>last failure</th><th>exit code</th><th>log</th></tr>{rows}</table>{note}"
        f"{_csv_links(content.tables['failures'])}",
    )


# ------------------------------------------------------------------- pieces
def _figure(files: FigureFiles | None, caption: str) -> str:
    if files is None:
        return "<p>Nothing to draw yet.</p>"
    return (
        f'<figure><a href="{files.png}"><img src="{files.png}" alt="{_e(caption)}"></a>'
        f"<figcaption>{_e(caption)} {_csv_links(*files.csvs)}</figcaption></figure>"
    )


def _csv_links(*names: str) -> str:
    links = ", ".join(f'<a href="{n}">{n}</a>' for n in names)
    return f'<span class="muted">Numbers: {links}.</span>' if names else ""


def _exit(resumable: bool | None, reason: str | None) -> str:
    if reason is None:
        return "—"
    return "75 (resumable)" if resumable else "0"


def _duration(hours: float) -> str:
    if hours < 1 / 60:
        return f"{_fmt(hours * 3600)} s"
    return f"{_fmt(hours * 60)} min" if hours < 2 else f"{_fmt(hours)} h"


def _hours(clock: CampaignClock, unix_s: float) -> float:
    return round(float(clock.hours(unix_s)), 4)


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool) or isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        return f"{value:,.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    return str(value)


def _e(text: Any) -> str:
    return html.escape(str(text))
