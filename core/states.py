"""The states a job, a patch and a selection pass through, the legal moves between them, and job kinds and outcomes."""

from __future__ import annotations

from enum import Enum


class JobKind(str, Enum):
    """What a job does; every job the coordinator submits is one of these."""

    MACRO = "macro"
    """The coupled macro model, running for the whole campaign."""
    PRECAMPAIGN = "precampaign"
    """The uncoupled macro run whose patches train the encoder."""
    TRAIN = "train"
    """Encoder training."""
    CREATESIM = "createsim"
    """Patch to equilibrated membrane."""
    SIM = "sim"
    """Production MD of one selected patch."""
    ANALYSIS = "analysis"
    """In situ RDF analysis beside its sim."""


#: The job kinds that work inside one sim folder, in the order a sim passes through them.
SIM_STAGES: tuple[JobKind, ...] = (JobKind.CREATESIM, JobKind.SIM, JobKind.ANALYSIS)


class Outcome(str, Enum):
    """How a job's own work ended, as its status record says (written last, so present only when it ended)."""

    DONE = "done"
    """Finished; rerunning it does nothing."""
    INCOMPLETE = "incomplete"
    """Stopped cleanly before its walltime with a checkpoint; run it again to continue."""
    FAILED = "failed"
    """Raised an error; the record says which."""


class JobState(str, Enum):
    """Life of one job as the coordinator sees it."""

    PENDING = "pending"
    """Recorded in the store, not yet handed to a backend."""
    SUBMITTED = "submitted"
    """Accepted by the backend; waiting for resources."""
    RUNNING = "running"
    """Started on its resources."""
    DONE = "done"
    """Finished and wrote its status record."""
    FAILED = "failed"
    """Ended without success; may be retried as a new attempt."""
    CANCELLED = "cancelled"
    """Stopped on purpose (shutdown, end of allocation)."""

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_JOB_STATES


TERMINAL_JOB_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})

JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.SUBMITTED, JobState.CANCELLED, JobState.FAILED}),
    JobState.SUBMITTED: frozenset({JobState.RUNNING, JobState.DONE, JobState.FAILED, JobState.CANCELLED}),
    JobState.RUNNING: frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED}),
    # A retry re-queues a failed or cancelled job as a new attempt.
    JobState.FAILED: frozenset({JobState.PENDING}),
    JobState.CANCELLED: frozenset({JobState.PENDING}),
    JobState.DONE: frozenset(),
}


class PatchState(str, Enum):
    """Where a patch stands in the sampler."""

    SEEN = "seen"
    """Extracted from a frame, not yet encoded."""
    CANDIDATE = "candidate"
    """Encoded and in the candidate queue."""
    SELECTED = "selected"
    """Picked by the sampler: it becomes a simulation."""
    DISCARDED = "discarded"
    """Fell off the capped candidate queue (still counts for the weights)."""


PATCH_TRANSITIONS: dict[PatchState, frozenset[PatchState]] = {
    PatchState.SEEN: frozenset({PatchState.CANDIDATE, PatchState.SELECTED, PatchState.DISCARDED}),
    PatchState.CANDIDATE: frozenset({PatchState.SELECTED, PatchState.DISCARDED}),
    PatchState.SELECTED: frozenset(),
    PatchState.DISCARDED: frozenset(),
}


class SimState(str, Enum):
    """Progress of one selected patch through the micro scale."""

    SELECTED = "selected"
    SETTING_UP = "setting_up"
    READY = "ready"
    """Set up (createsim done), waiting for a GPU."""
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


SIM_TRANSITIONS: dict[SimState, frozenset[SimState]] = {
    SimState.SELECTED: frozenset({SimState.SETTING_UP, SimState.FAILED}),
    SimState.SETTING_UP: frozenset({SimState.READY, SimState.SELECTED, SimState.FAILED}),
    SimState.READY: frozenset({SimState.RUNNING, SimState.FAILED}),
    SimState.RUNNING: frozenset({SimState.DONE, SimState.READY, SimState.FAILED}),
    SimState.DONE: frozenset(),
    SimState.FAILED: frozenset(),
}
