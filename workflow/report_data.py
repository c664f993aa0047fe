"""What ``mummi-report`` shows of a campaign's science and progress, read from its folder without changing it.

The state store is opened read-only (as ``mummi-status`` opens it), so a report
may be made while the campaign runs. Times in the store are Unix seconds of the
coordinator's machine; the report shows *campaign hours* on the backend's clock
(:class:`CampaignClock`). The jobs, resources and failures are read by
:mod:`mummi.workflow.report_jobs`.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mummi.analysis.coverage import Box, density_2d, latent_pairs
from mummi.core.layout import CampaignLayout
from mummi.core.lipids import N_CHANNELS
from mummi.core.spec import CampaignSpec
from mummi.core.spec_loader import SpecError, load_spec
from mummi.core.states import PatchState, SimState
from mummi.core.unreadable import UnreadableFileError
from mummi.sampler.dynim import DynimSampler
from mummi.sampler.history import read_history
from mummi.workflow import macro_link
from mummi.workflow.store import count_by_state

MAX_DENSITY_BINS = 40
"""Cells per latent dimension of the 2-D marginal densities (and of their KL divergences), at most."""


def density_bins(n_selected: int) -> int:
    """Cells per dimension for a selection of ``n_selected``: about one selected patch per cell on average, so the
    densities of a small campaign are not all empty cells; from 5 to :data:`MAX_DENSITY_BINS`."""
    return int(min(MAX_DENSITY_BINS, max(5, round(n_selected**0.5))))


@dataclass(frozen=True)
class CampaignClock:
    """Store times (Unix seconds) to campaign hours.

    Without ``anchors``: wall-clock hours since the campaign was created. With them
    (Unix seconds and campaign seconds of the same moments, both increasing): the
    backend's own clock, interpolated between the anchors, as for the simulated
    backend, whose virtual days pass in wall-clock minutes.
    """

    origin_s: float
    anchors: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def matched(cls, origin_s: float, unix_s: np.ndarray, campaign_s: np.ndarray) -> CampaignClock:
        """A clock through the pairs (``unix_s``, ``campaign_s``) of moments both clocks saw; wall-clock without."""
        if len(unix_s) < 2:
            return cls(origin_s)
        order = np.argsort(unix_s, kind="stable")
        unix, campaign = unix_s[order], np.maximum.accumulate(campaign_s[order])
        unix, first = np.unique(unix, return_index=True)
        return cls(origin_s, (unix, campaign[first]))

    def hours(self, unix_s: Any) -> np.ndarray:
        t = np.asarray(unix_s, dtype=np.float64)
        if self.anchors is None:
            return (t - self.origin_s) / 3600.0
        return np.interp(t, *self.anchors) / 3600.0

    @property
    def virtual(self) -> bool:
        return self.anchors is not None


# ------------------------------------------------------------------ summary
@dataclass(frozen=True)
class Run:
    """One run of ``mummi-run`` on the campaign (an allocation)."""

    number: int
    began_unix: float
    ended_unix: float | None
    reason: str | None
    """Why it stopped, as the coordinator recorded it; None: no stop recorded (killed, crashed or running)."""
    resumable: bool | None


@dataclass(frozen=True)
class Summary:
    campaign: str | None
    meta: dict[str, Any]
    patches: dict[str, int | None]
    """Patches per state in the store; ``evaluated``: all it holds; ``candidates`` and ``discarded``: the
    sampler's queue and what fell off it (None when unknown)."""
    sims: dict[str, int]
    """Selections per sim state, with ``total`` and ``unfinished``."""
    rounds: list[dict[str, Any]]
    """Finished feedback rounds, oldest first (round, n_sims, parameter_version, distance, finished_unix)."""
    runs: list[Run]
    last_event_unix: float | None
    spec_text: str | None


