"""The one interface every scheduler backend implements.

The coordinator never blocks on a job: it submits batches, polls many jobs in
one call, cancels, asks how much time the allocation has left, and after its own
restart re-attaches to the jobs that outlived it. Each backend maps a job's
resources onto its native form (local process + ``CUDA_VISIBLE_DEVICES``,
``srun``/``sbatch`` options, a Flux jobspec, a Parsl resource spec).

Constructors do no I/O beyond creating the backend's own state folder.
Backends are chosen by the name in ``resources.backend`` through :data:`BACKENDS`;
each lives in its own module, imported only when asked for.
"""

from __future__ import annotations

import abc
import importlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mummi.core.layout import CampaignLayout
from mummi.core.spec import CampaignSpec, JobResources
from mummi.core.states import JobKind, JobState

#: Backend name (``resources.backend``) -> ``module:class``.
BACKENDS: dict[str, str] = {
    "local": "mummi.adapters.local:LocalBackend",
    "flux": "mummi.adapters.flux:FluxBackend",
    "slurm": "mummi.adapters.slurm:SlurmBackend",
    "parsl": "mummi.adapters.parsl:ParslBackend",
    "simulated": "mummi.adapters.simulated:SimulatedBackend",
}


@dataclass(frozen=True)
class JobSpec:
    """A job as the coordinator hands it to a backend."""

    name: str
    command: tuple[str, ...]
    resources: JobResources
    workdir: Path
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    hosts: tuple[str, ...] = ()
    """Run on these nodes (an in situ analysis beside its sim); empty: wherever the scheduler likes."""
    kind: JobKind | None = None
    """What the job does (schedulers ignore it; the simulated backend models its duration by it)."""


@dataclass(frozen=True)
class JobStatus:
    """What a backend knows of one job; ``exit_code`` once it has ended."""

    state: JobState
    exit_code: int | None = None
    reason: str | None = None
    lost: bool = False
    """It ended with its node (lost, or taken back), or the scheduler forgot it, through no fault of its own: its
    outputs say what it finished; run it again for the rest, retries unspent."""

    @classmethod
    def forgotten(cls, backend: str) -> JobStatus:
        """A job the backend knows nothing of (its records or its scheduler's are gone): lost; its outputs decide."""
        return cls(JobState.FAILED, reason=f"unknown to the {backend} backend (its scheduler forgot it)", lost=True)


class BackendError(Exception):
    """The backend cannot do what was asked (a job larger than the allocation, an unknown id)."""


class Backend(abc.ABC):
    """Submit, poll, cancel, time left, re-attach."""

    label: str = "backend"
    poll_interval_s: float = 1.0
    jobs_write_files: bool = True
    """Its jobs run and write their outputs, which the coordinator may watch (a simulated backend's do not)."""

    @classmethod
    @abc.abstractmethod
    def from_spec(cls, spec: CampaignSpec, layout: CampaignLayout) -> Backend:
        """The backend a campaign's spec asks for, keeping its own state under ``layout``."""

    @classmethod
    def preflight(cls, spec: CampaignSpec) -> None:
        """Raise :class:`BackendError` (saying what to fix) when this backend cannot run ``spec`` here."""
        return  # most backends need no check

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

    def changed(self) -> set[str] | None:
        """Ids of the jobs whose state changed since the last call; None when the backend cannot tell.

        A backend that can (the simulated one) spares the coordinator a poll of every active job each turn.
        """
        return None

    def reattach(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        """Take charge again of jobs submitted before a coordinator restart.

        Jobs still alive keep running and are tracked from now on; the others
        report how they ended (or FAILED if nothing is known of them).
        """
        return self.status(ids)

    def chain(self) -> str:
        """Submit the follow-up of the allocation this runs in (the same batch script, after this one ends).

        Returns the new allocation's id; :class:`BackendError` where the backend cannot.
        """
        raise BackendError(f"the {self.label} backend cannot submit a follow-up allocation (campaign.chain)")

    def now(self) -> float:
        """The campaign's clock, in seconds (monotonic); the simulated backend's is virtual."""
        return time.monotonic()

    def wait(self, seconds: float) -> None:
        """Pause the coordinator between turns; the simulated backend advances its clock instead."""
        time.sleep(seconds)

    def node_of(self, job_id: str) -> list[str]:
        """The nodes a started job runs on (empty before it starts, or when the backend cannot tell)."""
        return []

    def close(self) -> None:  # noqa: B027 (a backend that holds nothing needs no close)
        """Release what the backend holds; running jobs are left alone."""


def backend_class(spec: CampaignSpec) -> type[Backend]:
    """The scheduler backend class named by ``resources.backend`` (one of :data:`BACKENDS`)."""
    name = spec.resources.backend
    try:
        target = BACKENDS[name]
    except KeyError:
        raise BackendError(f"resources.backend {name!r} is unknown; allowed: {', '.join(BACKENDS)}") from None
    module, cls = target.split(":")
    backend: type[Backend] = getattr(importlib.import_module(module), cls)
    return backend


def make_backend(spec: CampaignSpec, layout: CampaignLayout) -> Backend:
    return backend_class(spec).from_spec(spec, layout)
