"""The figures of ``mummi-report``: each a PNG and the numbers behind it as CSV, in the report's folder.

Drawn with matplotlib's object API on the Agg canvas (no pyplot state, no
display). What a screen cannot show is not drawn one by one: scatter plots of
many points are rasterised, lines are decimated to a few thousand points, the
job timeline shows the first nodes only and the parallel coordinates a sample of
the patches; the CSV files hold the numbers the figure shows.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.artist import Artist
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from mummi.analysis.coverage import COMPARISONS
from mummi.analysis.feedback_plot import plot_feedback
from mummi.core.lipids import CHANNEL_NAMES
from mummi.workflow.report_data import Coverage, FeedbackData, SelectionHistory
from mummi.workflow.report_jobs import IDLE_CAUSES, QUEUED_SIM_STATES, Attempts, Lane, Usage

DPI = 100
MAX_LINE_POINTS = 4000
"""Points a line is decimated to: more than a figure's width in pixels, far fewer than a campaign's events."""
PARALLEL_LINES = 400
"""Patches drawn per panel of the parallel coordinates."""
KIND_COLOURS = {
    "precampaign": "tab:gray",
    "train": "tab:olive",
    "macro": "tab:purple",
    "createsim": "tab:orange",
    "sim": "tab:blue",
    "analysis": "tab:green",
}
SAMPLE_TITLES = {"all": "all patches", "random": "random selection", "dynim": "DynIm", "weighted": "DynIm, weighted"}


@dataclass(frozen=True)
class FigureFiles:
    """A figure's PNG and its CSV files, names relative to the report folder."""

    png: str
    csvs: tuple[str, ...]


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path.name


def _save(fig: Figure, path: Path) -> str:
    fig.savefig(path, dpi=DPI)
    return path.name


def time_unit(end_h: float) -> tuple[float, str]:
    """Divisor and axis label for campaign hours: minutes up to two hours, days beyond three days."""
    if end_h > 72:
        return 24.0, "campaign time (days)"
    return (1.0, "campaign time (h)") if end_h > 2 else (1 / 60, "campaign time (min)")