def read_summary(db: sqlite3.Connection, cdir: CampaignLayout) -> Summary:
    meta = {r[0]: json.loads(r[1]) for r in db.execute("SELECT key, value FROM meta")}
    patches: dict[str, int | None] = {**count_by_state(db, "patches", PatchState)}
    patches["evaluated"] = db.execute("SELECT COUNT(*) FROM patches").fetchone()[0]
    patches.update(_sampler_queue(cdir))
    sims = count_by_state(db, "selections", SimState)
    sims["total"] = sum(sims.values())
    sims["unfinished"] = sims["total"] - sims[SimState.DONE.value] - sims[SimState.FAILED.value]
    rounds = [
        {
            "round": r[0],
            "n_sims": r[1],
            "parameter_version": r[2],
            "distance": r[3],
            "finished_unix": r[4],
            "details": json.loads(r[5]),
        }
        for r in db.execute(
            "SELECT round, n_sims, parameter_version, distance, finished_at, details"
            " FROM feedback_rounds WHERE finished_at IS NOT NULL ORDER BY round"
        )
    ]
    last = db.execute("SELECT MAX(time) FROM events").fetchone()[0]
    spec_text = cdir.spec_copy.read_text() if cdir.spec_copy.is_file() else None
    return Summary(meta.get("campaign"), meta, patches, sims, rounds, _runs(db), last, spec_text)


def _sampler_queue(cdir: CampaignLayout) -> dict[str, int | None]:
    """The sampler's candidates and discarded patches after its last recorded event (the store tracks neither:
    its patches stay ``candidate`` once offered); None without a history."""
    unknown: dict[str, int | None] = {"candidates": None, "discarded": None}
    if not cdir.sampler_history.is_file():
        return unknown
    with open(cdir.sampler_history, "rb") as fh:
        fh.seek(max(0, fh.seek(0, os.SEEK_END) - 4096))
        lines = fh.read().decode("utf-8", "replace").strip().splitlines()
    try:
        n_candidates, n_selected, n_seen = (int(v) for v in lines[-1].split(",")[-3:])
    except (IndexError, ValueError):  # empty, or the header alone
        return unknown
    return {"candidates": n_candidates, "discarded": n_seen - n_selected - n_candidates}


def _runs(db: sqlite3.Connection) -> list[Run]:
    runs: list[Run] = []
    rows = db.execute(
        "SELECT time, kind, data FROM events WHERE kind IN ('campaign.created', 'campaign.resumed', 'campaign.stopped')"
        " ORDER BY id"
    )
    for time_s, kind, data in rows:
        if kind != "campaign.stopped":
            runs.append(Run(len(runs) + 1, time_s, None, None, None))
        elif runs and runs[-1].reason is None:
            stop = json.loads(data)
            last = runs[-1]
            runs[-1] = Run(last.number, last.began_unix, time_s, stop.get("reason"), stop.get("resumable"))
    return runs


def load_campaign_spec(cdir: CampaignLayout) -> CampaignSpec | None:
    """The spec the campaign last ran with; None when it is missing or no longer valid here (a copied folder)."""
    try:
        return load_spec(cdir.spec_copy) if cdir.spec_copy.is_file() else None
    except SpecError:
        return None


# -------------------------------------------------------- selection history
@dataclass(frozen=True)
class SelectionHistory:
    """Seed 000's Fig. 3: every selection's score, and the cumulative counts, against campaign hours."""

    selected_h: np.ndarray
    scores: np.ndarray
    """NaN where the store has none (the first pick, scored against an empty selection)."""
    sim_ids: list[str]
    evaluated_h: np.ndarray
    """Moments patches were recorded, with the cumulative count after each in ``evaluated``."""
    evaluated: np.ndarray
    feedback_h: np.ndarray


def read_selection_history(db: sqlite3.Connection, clock: CampaignClock, summary: Summary) -> SelectionHistory:
    rows = db.execute("SELECT selected_at, score, sim_id FROM selections ORDER BY seq").fetchall()
    selected = np.array([r[0] for r in rows], dtype=np.float64)
    scores = np.array([np.nan if r[1] is None else r[1] for r in rows], dtype=np.float64)
    batches = np.array(
        db.execute("SELECT created_at, COUNT(*) FROM patches GROUP BY created_at ORDER BY created_at").fetchall(),
        dtype=np.float64,
    ).reshape(-1, 2)
    finished = np.array([r["finished_unix"] for r in summary.rounds], dtype=np.float64)
    return SelectionHistory(
        clock.hours(selected),
        scores,
        [r[2] for r in rows],
        clock.hours(batches[:, 0]),
        np.cumsum(batches[:, 1]).astype(np.int64),
        clock.hours(finished),
    )


