"""The workflow manager: one coordinator process that runs a whole campaign and never blocks on a job.

Each turn of the loop: poll every active job in one backend call and act on those
that ended; turn new macro frames into candidates; select patches to keep the sim
slots and the setup buffer full; start set-up sims on free slots; run a feedback
round when due; checkpoint the sampler when due; check the stop conditions and the
time left in the allocation; hand every job the turn made due to the backend in
one call. Phases before the campaign proper (the uncoupled
pre-campaign macro run and the encoder training) are jobs too.

Near the end of the allocation, on SIGTERM, or when the workdir's disk is nearly
full (``campaign.min_free_mb``), the coordinator stops starting work, cancels its
jobs (sims stop at their checkpoints), checkpoints the sampler and exits with
:data:`~mummi.core.exit_codes.EXIT_RESUMABLE`.
"""

from __future__ import annotations

import logging
import os
import signal
import time

from mummi.adapters.backend import Backend, BackendError, make_backend
from mummi.core.exit_codes import EXIT_OK, EXIT_RESUMABLE
from mummi.core.layout import CampaignLayout
from mummi.core.resources import ResourcePolicy
from mummi.core.spec import CampaignSpec
from mummi.core.states import SIM_STAGES, JobKind, JobState, SimState
from mummi.workflow import patch_source, pretrain
from mummi.workflow.feedback_stage import FeedbackStage
from mummi.workflow.ingest import Ingest
from mummi.workflow.jobrunner import Finished, JobRunner
from mummi.workflow.micro import MicroPipeline
from mummi.workflow.patch_source import MacroPatches, PatchSource, SyntheticPatches
from mummi.workflow.progress import Progress
from mummi.workflow.store import StateStore

log = logging.getLogger(__name__)

RESUMABLE_REASONS = ("allocation ending", "SIGTERM", "SIGINT", "disk nearly full")
"""How the reasons for a stop that a later run resumes begin."""


