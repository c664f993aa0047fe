"""The job runner: jobs recorded first, handed to the backend in one call per turn, retried after their backoff."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mummi.adapters.backend import Backend, JobSpec, JobStatus
from mummi.core.layout import CampaignLayout
from mummi.core.spec import CampaignSpec, JobResources, RetrySettings
from mummi.core.states import JobKind, JobState
from mummi.workflow.jobrunner import JobRunner
from mummi.workflow.store import StateStore


class RecordingBackend(Backend):
    """Remembers every call; jobs end as ``outcome`` says."""

    def __init__(self) -> None:
        self.submit_calls: list[list[str]] = []
        self.status_calls = 0
        self.outcome: dict[str, JobStatus] = {}

    @classmethod
    def from_spec(cls, spec: CampaignSpec, layout: CampaignLayout) -> RecordingBackend:
        return cls()

    def submit(self, jobs: Sequence[JobSpec]) -> list[str]:
        self.submit_calls.append([j.name for j in jobs])
        first = sum(map(len, self.submit_calls)) - len(jobs)
        return [f"b{first + i}" for i in range(len(jobs))]

    def status(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        self.status_calls += 1
        return {i: self.outcome.get(i, JobStatus(JobState.RUNNING)) for i in ids}

    def cancel(self, ids: Sequence[str]) -> None:
        pass

    def time_left_s(self) -> float | None:
        return None


def submit(runner: JobRunner, subject: str, tmp_path: Path) -> int:
    return runner.submit(JobKind.SIM, subject, ["true"], JobResources(), tmp_path, tmp_path / f"{subject}.log")


def test_jobs_of_a_turn_go_to_the_backend_in_one_call_and_are_polled_in_one(tmp_path: Path) -> None:
    backend, now = RecordingBackend(), [0.0]
    with StateStore(tmp_path / "c.db") as store:
        runner = JobRunner(store, backend, clock=lambda: now[0])
        ids = [submit(runner, f"sim-{i}", tmp_path) for i in range(5)]
        assert backend.submit_calls == [] and all(store.job(i).state is JobState.PENDING for i in ids)
        runner.flush()
        assert len(backend.submit_calls) == 1 and len(backend.submit_calls[0]) == 5
        assert [store.job(i).backend_id for i in ids] == [f"b{k}" for k in range(5)]
        runner.flush()
        assert len(backend.submit_calls) == 1  # nothing new was due
        assert runner.poll() == [] and backend.status_calls == 1


def test_a_failed_job_is_retried_in_a_later_batch_once_its_backoff_passed(tmp_path: Path) -> None:
    backend, now = RecordingBackend(), [0.0]
    with StateStore(tmp_path / "c.db") as store:
        runner = JobRunner(store, backend, clock=lambda: now[0])
        job_id = submit(runner, "sim-1", tmp_path)
        runner.flush()
        backend.outcome["b0"] = JobStatus(JobState.FAILED, exit_code=1)
        (done,) = runner.poll()
        assert runner.retry(done.job, RetrySettings(max_retries=1, backoff_s=10.0))
        submit(runner, "sim-2", tmp_path)
        runner.flush()
        assert backend.submit_calls[-1] == ["sim-sim-2-a1"]  # the retry waits for its backoff
        now[0] = 11.0
        runner.flush()
        assert backend.submit_calls[-1] == ["sim-sim-1-a2"]
        assert store.job(job_id).state is JobState.SUBMITTED and store.job(job_id).failures == 1