def decimate(n: int, limit: int = MAX_LINE_POINTS) -> np.ndarray:
    """Indices of at most ``limit`` evenly spread points of ``n``, the last included."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.concatenate([np.linspace(0, n - 1, limit).astype(np.int64), [n - 1]]))


def _f(value: float) -> str:
    return "" if not np.isfinite(value) else f"{value:.6g}"


# -------------------------------------------------------- selection history
def selection_history(history: SelectionHistory, end_h: float, out: Path) -> FigureFiles:
    """Seed 000's Fig. 3: each selection's score (dots, left), cumulative evaluated and selected (lines, right)."""
    scale, label = time_unit(end_h)
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax = fig.add_subplot()
    scored = np.isfinite(history.scores)
    ax.scatter(
        history.selected_h[scored] / scale,
        history.scores[scored],
        s=3,
        color="0.45",
        linewidths=0,
        rasterized=True,
        label="score of a selected patch",
    )
    ax.set_xlabel(label)
    ax.set_ylabel("DynIm score of the selected patch")
    for k, t in enumerate(history.feedback_h):
        ax.axvline(t / scale, color="tab:red", lw=0.8, alpha=0.6, label="feedback round" if k == 0 else None)
    right = ax.twinx()
    i = decimate(len(history.evaluated_h))
    right.plot(history.evaluated_h[i] / scale, history.evaluated[i], color="tab:blue", label="evaluated")
    j = decimate(len(history.selected_h))
    right.plot(history.selected_h[j] / scale, j + 1, color="tab:orange", label="selected")
    right.set_ylabel("patches (cumulative, log scale)")
    right.set_yscale("symlog", linthresh=10)
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    fig.legend(handles=handles, loc="outside upper center", ncols=len(handles), fontsize=8, markerscale=3)
    ax.set_xlim(0, max(end_h, 1e-6) / scale)
    png = _save(fig, out / "selection-history.png")
    scores = write_csv(
        out / "selection-history.csv",
        ("campaign_h", "sim_id", "score", "selected_cumulative"),
        (
            (_f(t), s, _f(v), n + 1)
            for n, (t, s, v) in enumerate(zip(history.selected_h, history.sim_ids, history.scores))
        ),
    )
    evaluated = write_csv(
        out / "evaluated.csv",
        ("campaign_h", "evaluated_cumulative"),
        zip(map(_f, history.evaluated_h), history.evaluated.tolist()),
    )
    rounds = write_csv(
        out / "feedback-times.csv", ("round", "campaign_h"), ((k + 1, _f(t)) for k, t in enumerate(history.feedback_h))
    )
    return FigureFiles(png, (scores, evaluated, rounds))


# ----------------------------------------------------------------- coverage
def coverage_densities(coverage: Coverage, marginals: list[dict[str, np.ndarray]], out: Path) -> FigureFiles:
    """Seed 000's Fig. 4 (bottom): 2-D marginal densities of pairs of latent dimensions, one row per distribution.

    ``marginals``: :meth:`Coverage.marginals`, one colour scale per pair.
    """
    names = list(SAMPLE_TITLES)
    pairs = coverage.pairs
    fig = Figure(figsize=(2.3 * len(pairs) + 1.2, 2.2 * len(names)), layout="constrained")
    axes = fig.subplots(len(names), len(pairs), squeeze=False)
    rows: list[tuple[object, ...]] = []
    box = coverage.box
    for col, (pair, densities) in enumerate(zip(pairs, marginals)):
        i, j = pair
        bins = len(densities["all"])
        extent = (box.lo[i], box.hi[i], box.lo[j], box.hi[j])
        top = max(float(d.max()) for d in densities.values()) or 1.0
        xc = box.lo[i] + (np.arange(bins) + 0.5) * (box.hi[i] - box.lo[i]) / bins
        yc = box.lo[j] + (np.arange(bins) + 0.5) * (box.hi[j] - box.lo[j]) / bins
        for row, name in enumerate(names):
            ax = axes[row, col]
            ax.imshow(
                densities[name].T,
                origin="lower",
                extent=extent,
                aspect="auto",
                cmap="viridis",
                vmin=0,
                vmax=top,
                interpolation="nearest",
            )
            ax.tick_params(labelsize=6)
            ax.locator_params(nbins=3)
            if row == 0:
                ax.set_title(f"z{i} vs z{j}", fontsize=9)
            if col == 0:
                ax.set_ylabel(SAMPLE_TITLES[name], fontsize=9)
            nz = np.argwhere(densities[name] > 0)
            rows.extend((f"z{i}", f"z{j}", name, _f(xc[a]), _f(yc[b]), _f(densities[name][a, b])) for a, b in nz)
    png = _save(fig, out / "coverage.png")
    table = write_csv(out / "coverage-densities.csv", ("x_dim", "y_dim", "distribution", "x", "y", "probability"), rows)
    return FigureFiles(png, (table,))


def coverage_divergences(coverage: Coverage, divergences: list[dict[str, float]], out: Path) -> str:
    names = [name for name, _, _ in COMPARISONS]
    rows = [(f"z{i}", f"z{j}", *(_f(d[n]) for n in names)) for (i, j), d in zip(coverage.pairs, divergences)]
    return write_csv(out / "coverage-kl.csv", ("x_dim", "y_dim", *names), rows)


def parallel_coordinates(coverage: Coverage, seed: int, out: Path) -> FigureFiles:
    """Seed 000's Fig. 4 (top right): each drawn line one patch across all latent dimensions, scaled to [0, 1].

    Each panel draws :data:`PARALLEL_LINES` patches of its distribution; the weighted panel draws the
    selected patches with probability proportional to their weight.
    """
    rng = np.random.default_rng(seed)
    dim = coverage.latents.shape[1]
    fig = Figure(figsize=(10, 1.9 * len(SAMPLE_TITLES)), layout="constrained")
    axes = fig.subplots(len(SAMPLE_TITLES), 1, sharex=True, squeeze=False)[:, 0]
    rows: list[tuple[object, ...]] = []
    for ax, (name, (x, w)) in zip(axes, coverage.samples().items()):
        n = min(PARALLEL_LINES, len(x))
        if w is None:
            drawn = rng.choice(len(x), size=n, replace=False)
        else:
            drawn = rng.choice(len(x), size=n, replace=True, p=w / w.sum())
        y = coverage.box.normalise(x[drawn].astype(np.float64))
        segments = np.stack([np.broadcast_to(np.arange(dim), y.shape), y], axis=-1)
        ax.add_collection(LineCollection(list(segments), colors="tab:blue", alpha=max(0.02, min(0.5, 8.0 / n)), lw=0.6))
        ax.set_xlim(-0.2, dim - 0.8)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel(SAMPLE_TITLES[name], fontsize=9)
        ax.vlines(np.arange(dim), 0, 1, color="0.3", lw=0.5)
        rows.extend((name, k, *map(_f, line)) for k, line in enumerate(y))
    axes[-1].set_xticks(np.arange(dim), [f"z{d}" for d in range(dim)])
    png = _save(fig, out / "parallel-coordinates.png")
    table = write_csv(out / "parallel-coordinates.csv", ("distribution", "line", *(f"z{d}" for d in range(dim))), rows)
    return FigureFiles(png, (table,))


# ----------------------------------------------------------------- feedback
def feedback(data: FeedbackData, out: Path) -> FigureFiles | None:
    """Seed 000's Fig. 5: per corrected channel, MD g(r) against the macro model's first and latest; distances."""
    if not data.round_files or not data.channels:
        return None
    png = plot_feedback(data.round_files, data.channels, out / "feedback.png")
    if png is None:
        return None
    with (
        np.load(data.round_files[0], allow_pickle=False) as first,
        np.load(data.round_files[-1], allow_pickle=False) as last,
    ):
        r_nm, g_first, g_last, g_md = last["r_nm"], first["g_macro"], last["g_macro"], last["g_md"]
    rows = (
        (CHANNEL_NAMES[c], _f(r), _f(g_md[c, k]), _f(g_first[c, k]), _f(g_last[c, k]))
        for c in data.channels
        for k, r in enumerate(r_nm)
    )
    gr = write_csv(
        out / "feedback-gr.csv", ("channel", "r_nm", "g_md_weighted_latest", "g_macro_initial", "g_macro_latest"), rows
    )
    rounds = write_csv(
        out / "feedback-rounds.csv",
        ("round", "n_sims", "parameter_version", "distance_kT"),
        (
            (
                r["round"],
                r["n_sims"],
                r["parameter_version"],
                _f(r["distance"] if r["distance"] is not None else np.nan),
            )
            for r in data.rounds
        ),
    )
    return FigureFiles(png.name, (gr, rounds))


# ---------------------------------------------------------------- resources
def timeline(
    attempts: Attempts, lanes: list[Lane], placed: dict[int, list[int]], end_h: float, out: Path
) -> FigureFiles:
    """A Gantt chart: each attempt a bar on the GPUs it held (or its node's CPU lane), coloured by kind."""
    scale, label = time_unit(end_h)
    fig = Figure(figsize=(10, 1.2 + 0.16 * max(len(lanes), 6)), layout="constrained")
    ax = fig.add_subplot()
    bars: dict[tuple[int, str], list[tuple[float, float]]] = {}
    for i, on in placed.items():
        start = attempts.started[i]
        stop = attempts.ended[i] if np.isfinite(attempts.ended[i]) else end_h
        for lane in on:
            bars.setdefault((lane, str(attempts.kind[i])), []).append((start / scale, max(stop - start, 0.0) / scale))
    for (lane, kind), spans in bars.items():
        ax.broken_barh(spans, (lane - 0.4, 0.8), facecolors=KIND_COLOURS.get(kind, "0.5"), edgecolor="none")
    failed_attempts = attempts.failed
    failed = [i for i in placed if failed_attempts[i]]
    if failed:
        ax.scatter(
            [attempts.ended[i] / scale for i in failed],
            [placed[i][0] for i in failed],
            marker="x",
            s=14,
            color="black",
            lw=0.8,
            zorder=3,
        )
    ax.set_yticks(range(len(lanes)), [f"{lane.node} {lane.label}" for lane in lanes], fontsize=6)
    ax.set_ylim(len(lanes) - 0.5, -0.5)
    ax.set_xlim(0, max(end_h, 1e-6) / scale)
    ax.set_xlabel(label)
    handles: list[Artist] = [Patch(color=c, label=k) for k, c in KIND_COLOURS.items() if (attempts.kind == k).any()]
    if failed:
        handles.append(Line2D([], [], marker="x", color="black", lw=0, label="attempt failed"))
    fig.legend(handles=handles, fontsize=7, ncols=len(handles), loc="outside upper center")
    png = _save(fig, out / "timeline.png")
    rows = (
        (
            int(attempts.job[i]),
            attempts.kind[i],
            attempts.subject[i],
            attempts.backend_id[i],
            lanes[on[0]].node,
            " ".join(lanes[lane].label for lane in on),
            _f(attempts.started[i]),
            _f(attempts.ended[i]),
            attempts.state[i],
        )
        for i, on in sorted(placed.items())
    )
    table = write_csv(
        out / "timeline.csv",
        ("job", "kind", "subject", "backend_id", "node", "lanes", "start_h", "end_h", "state"),
        rows,
    )
    return FigureFiles(png, (table,))


IDLE_COLOURS = {
    "before the first sim": "0.8",
    "nodes down": "tab:red",
    "queued in the backend": "tab:orange",
    "no sim ready": "tab:pink",
}


def occupancy(use: Usage, end_h: float, out: Path) -> FigureFiles:
    """GPUs in use and idle by cause (stacked), and cores in use, as means over short bins of campaign time."""
    scale, label = time_unit(end_h)
    t = use.centres_h / scale
    fig = Figure(figsize=(10, 5.5), layout="constrained")
    gpu_ax, core_ax = fig.subplots(2, 1, sharex=True)
    layers = [use.gpus_busy, *use.idle.values()]
    labels = ["in use", *(f"idle: {k}" if use.idle_gpu_h[k] > 0 else "_" for k in use.idle)]
    gpu_ax.stackplot(t, *layers, colors=["tab:blue", *(IDLE_COLOURS[k] for k in use.idle)], step="mid", labels=labels)
    gpu_ax.axhline(use.gpu_capacity, color="black", lw=0.8)
    gpu_ax.set_ylabel(f"GPUs (of {use.gpu_capacity})")
    fig.legend(fontsize=7, loc="outside upper center", ncols=len(labels))
    core_ax.fill_between(t, use.cores_busy, step="mid", color="tab:green", alpha=0.7)
    core_ax.axhline(use.core_capacity, color="black", lw=0.8)
    core_ax.set_ylabel(f"cores in use (of {use.core_capacity})")
    core_ax.set_xlabel(label)
    core_ax.set_xlim(0, max(end_h, 1e-6) / scale)
    png = _save(fig, out / "occupancy.png")
    names = [f"gpus_idle_{k.replace(' ', '_')}" for k in use.idle]
    rows = (
        (_f(a), _f(b), _f(g), _f(c), *(_f(v[k]) for v in use.idle.values()))
        for k, (a, b, g, c) in enumerate(zip(use.edges_h[:-1], use.edges_h[1:], use.gpus_busy, use.cores_busy))
    )
    table = write_csv(out / "occupancy.csv", ("from_h", "to_h", "gpus_busy", "cores_busy", *names), rows)
    return FigureFiles(png, (table,))


def idle_table(use: Usage, out: Path) -> str:
    capacity_h = use.gpu_capacity * (use.edges_h[-1] - use.edges_h[0])
    rows = [("in use", _f(use.busy_gpu_h), _f(use.busy_gpu_h / capacity_h if capacity_h else np.nan), "")]
    rows += [
        (f"idle: {k}", _f(v), _f(v / capacity_h if capacity_h else np.nan), IDLE_CAUSES[k])
        for k, v in use.idle_gpu_h.items()
    ]
    return write_csv(out / "gpu-hours.csv", ("gpu_time", "gpu_hours", "fraction", "meaning"), rows)


QUEUE_TITLES = {
    "candidates": "candidates (sampler queue)",
    "selected": "sims selected, set-up not started",
    "setting_up": "sims setting up",
    "ready": "sims set up, waiting for a GPU",
}


def queues(use: Usage, end_h: float, out: Path) -> FigureFiles:
    """Queue depths: the sampler's candidates, and the sims waiting in each state before they run."""
    scale, label = time_unit(end_h)
    t = use.edges_h[1:] / scale
    fig = Figure(figsize=(10, 4.5), layout="constrained")
    cand_ax, sim_ax = fig.subplots(2, 1, sharex=True)
    cand_ax.step(t, use.queues["candidates"], where="post", color="tab:purple")
    cand_ax.set_ylabel("candidates")
    for state in QUEUED_SIM_STATES:
        sim_ax.step(t, use.queues[state], where="post", label=QUEUE_TITLES[state])
    sim_ax.set_ylabel("sims waiting")
    sim_ax.legend(fontsize=7, loc="upper left")
    sim_ax.set_xlabel(label)
    sim_ax.set_xlim(0, max(end_h, 1e-6) / scale)
    png = _save(fig, out / "queues.png")
    names = list(use.queues)
    rows = ((_f(a), *(_f(use.queues[n][k]) for n in names)) for k, a in enumerate(use.edges_h[1:]))
    table = write_csv(out / "queues.csv", ("campaign_h", *names), rows)
    return FigureFiles(png, (table,))
