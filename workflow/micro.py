"""Selected patches through the micro scale: createsim, then sim with its in situ analysis.

Keeps every sim slot busy and a buffer of createsims running ahead of free slots
(MuMMI's "selected patch buffer"), so a GPU never waits for a setup. Each sim's
in situ analysis runs on the node its sim landed on, as in MuMMI: it is submitted
once the backend says where the sim started, pinned to that node. A job that
fails is retried with backoff up to its retry count; a sim that stopped cleanly
before its walltime (exit 75, status ``incomplete``), or a job lost with its
node or forgotten by its scheduler, is continued (or run again) without spending
a retry; a lost job whose folder holds a valid ``done`` record is done. A running sim whose
trajectory stops growing for ``sim.stall_min`` is cancelled and retried as a
failure (:mod:`~mummi.workflow.stall_watch`).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable, Sequence

from mummi.adapters.md_engine import get_engine
from mummi.core import simdir
from mummi.core.exit_codes import EXIT_RESUMABLE
from mummi.core.layout import CampaignLayout
from mummi.core.patch_input import PatchInput, patch_input_readable, write_patch_input
from mummi.core.resources import ResourcePolicy
from mummi.core.spec import CampaignSpec, RetrySettings
from mummi.core.states import JobKind, JobState, Outcome, SimState
from mummi.workflow.jobrunner import Finished, JobRunner
from mummi.workflow.stall_watch import StallWatch
from mummi.workflow.store import StateStore

log = logging.getLogger(__name__)

CREATESIM, SIM, ANALYSIS = JobKind.CREATESIM, JobKind.SIM, JobKind.ANALYSIS
DONE_FROM_OUTPUTS = "job.done_from_outputs"
"""Event: a lost or forgotten job whose folder holds its valid ``done`` record: it finished."""


class MicroPipeline:
    """Every selected patch from its patch input to a finished sim with its analysis.

    Owns the sim states in the store (selected, setting up, ready, running, done,
    failed) and the createsim, sim and analysis jobs: when to submit them, how to
    read how they ended (exit code and status record), retries and continuations.
    It never selects patches (the coordinator asks :class:`Ingest` for them) and
    never runs a job itself.
    """

    def __init__(
        self, spec: CampaignSpec, cdir: CampaignLayout, store: StateStore, runner: JobRunner, policy: ResourcePolicy
    ) -> None:
        self.spec, self.cdir, self.store, self.runner, self.policy = spec, cdir, store, runner, policy
        self._analysis_due: set[str] = set()
        """Started sims whose analysis waits to learn the sim's node."""
        self._stall_watch = self._make_stall_watch()
        self._stalled: dict[int, str] = {}
        """Sim jobs cancelled because they stalled, and why."""

    def _make_stall_watch(self) -> StallWatch | None:
        stall_min = self.spec.sim.stall_min
        if stall_min is None or not self.runner.backend.jobs_write_files:
            return None
        engine = get_engine(self.spec.sim.engine)
        try:
            engine.trajectory(self.cdir.sims)
        except NotImplementedError:
            log.info("sim.stall_min: the %s engine names no trajectory to watch; only walltimes stop hung sims",
                     engine.name)  # fmt: skip
            return None
        return StallWatch(60 * stall_min, lambda sim_id: engine.trajectory(self.cdir.sim(sim_id))[1])

    # ---------------------------------------------------------------- counts
    def counts(self) -> dict[str, int]:
        return self.store.sim_counts()

    def wanted_selections(self) -> int:
        """How many new patches to select now to keep sims and the setup buffer full."""
        counts = self.counts()
        running = counts[SimState.RUNNING.value]
        pipeline = counts[SimState.SELECTED.value] + counts[SimState.SETTING_UP.value] + counts[SimState.READY.value]
        want = self.policy.sim_slots - running + self.policy.buffer - pipeline
        stop = self.spec.campaign.stop.max_sims
        if stop is not None:
            want = min(want, stop - sum(counts.values()) + counts[SimState.FAILED.value])
        return max(0, want)

    def recover(self) -> None:
        """After a restart: put back in line every sim whose job is no longer active."""
        for sel in self.store.selections([SimState.SETTING_UP, SimState.RUNNING]):
            stage = CREATESIM if sel.state is SimState.SETTING_UP else SIM
            if self._has_active(stage, sel.sim_id):
                continue
            sim_dir = self.cdir.sim(sel.sim_id)
            if stage is CREATESIM:
                back = SimState.READY if simdir.is_done(sim_dir, CREATESIM) else SimState.SELECTED
            else:
                back = SimState.DONE if simdir.is_done(sim_dir, SIM) else SimState.READY
            self.store.set_sim_state(sel.sim_id, back, reason="its job ended while the coordinator was away")
        for sel in self.store.selections([SimState.RUNNING, SimState.DONE]):
            if not simdir.is_done(self.cdir.sim(sel.sim_id), ANALYSIS) and not self._has_active(ANALYSIS, sel.sim_id):
                self._analysis_due.add(sel.sim_id)

    # ----------------------------------------------------------------- start
    def start_selected(self, patch_of: Callable[[str], PatchInput]) -> None:
        """Write the patch input and submit the createsim of every sim in state SELECTED."""
        if not self.counts()[SimState.SELECTED.value]:
            return
        for sel in self.store.selections([SimState.SELECTED]):
            write_patch_input(self.cdir.sim(sel.sim_id) / simdir.PATCH_INPUT, patch_of(sel.patch_id))
            with self.store.transaction():
                self._submit(CREATESIM, sel.sim_id)
                self.store.set_sim_state(sel.sim_id, SimState.SETTING_UP)

    def start_ready(self, may_start: bool) -> None:
        """Start sims on free sim slots (their analyses follow in :meth:`start_analyses`)."""
        if not may_start:
            return
        counts = self.counts()
        free = self.policy.sim_slots - counts[SimState.RUNNING.value]
        if free <= 0 or not counts[SimState.READY.value]:
            return
        for sel in self.store.selections([SimState.READY], limit=free):
            with self.store.transaction():
                self._submit(SIM, sel.sim_id)
                self.store.set_sim_state(sel.sim_id, SimState.RUNNING)
            if not self._has_active(ANALYSIS, sel.sim_id):
                self._analysis_due.add(sel.sim_id)

    def start_analyses(self) -> None:
        """Submit each started sim's in situ analysis, pinned to the node its sim runs on."""
        if not self._analysis_due:
            return
        for sim_id in sorted(self._analysis_due):
            if self.store.selection(sim_id).state not in (SimState.RUNNING, SimState.DONE):
                self._analysis_due.discard(sim_id)  # stopped early: its analysis comes with its next start
                continue
            sim_job = next(iter(self.runner.active(SIM, sim_id)), None)
            hosts: list[str] = []
            if sim_job is not None:
                hosts = self.runner.backend.node_of(sim_job.backend_id) if sim_job.backend_id else []
                if not hosts:
                    continue  # not started yet
            self._submit(ANALYSIS, sim_id, hosts)
            self._analysis_due.discard(sim_id)

    def cancel_stalled(self) -> None:
        """Cancel every running sim whose trajectory stopped growing ``sim.stall_min`` ago (retried as a failure)."""
        now = self.runner.now()
        if self._stall_watch is None or not self._stall_watch.due(now):
            return
        running = [job for job in self.runner.active(SIM) if job.state is JobState.RUNNING]
        stalled = self._stall_watch.stalled(running, now)
        for job in stalled:
            why = f"stalled: its trajectory did not grow for {self.spec.sim.stall_min:g} min"
            log.warning("sim %s %s; cancelling it", job.subject, why)
            self.store.record_event("sim.stalled", job.subject, job=job.id, stall_min=self.spec.sim.stall_min)
            self._stalled[job.id] = why
        if stalled:
            self.runner.backend.cancel([job.backend_id for job in stalled if job.backend_id])

    def _submit(self, stage: JobKind, sim_id: str, hosts: Sequence[str] = ()) -> int:
        settings = getattr(self.spec, stage.value)
        sim_dir = self.cdir.sim(sim_id)
        command = [sys.executable, "-m", f"mummi.jobs.{stage.value}", "--spec", str(self.cdir.spec_copy),
                   "--sim-dir", str(sim_dir)]  # fmt: skip
        if stage is ANALYSIS:
            command.append("--follow")
        log_path = sim_dir / f"{stage.value}.log"
        return self.runner.submit(stage, sim_id, command, settings.resources, sim_dir, log_path, hosts)

    def _has_active(self, stage: JobKind, sim_id: str) -> bool:
        return self.runner.has_active(stage, sim_id)

    # -------------------------------------------------------------- finished
    def on_finished(self, done: Finished) -> None:
        job, status = done.job, done.status
        sim_id = job.subject or ""
        sim_dir = self.cdir.sim(sim_id)
        outcome = simdir.outcome(sim_dir, job.kind)
        # A lost job's outputs say what it finished.
        finished = (status.state is JobState.DONE or status.lost) and outcome is Outcome.DONE
        if status.lost and outcome is Outcome.DONE:
            self.store.record_event(DONE_FROM_OUTPUTS, sim_id, job=job.id, stage=job.kind.value, reason=status.reason)
        if job.kind is CREATESIM:
            if finished:
                self.store.set_sim_state(sim_id, SimState.READY)
            elif status.state is JobState.CANCELLED or status.lost:
                why = status.reason if status.lost else "setup cancelled"
                self.store.set_sim_state(sim_id, SimState.SELECTED, reason=f"{why}; it starts again later")
            elif not patch_input_readable(sim_dir / simdir.PATCH_INPUT):
                self.store.set_sim_state(sim_id, SimState.SELECTED, reason="its patch input was lost; written again")
            else:
                self._retry_or_fail(done, self.spec.createsim.retry)
        elif job.kind is SIM:
            stalled = self._stalled.pop(job.id, None)
            if finished:
                self.store.set_sim_state(sim_id, SimState.DONE)
            elif stalled is not None:
                self._retry_or_fail(dataclasses.replace(done, status=dataclasses.replace(status, reason=stalled)),
                                    self.spec.sim.retry)  # fmt: skip
            elif (
                status.exit_code == EXIT_RESUMABLE
                or outcome is Outcome.INCOMPLETE
                or status.state is JobState.CANCELLED
                or status.lost
            ):
                # Stopped cleanly at its walltime or at shutdown, or lost with its node: continue from its checkpoint.
                self.store.set_sim_state(
                    sim_id, SimState.READY, reason="stopped before the end; continues from its checkpoint"
                )
            else:
                self._retry_or_fail(done, self.spec.sim.retry)
        elif job.kind is ANALYSIS:
            if status.state is JobState.FAILED and not finished:
                self.runner.retry(job, self.spec.sim.retry, count_failure=not status.lost)
            elif (
                outcome is not Outcome.DONE
                and self.store.selection(sim_id).state in (SimState.RUNNING, SimState.DONE)
                and not self._has_active(ANALYSIS, sim_id)
            ):
                # It followed a sim job that stopped early and was continued before it finished: the next
                # analysis follows the continuation.
                self._analysis_due.add(sim_id)

    def _retry_or_fail(self, done: Finished, retry: RetrySettings) -> None:
        """Retry a failed job, unless its retries are spent or it says a retry would fail the same way."""
        job = done.job
        record = simdir.read_status(self.cdir.sim(job.subject or ""), job.kind) or {}
        gave_up = record.get("state") is Outcome.FAILED and record.get("retry") is False
        if not gave_up and self.runner.retry(job, retry):
            log.warning("%s of %s failed (%s); retrying", job.kind.value, job.subject, done.status.reason)
            return
        if gave_up:
            reason = f"{job.kind.value} gave up, not retried: {record.get('error')}"
        else:
            reason = (
                f"{job.kind.value} failed {job.failures + 1} times (last: {done.status.reason}); log: {job.log_path}"
            )
        self.store.set_sim_state(job.subject or "", SimState.FAILED, reason=reason)
        self.runner.backend.cancel([j.backend_id for j in self.runner.active(ANALYSIS, job.subject) if j.backend_id])
