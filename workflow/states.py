"""The states a job, a patch and a selection pass through, and the legal moves between them."""

from __future__ import annotations

from enum import Enum


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