class Coordinator:
    """The campaign loop: one turn after another until a stop condition, the allocation's end or a signal.

    Owns the order of things within a turn, the macro job, the stop conditions
    and the wall-time bookkeeping; hands the micro scale to :class:`MicroPipeline`,
    the sampler to :class:`Ingest`, feedback rounds to :class:`FeedbackStage` and
    every job to :class:`JobRunner`. It never waits on a job (only sleeps between
    turns), never runs science itself, and never talks to a scheduler except
    through the backend.
    """

    def __init__(self, spec: CampaignSpec, cdir: CampaignLayout, store: StateStore, backend: Backend) -> None:
        self.spec, self.cdir, self.store, self.backend = spec, cdir, store, backend
        self.policy = ResourcePolicy.from_spec(spec)
        self.runner = JobRunner(store, backend)
        self.micro = MicroPipeline(spec, cdir, store, self.runner, self.policy)
        self.ingest: Ingest | None = None  # built once the encoder exists
        self.feedback: FeedbackStage | None = None
        self._started = self.backend.now()
        self._wall_before = float(store.get_meta("wall_s", 0.0))
        self._last_checkpoint = self.backend.now()
        self._stop_signal: str | None = None
        self._turn_wall_s: list[float] = []
        self._sims_ended = 0
        self._decisions: list[tuple[float, int]] = []
        """(wall time of a turn, sims whose end it handled): how long a freed GPU waited on the coordinator."""
        self.progress = Progress(cdir.root, self.policy.sim_slots)

    # ------------------------------------------------------------------ run
    def run(self) -> int:
        self._install_signal_handlers()
        for done in self.runner.reattach():
            self._on_finished(done)
        self.micro.recover()
        try:
            while True:
                began, self._sims_ended = time.perf_counter(), 0
                reason = self._turn()
                spent = time.perf_counter() - began
                self._turn_wall_s.append(spent)
                if self._sims_ended:
                    self._decisions.append((spent, self._sims_ended))
                self.progress.update(self.ingest.sampler if self.ingest else None)
                if reason is not None:
                    return self._finish(reason)
                self.backend.wait(self.backend.poll_interval_s)
        finally:
            self.progress.close()
            self._save_wall_time()

    def _turn(self) -> str | None:
        """One turn: poll every job, act; the jobs it made due go to the backend in one call at its end.

        What the turn records commits in few transactions, each before anything it records is acted on
        (handed to the backend, or reflected in a sampler checkpoint or a parameter version).
        """
        with self.store.transaction():
            for done in self.runner.poll():
                self._on_finished(done)
            self.micro.start_analyses()  # also in a last turn: a finished sim's analysis still runs
            self.micro.cancel_stalled()
        reason = self._act()
        self.runner.flush()
        return reason

    def _act(self) -> str | None:
        if self._stop_signal:
            return self._stop_signal
        reason = self._stop_reason() or self._disk_nearly_full()
        if reason is not None:
            return reason
        stages = self._campaign_stages()
        if stages is None:
            return None
        ingest, feedback = stages
        winding_down = self._near_end()
        with self.store.transaction():
            self._ensure_macro()
            for name in ingest.new_frames():
                ingest.ingest(name)
            if not winding_down:
                self._select(ingest)
                self.micro.start_selected(ingest.patch_input)
            self.micro.start_ready(may_start=not winding_down)
        feedback.maybe_run()
        self._maybe_checkpoint(ingest)
        return "allocation ending" if winding_down else None

    # -------------------------------------------------------------- phases
    def _campaign_stages(self) -> tuple[Ingest, FeedbackStage] | None:
        """Pre-campaign macro run and encoder training, as jobs; the sampler and feedback once the encoder exists."""
        if self.ingest is None or self.feedback is None:
            source = self._patch_source()
            if source is None:
                return None
            self.ingest = Ingest(self.spec, self.cdir, self.store, source)
            self.feedback = FeedbackStage(self.spec, self.cdir, self.store, self.ingest, clock=self._wall_s)
        return self.ingest, self.feedback

    def _patch_source(self) -> PatchSource | None:
        """The macro model's patch files once the encoder is trained (None before); a replay's synthetic stream."""
        if patch_source.synthetic(self.spec):
            start = self.store.get_meta("synthetic_start_s")
            if start is None:
                start = self.backend.now()
                self.store.set_meta("synthetic_start_s", start)
            return SyntheticPatches(self.spec, self.cdir, self.backend.now, float(start))
        model = pretrain.encoder_dir(self.spec, self.cdir)
        if not pretrain.model_exists(model):
            pretrain.advance(self.spec, self.cdir, self.runner)
            return None
        return MacroPatches(self.spec, self.cdir, pretrain.load_encoder(model))

    def _ensure_macro(self) -> None:
        if self.runner.has_active(JobKind.MACRO, JobKind.MACRO.value):
            return
        done = self.store.jobs(states=[JobState.DONE], kind=JobKind.MACRO)
        if done:
            return
        command = pretrain.macro_command(self.spec, self.cdir, self.cdir, until_ns=None, uncoupled=False)
        self.runner.submit(
            JobKind.MACRO,
            JobKind.MACRO.value,
            command,
            self.spec.macro.resources,
            self.cdir.macro,
            self.cdir.logs / "macro.log",
        )

    # ----------------------------------------------------------- selection
    def _select(self, ingest: Ingest) -> None:
        want = min(self.micro.wanted_selections(), ingest.sampler.n_candidates)
        if want <= 0:
            return
        first = sum(self.store.sim_counts().values()) + 1
        picks = ingest.select(want, first)
        names = [s for _, s in picks]
        log.info(
            "selected %d patches (%s)", len(names), ", ".join(names) if len(names) <= 4 else f"{names[0]} … {names[-1]}"
        )

    # ------------------------------------------------------------- finished
    def _on_finished(self, done: Finished) -> None:
        kind = done.job.kind
        self._sims_ended += kind is JobKind.SIM
        if kind in SIM_STAGES:
            self.micro.on_finished(done)
            ended = done.status.state is JobState.DONE or done.status.lost  # the analysis record decides
            if kind is JobKind.ANALYSIS and ended and self.feedback is not None:
                self.feedback.on_analysis_done(done.job.subject or "")
        elif done.status.state is JobState.FAILED:  # the macro model, the pre-campaign or the training
            if not self.runner.retry(done.job, self.spec.createsim.retry, count_failure=not done.status.lost):
                self._stop_signal = f"{kind.value} job failed; log: {done.job.log_path}"

    # ---------------------------------------------------------------- stop
    def _stop_reason(self) -> str | None:
        stop = self.spec.campaign.stop
        counts = self.micro.counts()
        ended = counts[SimState.DONE.value] + counts[SimState.FAILED.value]
        if stop.max_sims is not None and ended >= stop.max_sims:
            return f"{ended} sims finished"
        macro_ns = self.store.get_meta("macro_time_ns")
        if stop.macro_time_us is not None and macro_ns is not None and macro_ns >= 1000 * stop.macro_time_us:
            return f"macro model reached {macro_ns / 1000:.2f} µs"
        if stop.wall_time_h is not None and self._wall_s() >= 3600 * stop.wall_time_h:
            return f"wall time {stop.wall_time_h} h used"
        rounds = stop.feedback_rounds
        if rounds is not None and sum(r.finished for r in self.store.feedback_rounds()) >= rounds:
            return f"{stop.feedback_rounds} feedback rounds done"
        return None

    def _disk_nearly_full(self) -> str | None:
        """A stop reason while the workdir's file system has less than ``campaign.min_free_mb`` free (one
        ``statvfs`` per turn: microseconds)."""
        reserve = self.spec.campaign.min_free_mb
        if reserve <= 0:
            return None
        fs = os.statvfs(self.cdir.root)
        free_mb = fs.f_bavail * fs.f_frsize / 2**20
        if free_mb >= reserve:
            return None
        return (f"disk nearly full: {free_mb:.0f} MB free under {self.cdir.root} (campaign.min_free_mb: "
                f"{reserve:g}); free space, then run the same command again")  # fmt: skip

    def _near_end(self) -> bool:
        left = self.backend.time_left_s()
        return left is not None and left < 60 * self.spec.checkpoint.end_margin_min

    def _finish(self, reason: str) -> int:
        resumable = reason.startswith(RESUMABLE_REASONS)
        log.log(logging.ERROR if reason.startswith("disk") else logging.INFO, "stopping: %s", reason)
        self.store.record_event("campaign.stopping", None, reason=reason, resumable=resumable)
        if resumable:
            if not reason.startswith("disk"):  # a follow-up allocation would find the same full disk
                self._chain()
            self.runner.cancel_all()
        else:
            # The analyses of finished sims are finishing their last frames: let them.
            done = {sel.sim_id for sel in self.store.selections([SimState.DONE])}
            self.runner.cancel_all(keep=lambda job: job.kind is JobKind.ANALYSIS and job.subject in done)
        self._drain()
        if self.ingest is not None:
            self.ingest.checkpoint()
        if self.feedback is not None and not resumable:
            self.feedback.final_report()
        self.store.record_event("campaign.stopped", None, reason=reason, resumable=resumable)
        self._save_turn_costs()
        return EXIT_RESUMABLE if resumable else EXIT_OK

    def _chain(self) -> None:
        """Submit the follow-up allocation while the campaign's ``chain`` budget lasts."""
        chained = int(self.store.get_meta("chained", 0))
        if chained >= self.spec.campaign.chain:
            return
        try:
            follow_up = self.backend.chain()
        except BackendError as err:
            log.error("could not submit the follow-up allocation (campaign.chain): %s", err)
            return
        self.store.set_meta("chained", chained + 1)
        self.store.record_event("campaign.chained", follow_up, n=chained + 1, of=self.spec.campaign.chain)
        log.info("submitted follow-up allocation %s (%d of %d); it resumes the campaign", follow_up, chained + 1,
                 self.spec.campaign.chain)  # fmt: skip

    def _drain(self, timeout_s: float = 120.0) -> None:
        """Wait for cancelled jobs to stop (sims write their checkpoints), recording how each ended."""
        deadline = self.backend.now() + timeout_s
        while self.runner.active() and self.backend.now() < deadline:
            for done in self.runner.poll():
                self._on_finished(done)
            if not [j for j in self.runner.active() if j.state is not JobState.PENDING]:
                break
            self.backend.wait(self.backend.poll_interval_s)

    # ---------------------------------------------------------- bookkeeping
    def _maybe_checkpoint(self, ingest: Ingest) -> None:
        if self.backend.now() - self._last_checkpoint >= self.spec.sampler.checkpoint_interval_s:
            ingest.checkpoint()
            self._save_wall_time()
            self._last_checkpoint = self.backend.now()

    def _wall_s(self) -> float:
        return self._wall_before + self.backend.now() - self._started

    def _save_wall_time(self) -> None:
        self.store.set_meta("wall_s", self._wall_s())
        self._wall_before, self._started = self._wall_s(), self.backend.now()

    def _save_turn_costs(self) -> None:
        """The coordinator's own wall time per turn in this run, and per freed GPU (the latency of its decisions).

        A sim's end is seen by a turn, which starts the next sim on the freed GPU before it ends: the GPU waits
        on the coordinator for that turn's wall time (plus the poll interval, which is the backend's).
        """
        turns = sorted(self._turn_wall_s)
        if not turns:
            return
        decisions = sorted(self._decisions)
        runs = list(self.store.get_meta("turn_wall_s", []))
        runs.append({"turns": len(turns), "total": sum(turns), "p50": _percentile(turns, 0.5),
                     "p99": _percentile(turns, 0.99), "max": turns[-1],
                     "gpus_freed": sum(n for _, n in decisions),
                     "decision_p50": _weighted_percentile(decisions, 0.5),
                     "decision_p99": _weighted_percentile(decisions, 0.99)})  # fmt: skip
        self.store.set_meta("turn_wall_s", runs)

    def _install_signal_handlers(self) -> None:
        def on_signal(signum: int, _frame: object) -> None:
            self._stop_signal = signal.Signals(signum).name

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, on_signal)


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _weighted_percentile(ordered: list[tuple[float, int]], q: float) -> float | None:
    """The ``q`` quantile of values each counted ``n`` times; ``ordered`` by value."""
    total = sum(n for _, n in ordered)
    seen = 0
    for value, n in ordered:
        seen += n
        if seen > q * total:
            return value
    return None


def run_campaign(spec: CampaignSpec, cdir: CampaignLayout, store: StateStore) -> int:
    """Run (or resume) the campaign; returns the process exit code."""
    backend = make_backend(spec, cdir)
    try:
        return Coordinator(spec, cdir, store, backend).run()
    finally:
        backend.close()
