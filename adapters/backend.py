"""The one interface every scheduler backend implements.

The coordinator never blocks on a job: it submits batches, polls many jobs in
one call, cancels, asks how much time the allocation has left, and after its own
restart re-attaches to the jobs that outlived it. Each backend maps a job's
resources onto its native form (local process + ``CUDA_VISIBLE_DEVICES``,
``srun``/``sbatch`` options, a Flux jobspec, a Parsl resource spec).

Constructors do no I/O beyond creating the backend's own state folder.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from mummi.workflow.spec import JobResources
from mummi.workflow.states import JobState


@dataclass(frozen=True)
class JobSpec:
    """A job as the coordinator hands it to a backend."""

    name: str
    command: tuple[str, ...]
    resources: JobResources
    workdir: Path
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class JobStatus:
    """What a backend knows of one job; ``exit_code`` once it has ended."""

    state: JobState
    exit_code: int | None = None
    reason: str | None = None


class BackendError(Exception):
    """The backend cannot do what was asked (a job larger than the allocation, an unknown id)."""


class Backend(abc.ABC):
    """Submit, poll, cancel, time left, re-attach."""

    label: str = "backend"
    poll_interval_s: float = 1.0

    @abc.abstractmethod
    def submit(self, jobs: Sequence[JobSpec]) -> list[str]:
        """Hand ``jobs`` to the scheduler; returns one backend id per job, in order."""

    @abc.abstractmethod
    def status(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        """The state of many jobs in one call; an id the backend never knew is FAILED."""

    @abc.abstractmethod
    def cancel(self, ids: Sequence[str]) -> None:
        """Stop these jobs; already finished ones are left as they are."""

    @abc.abstractmethod
    def time_left_s(self) -> float | None:
        """Seconds left in the allocation, or None when it has no end."""

    def reattach(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        """Take charge again of jobs submitted before a coordinator restart.

        Jobs still alive keep running and are tracked from now on; the others
        report how they ended (or FAILED if nothing is known of them).
        """
        return self.status(ids)

    def close(self) -> None:
        """Release what the backend holds; running jobs are left alone."""