def read_candidates(cdir: CampaignLayout, clock: CampaignClock) -> tuple[np.ndarray, np.ndarray]:
    """The candidate queue's length after each sampler event: (campaign hours, |C|); empty without a history."""
    if not cdir.sampler_history.is_file():
        return np.empty(0), np.empty(0, dtype=np.int64)
    try:
        history = read_history(cdir.sampler_history)
    except (UnreadableFileError, IndexError):
        return np.empty(0), np.empty(0, dtype=np.int64)
    return clock.hours(history["time"]), history["n_candidates"]


# ----------------------------------------------------------------- feedback
@dataclass(frozen=True)
class FeedbackData:
    """Seed 000's Fig. 5: the round files of the finished rounds and the channels the feedback corrects."""

    round_files: list[Path]
    channels: list[int]
    rounds: list[dict[str, Any]]


def read_feedback(cdir: CampaignLayout, spec: CampaignSpec | None, summary: Summary) -> FeedbackData:
    files = [cdir.feedback_round(r["round"]) for r in summary.rounds]
    files = [f for f in files if f.is_file()]
    if spec is not None:
        channels = macro_link.feedback_channels(spec)
    elif files:  # the channels whose potentials a round changed
        with np.load(files[0], allow_pickle=False) as first:  # potentials: (..., channel, r)
            changed = np.any(first["potentials_after"] != first["potentials_before"], axis=-1)
        channels = np.flatnonzero(changed.reshape(-1, N_CHANNELS).any(axis=0)).tolist()
    else:
        channels = []
    return FeedbackData(files, channels, summary.rounds)


# ----------------------------------------------------------------- coverage
@dataclass
class Coverage:
    """Seed 000's Figs. 4 and 6 on the campaign's own latents, from the sampler's latest checkpoint."""

    latents: np.ndarray
    """Every patch the sampler has seen, in arrival order."""
    selected: np.ndarray
    """Indices into ``latents`` of the selected patches, in order of selection."""
    weights: np.ndarray
    """DynIm weight of each selected patch: 1 + the unselected patches nearest to it."""
    random: np.ndarray
    """Indices of a uniformly random selection of the same size (seeded with the campaign's seed)."""
    generation: int | None
    event_id: int | None
    box: Box = field(init=False)
    pairs: list[tuple[int, int]] = field(init=False)

    def __post_init__(self) -> None:
        self.box = Box.around(self.latents)
        self.pairs = latent_pairs(self.latents.shape[1])

    def samples(self) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """The four distributions of Fig. 4: (points, weights) of all patches, random, DynIm, weighted DynIm."""
        chosen = self.latents[self.selected]
        return {
            "all": (self.latents, None),
            "random": (self.latents[self.random], None),
            "dynim": (chosen, None),
            "weighted": (chosen, self.weights),
        }

    def marginals(self, bins: int) -> list[dict[str, np.ndarray]]:
        """For each of :attr:`pairs`, the 2-D density of each of the four distributions of :meth:`samples`."""
        samples = self.samples()
        return [
            {name: density_2d(x, pair, self.box, bins, w) for name, (x, w) in samples.items()} for pair in self.pairs
        ]


def read_coverage(cdir: CampaignLayout, meta: dict[str, Any]) -> Coverage | None:
    """The latents, selection and weights of the sampler's latest checkpoint; None before the first one.

    The sampler is restored with its history sent to ``os.devnull``, so the
    campaign's own history file is neither cut back nor appended to.
    """
    saved = meta.get("sampler_checkpoint")
    if saved is None:
        return None
    try:
        sampler = DynimSampler.restore(
            cdir.sampler / saved["dir"], history=os.devnull, generation=saved.get("generation")
        )
    except (UnreadableFileError, FileNotFoundError):
        return None
    if sampler.n_selected == 0:
        return None
    rng = np.random.default_rng(meta.get("seed", 0))
    random = np.sort(rng.choice(sampler.n_seen, size=sampler.n_selected, replace=False))
    return Coverage(
        sampler.seen_latents,
        sampler.selected_indices,
        sampler.weight_array(normalize=False),
        random,
        saved.get("generation"),
        saved.get("event_id"),
    )
