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
from pathlib import Path

import numpy as np

from mummi.analysis.feedback import correction_on, gr_distance, gr_rms, ibi_correction, rebin, weighted_gr
from mummi.adapters.membrane import CHANNEL_NAMES
from mummi.analysis.rdf import RDFCounts
from mummi.jobs import simdir
from mummi.workflow import macro_link
from mummi.workflow.atomic import atomic_write
from mummi.workflow.campaign import CampaignDir
from mummi.workflow.spec import CampaignSpec
from mummi.workflow.states import SimState
from mummi.workflow.store import StateStore

log = logging.getLogger(__name__)


class FeedbackStage:
    def __init__(self, spec: CampaignSpec, cdir: CampaignDir, store: StateStore, ingest) -> None:
        self.spec, self.cdir, self.store, self.ingest = spec, cdir, store, ingest
        self._last_time = time.monotonic()

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
        last_n = rounds[-1]["n_sims"] if rounds else 0
        due = len(sims) >= max(fb.min_sims, last_n + fb.interval_sims)
        if fb.interval_s is not None and len(sims) >= fb.min_sims and time.monotonic() - self._last_time >= fb.interval_s:
            due = True
        if not due:
            return
        version = macro_link.latest_version(self.cdir)
        g_macro = None if version is None else macro_link.macro_gr(self.spec, self.cdir, version)
        if g_macro is None:
            return  # no frame has used the latest parameters yet
        self._run_round(sims, version, g_macro)
        self._last_time = time.monotonic()

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
        self._save_round(round_no, r_nm, g_macro, g_md, params.pmf_kj_mol, pmf, distance, version, new_version)
        self.store.finish_feedback_round(round_no, new_version, distance, from_version=version, sims=[s for s, _, _ in sims],
                                         g_rms=gr_rms(g_macro, g_md, r_nm, channels))
        log.info("feedback round %d: %d sims, g(r) distance %.4f kT at parameter version %d -> version %d",
                 round_no, len(sims), distance, version, new_version)
        self.plot()

    def _save_round(self, round_no, r_nm, g_macro, g_md, v_old, v_new, distance, version, new_version) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, r_nm=r_nm, g_macro=g_macro, g_md=g_md, potentials_before=v_old, potentials_after=v_new,
                         distance=distance, parameter_version=version, new_parameter_version=new_version)

        atomic_write(self.cdir.feedback / f"round-{round_no:03d}.npz", write)

    def distances(self) -> list[float]:
        return [r["distance"] for r in self.store.feedback_rounds() if r["finished_at"] is not None]

    def plot(self) -> Path | None:
        """Macro vs MD g(r), first round against the latest, and the distance per round."""
        files = sorted(self.cdir.feedback.glob("round-*.npz"))
        if not files:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        first, last = (dict(np.load(f, allow_pickle=False)) for f in (files[0], files[-1]))
        channels = macro_link.feedback_channels(self.spec)
        cols = 5
        rows = -(-(len(channels) + 1) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.8 * rows), squeeze=False)
        axes = axes.ravel()
        for ax, c in zip(axes, channels):
            ax.plot(last["r_nm"], last["g_md"][c], "k-", lw=2, label="MD (DynIm-weighted)")
            ax.plot(first["r_nm"], first["g_macro"][c], "C3--", label="macro, initial")
            ax.plot(last["r_nm"], last["g_macro"][c], "C0-", label=f"macro, round {len(files)}")
            ax.set_title(CHANNEL_NAMES[c], fontsize=9)
            ax.set_xlabel("r (nm)")
        axes[0].set_ylabel("g(r)")
        axes[0].legend(fontsize=7)
        d = [float(np.load(f)["distance"]) for f in files]
        ax = axes[len(channels)]
        ax.plot(range(len(d)), d, "o-")
        ax.set_xlabel("feedback rounds applied")
        ax.set_ylabel("RMS ln(g_macro/g_MD) (kT)")
        for ax in axes[len(channels) + 1 :]:
            ax.axis("off")
        fig.tight_layout()
        out = self.cdir.feedback / "feedback.png"
        atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
        plt.close(fig)
        return out

    def final_report(self) -> None:
        path = self.plot()
        d = self.distances()
        if d:
            log.info("feedback: g(r) distance per round %s%s", ", ".join(f"{x:.4f}" for x in d),
                     f"; plot: {path}" if path else "")
