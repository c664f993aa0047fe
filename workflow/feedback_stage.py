"""The feedback round as the coordinator runs it: gather counts, weight, invert, write parameters, record.

A round runs once ``feedback.interval_sims`` more sims have analysis counts than
at the last round (or ``interval_s`` has passed), provided the macro model has
written frames with the latest parameter version, so that each round measures the
effect of the one before. Each round's tables go to ``feedback/round-NNN.npz``;
the plot of the macro model's g(r) against the MD g(r), first round vs latest
(like the paper's Fig. 5), and the distance per round go to
``feedback/feedback.png``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mummi.analysis.feedback import correction_on, gr_distance, gr_rms, ibi_correction, rebin, weighted_gr
from mummi.analysis.feedback_plot import plot_feedback
from mummi.analysis.rdf import RDFCounts
from mummi.core import simdir
from mummi.core.atomic import atomic_savez
from mummi.core.layout import CampaignLayout
from mummi.core.spec import CampaignSpec
from mummi.core.states import SimState
from mummi.workflow import macro_link
from mummi.workflow.ingest import Ingest
from mummi.workflow.store import StateStore

log = logging.getLogger(__name__)


class FeedbackStage:
    """Feedback rounds: when one is due, the weighted MD g(r) against the macro model's, a new parameter version.

    Owns the feedback rounds in the store and the ``feedback/`` folder. It reads the
    sims' RDF counts and the sampler's weights, and writes parameter versions the
    macro model picks up at its next reload point; it never talks to the macro job
    or any other job, and never changes a sim's state.
    """

    def __init__(self, spec: CampaignSpec, cdir: CampaignLayout, store: StateStore, ingest: Ingest,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.spec, self.cdir, self.store, self.ingest = spec, cdir, store, ingest
        self._clock = clock
        self._last_time = clock()
        abandoned = store.abandon_open_feedback_round()
        if abandoned is not None:
            # The round runs again from the start, on the latest parameter version.
            log.warning("feedback round %d was cut short by a restart; it runs again when due", abandoned)

    def _sims_with_counts(self) -> list[tuple[str, str, Path]]:
        found = []
        for sel in self.store.selections([SimState.RUNNING, SimState.DONE]):
            path = self.cdir.sim(sel.sim_id) / simdir.RDF_COUNTS
            if path.is_file():
                found.append((sel.sim_id, sel.patch_id, path))
        return found

    def maybe_run(self) -> None:
        fb = self.spec.feedback
        if not fb.enabled:
            return
        sims = self._sims_with_counts()
        rounds = self.store.feedback_rounds()
        last_n = rounds[-1].n_sims if rounds else 0
        due = len(sims) >= max(fb.min_sims, last_n + fb.interval_sims)
        if fb.interval_s is not None and len(sims) >= fb.min_sims and self._clock() - self._last_time >= fb.interval_s:
            due = True
        if not due:
            return
        version = macro_link.latest_version(self.cdir)
        g_macro = None if version is None else macro_link.macro_gr(self.spec, self.cdir, version)
        if version is None or g_macro is None:
            return  # no frame has used the latest parameters yet
        self._run_round(sims, version, g_macro)
        self._last_time = self._clock()

    def _run_round(self, sims: list[tuple[str, str, Path]], version: int, g_macro: np.ndarray) -> None:
        fb = self.spec.feedback
        edges = macro_link.comparison_edges(self.spec)
        r_nm = 0.5 * (edges[1:] + edges[:-1])
        weights = self.ingest.sampler.weights() if fb.use_weights else {}
        md = weighted_gr((RDFCounts.load(path), weights.get(patch_id, 1.0)) for _, patch_id, path in sims)
        g_md = rebin(md, r_nm)
        channels = macro_link.feedback_channels(self.spec)
        distance = gr_distance(g_macro, g_md, r_nm, channels)
        round_no = self.store.start_feedback_round(len(sims))
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
            sims=[s for s, _, _ in sims],
            g_rms=gr_rms(g_macro, g_md, r_nm, channels),
        )
        log.info(
            "feedback round %d: %d sims, g(r) distance %.4f kT at parameter version %d -> version %d",
            round_no,
            len(sims),
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
