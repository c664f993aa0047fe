"""The feedback round as the coordinator runs it: gather counts, weight, invert, write parameters, record.

A round runs once ``feedback.interval_sims`` more sims have run than at the last
round (or ``interval_s`` has passed; none before ``start_h``), provided the macro
model has written frames with the latest parameter version, so that each round
measures the effect of the one before. It uses every sim's counts: the final
counts of finished analyses from one table, the latest counts of the others from
their files. Each round's tables go to ``feedback/round-NNN.npz``;
the plot of the macro model's g(r) against the MD g(r), first round vs latest
(like the paper's Fig. 5), and the distance per round go to
``feedback/feedback.png``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mummi.analysis.feedback import correction_on, gr_distance, gr_rms, ibi_correction
from mummi.analysis.feedback_plot import plot_feedback
from mummi.analysis.rdf import RDFCounts, bin_edges
from mummi.analysis.rdf_table import RdfShells, RdfTable
from mummi.core import simdir
from mummi.core.atomic import atomic_savez
from mummi.core.layout import CampaignLayout
from mummi.core.lipids import N_CHANNELS
from mummi.core.spec import CampaignSpec
from mummi.core.states import JobKind, SimState
from mummi.workflow import macro_link
from mummi.workflow.ingest import Ingest
from mummi.workflow.store import StateStore

log = logging.getLogger(__name__)

_RETRY_S = 5.0
"""A round that was due but found too few sims with counts is tried again this much later."""


class FeedbackStage:
    """Feedback rounds: when one is due, the weighted MD g(r) against the macro model's, a new parameter version.

    Owns the feedback rounds in the store, the ``feedback/`` folder and the table of
    finished sims' RDF counts (:class:`~mummi.analysis.rdf_table.RdfTable`, fed by
    :meth:`on_analysis_done`), so that a round at full size reads the files of the
    running sims only. It reads the sampler's weights, and writes parameter versions
    the macro model picks up at its next reload point; it never talks to the macro
    job or any other job, and never changes a sim's state. ``clock`` is campaign time
    in seconds (it continues across allocations).
    """

    def __init__(self, spec: CampaignSpec, cdir: CampaignLayout, store: StateStore, ingest: Ingest,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.spec, self.cdir, self.store, self.ingest = spec, cdir, store, ingest
        self._clock = clock
        self._last_time = clock()
        self._last_try = -math.inf
        self.shells = RdfShells(bin_edges(spec.analysis.bin_nm, spec.analysis.r_max_nm),
                                macro_link.comparison_edges(spec))  # fmt: skip
        self.table = RdfTable(cdir.feedback / "rdf-table", self.shells, N_CHANNELS)
        abandoned = store.abandon_open_feedback_round()
        if abandoned is not None:
            # The round runs again from the start, on the latest parameter version.
            log.warning("feedback round %d was cut short by a restart; it runs again when due", abandoned)
        if spec.feedback.enabled:
            for sel in store.selections([SimState.DONE]):  # finished while no coordinator ran, or cut short
                if sel.sim_id not in self.table:
                    self.on_analysis_done(sel.sim_id)

    def on_analysis_done(self, sim_id: str) -> None:
        """A sim's analysis job ended well: once it has analysed the whole sim, the final counts join the table."""
        sim_dir = self.cdir.sim(sim_id)
        if self.spec.feedback.enabled and simdir.is_done(sim_dir, JobKind.ANALYSIS):
            self.table.add(sim_id, RDFCounts.load(sim_dir / simdir.RDF_COUNTS))

    def maybe_run(self) -> None:
        """Run a round when one is due (``interval_sims`` more sims have run, or ``interval_s`` has passed)."""
        fb = self.spec.feedback
        now = self._clock()
        if not fb.enabled or now < 3600 * fb.start_h or now - self._last_try < _RETRY_S:
            return
        counts = self.store.sim_counts()
        have_run = counts[SimState.RUNNING.value] + counts[SimState.DONE.value]
        rounds = self.store.feedback_rounds()
        last_n = rounds[-1].n_sims if rounds else 0
        due = have_run >= max(fb.min_sims, last_n + fb.interval_sims)
        if fb.interval_s is not None and have_run >= fb.min_sims and now - self._last_time >= fb.interval_s:
            due = True
        if not due:
            return
        version = macro_link.latest_version(self.cdir)
        g_macro = None if version is None else self.ingest.source.macro_gr(version)
        if version is None or g_macro is None:
            return  # no frame has used the latest parameters yet
        began = time.perf_counter()
        sims, rows = self._counts()
        if len(sims) < fb.min_sims:
            self._last_try = now
            return
        self._run_round(have_run, sims, rows, version, g_macro, began)
        self._last_time = now

    def _counts(self) -> tuple[list[str], np.ndarray]:
        """Patches and rows of every sim with counts: the table's, then the latest of those still analysed."""
        patch_of = {}
        partial_sims, partial_rows = [], []
        for sel in self.store.selections([SimState.RUNNING, SimState.DONE]):
            patch_of[sel.sim_id] = sel.patch_id
            if sel.sim_id in self.table:
                continue
            path = self.cdir.sim(sel.sim_id) / simdir.RDF_COUNTS
            row = self.shells.row(RDFCounts.load(path)) if path.is_file() else None
            if row is not None:
                partial_sims.append(sel.sim_id)
                partial_rows.append(row)
        rows = np.concatenate([self.table.rows(), np.reshape(partial_rows, (-1, self.table.width))])
        return [patch_of.get(s, "") for s in [*self.table.sim_ids, *partial_sims]], rows

    def _run_round(self, have_run: int, patches: list[str], rows: np.ndarray, version: int, g_macro: np.ndarray,
                   began: float) -> None:  # fmt: skip
        fb = self.spec.feedback
        r_nm = 0.5 * (self.shells.edges[1:] + self.shells.edges[:-1])
        weights = self.ingest.sampler.weights() if fb.use_weights else {}
        g_md = self.shells.gr(rows, np.array([weights.get(p, 1.0) for p in patches]))
        channels = macro_link.feedback_channels(self.spec)
        distance = gr_distance(g_macro, g_md, r_nm, channels)
        round_no = self.store.start_feedback_round(have_run)
        params = macro_link.load(self.cdir, version)
        step = np.zeros_like(g_macro)
        step[channels] = ibi_correction(g_macro[channels], g_md[channels], self.spec.macro.temperature_K, fb.damping)
        pmf = params.pmf_kj_mol + correction_on(params.pmf_r_nm, r_nm, step)[None]
        new_version = macro_link.write_pmf(self.cdir, params, pmf)
        atomic_savez(
            self.cdir.feedback_round(round_no),
            r_nm=r_nm,
            g_macro=g_macro,
            g_md=g_md,
            potentials_before=params.pmf_kj_mol,
            potentials_after=pmf,
            distance=distance,
            parameter_version=version,
            new_parameter_version=new_version,
        )
        self.store.finish_feedback_round(
            round_no,
            new_version,
            distance,
            from_version=version,
            sims_with_counts=len(patches),
            campaign_time_s=self._clock(),
            wall_s=time.perf_counter() - began,
            g_rms=gr_rms(g_macro, g_md, r_nm, channels),
        )
        log.info(
            "feedback round %d: %d sims, g(r) distance %.4f kT at parameter version %d -> version %d",
            round_no,
            len(patches),
            distance,
            version,
            new_version,
        )
        self.plot()

    def distances(self) -> list[float]:
        return [r.distance for r in self.store.feedback_rounds() if r.finished and r.distance is not None]

    def plot(self) -> Path | None:
        """Macro vs MD g(r), first round against the latest, and the distance per round."""
        rounds = sorted(self.cdir.feedback.glob("round-*.npz"))
        channels = macro_link.feedback_channels(self.spec)
        return plot_feedback(rounds, channels, self.cdir.feedback / "feedback.png")

    def final_report(self) -> None:
        path = self.plot()
        d = self.distances()
        if d:
            log.info(
                "feedback: g(r) distance per round %s%s",
                ", ".join(f"{x:.4f}" for x in d),
                f"; plot: {path}" if path else "",
            )
