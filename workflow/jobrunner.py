"""Jobs as the coordinator sees them: recorded in the store, run by a backend, retried with backoff.

Every transition is written to the store before the coordinator acts on it, so a
coordinator killed at any moment finds on restart which jobs were handed to the
backend (and re-attaches to them) and which were only recorded (and submits them).
The jobs not yet ended are also kept in memory (read once from the store), so a
turn costs what the live jobs cost, never what the campaign's history does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mummi.adapters.backend import Backend, JobSpec, JobStatus
from mummi.core.spec import JobResources, RetrySettings
from mummi.core.states import JobKind, JobState
from mummi.workflow.store import JobRecord, StateStore

log = logging.getLogger(__name__)

ACTIVE = (JobState.SUBMITTED, JobState.RUNNING)
LIVE = (JobState.PENDING, *ACTIVE)


@dataclass(frozen=True)
class Finished:
    """A job that ended since the last poll, with how it ended."""

    job: JobRecord
    status: JobStatus


class JobRunner:
    """Jobs between the store and the backend: submit, poll, re-attach, retry with backoff, cancel.

    Owns the job rows of the store and the backoff timers; records every change
    before acting on it. It never decides what a job's end means for the campaign
    (its callers do, from the :class:`Finished` records it returns) and never waits
    for a job.
    """

    def __init__(self, store: StateStore, backend: Backend, clock: Callable[[], float] | None = None) -> None:
        self.store, self.backend = store, backend
        self._clock = clock or backend.now
        self._not_before: dict[int, float] = {}
        self._live: dict[int, JobRecord] = {}
        """Every job not yet ended (pending, submitted, running), as the store has it."""
        self._pending: set[int] = set()
        self._by_subject: dict[tuple[JobKind, str | None], set[int]] = {}
        self._by_backend_id: dict[str, int] = {}
        for job in store.jobs(states=LIVE):
            self._keep(job)

    def now(self) -> float:
        """The campaign's clock (the backend's)."""
        return self._clock()

    # ------------------------------------------------------------- submit
    def submit(
        self,
        kind: JobKind,
        subject: str | None,
        command: Sequence[str],
        resources: JobResources,
        workdir: Path,
        log_path: Path,
        hosts: Sequence[str] = (),
    ) -> int:
        """Record a job as pending; :meth:`flush` hands it to the backend with the others due. Returns its id."""
        job_id = self.store.add_job(kind, command, resources.model_dump(), subject=subject, workdir=workdir,
                                    log_path=log_path, hosts=hosts)  # fmt: skip
        self._keep(self.store.job(job_id))
        return job_id

    def flush(self) -> None:
        """Hand every pending job that is due (new ones, retries past their backoff) to the backend in one call."""
        now = self._clock()
        due = sorted(self._live[i] for i in self._pending if self._not_before.get(i, 0.0) <= now)
        if not due:
            return
        backend_ids = self.backend.submit([_job_spec(job) for job in due])
        with self.store.transaction():
            for job, backend_id in zip(due, backend_ids):
                self._not_before.pop(job.id, None)
                self._keep(self.store.set_job_state(job.id, JobState.SUBMITTED, backend_id=backend_id, current=job))

    # --------------------------------------------------------------- poll
    def poll(self) -> list[Finished]:
        """Ask the backend about every active job in one call; record and return those that ended.

        A backend that can tell which jobs changed since it was last asked (:meth:`Backend.changed`) is asked
        about those only, so a turn costs what happened in it, not what runs.
        """
        changed = self.backend.changed()
        if changed is None:
            active = self._in(ACTIVE)
        else:
            live = (self._live.get(self._by_backend_id.get(b, -1)) for b in changed)
            active = sorted(j for j in live if j is not None and j.state in ACTIVE)
        if not active:
            return []
        statuses = self.backend.status([j.backend_id for j in active if j.backend_id])
        return self._record(active, statuses)

    def reattach(self) -> list[Finished]:
        """After a coordinator restart: re-attach to active jobs, submit jobs that were only recorded.

        A recorded job pinned to nodes is dropped (CANCELLED) instead: its nodes were those of a job that
        may be gone, or of an earlier allocation; whoever pinned it plans it again (an analysis beside its sim).
        """
        active = self._in(ACTIVE)
        statuses = self.backend.reattach([j.backend_id for j in active if j.backend_id])
        finished = self._record(active, statuses)
        for job in self._in([JobState.PENDING]):
            if job.hosts:
                self._keep(self.store.set_job_state(job.id, JobState.CANCELLED,
                                                    reason="pinned to nodes before the restart"))  # fmt: skip
            else:
                log.info("submitting %s job %d (%s), recorded before the restart", job.kind.value, job.id, job.subject)
        self.flush()
        return finished

    def _record(self, active: Sequence[JobRecord], statuses: Mapping[str, JobStatus]) -> list[Finished]:
        finished = []
        for job in active:
            status = statuses.get(job.backend_id or "", JobStatus(JobState.FAILED, reason="no backend id"))
            if status.state is job.state:
                continue
            if status.state is JobState.RUNNING and job.state is JobState.SUBMITTED:
                self._keep(self.store.set_job_state(job.id, JobState.RUNNING, current=job))
            elif status.state.terminal:
                record = self.store.set_job_state(
                    job.id, status.state, exit_code=status.exit_code, reason=status.reason, current=job
                )
                self._keep(record)
                finished.append(Finished(record, status))
        return finished

    # -------------------------------------------------------------- retry
    def retry(self, job: JobRecord, retry: RetrySettings, *, count_failure: bool = True) -> bool:
        """Queue a new attempt of a failed job after its backoff; False when its retries are spent.

        ``count_failure=False`` resubmits a job that stopped cleanly to be continued
        (e.g. a sim that reached its walltime) without spending a retry.
        """
        if count_failure and job.failures >= retry.max_retries:
            log.error(
                "%s job %d (%s) failed %d times; giving up. Log: %s",
                job.kind,
                job.id,
                job.subject,
                job.failures + 1,
                job.log_path,
            )
            return False
        again = self.store.requeue_job(job.id, failed=count_failure)
        self._keep(again)
        delay = retry.backoff_s * 2 ** (again.failures - 1) if count_failure else 0.0
        self._not_before[job.id] = self._clock() + delay
        return True

    def cancel_all(self, keep: Callable[[JobRecord], bool] = lambda job: False) -> None:
        """Cancel every active job but those ``keep`` spares."""
        jobs = [j for j in self._in(ACTIVE) if not keep(j)]
        self.backend.cancel([j.backend_id for j in jobs if j.backend_id])

    def active(self, kind: JobKind | None = None, subject: str | None = None) -> list[JobRecord]:
        """Jobs not yet ended (pending, submitted, running), of ``kind`` (and ``subject``) if given, oldest first."""
        if kind is not None and subject is not None:
            return sorted(self._live[i] for i in self._by_subject.get((kind, subject), ()))
        return [j for j in self._in(LIVE) if kind is None or j.kind is kind]

    def has_active(self, kind: JobKind, subject: str | None) -> bool:
        return bool(self._by_subject.get((kind, subject)))

    def _in(self, states: Sequence[JobState]) -> list[JobRecord]:
        return sorted(j for j in self._live.values() if j.state in states)

    def _keep(self, job: JobRecord) -> None:
        """Track ``job``'s new record: kept while it lives, dropped once it has ended."""
        key = (job.kind, job.subject)
        ids = self._by_subject.setdefault(key, set())
        old = self._live.pop(job.id, None)
        if old is not None and old.backend_id:
            self._by_backend_id.pop(old.backend_id, None)
        self._pending.discard(job.id)
        if job.state in LIVE:
            self._live[job.id] = job
            ids.add(job.id)
            if job.state is JobState.PENDING:
                self._pending.add(job.id)
            if job.backend_id:
                self._by_backend_id[job.backend_id] = job.id
        else:
            ids.discard(job.id)
            if not ids:
                del self._by_subject[key]


def _job_spec(job: JobRecord) -> JobSpec:
    return JobSpec(
        name=f"{job.kind.value}-{job.subject or job.id}-a{job.attempt}",
        command=tuple(job.command),
        resources=JobResources.model_validate(job.resources),
        workdir=Path(job.workdir or "."),
        log_path=Path(job.log_path or f"{job.kind.value}-{job.id}.log"),
        hosts=job.hosts,
        kind=job.kind,
    )
