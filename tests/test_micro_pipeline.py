"""The micro pipeline's reading of how a job ended, on the simulated backend (no process runs)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from test_coordinator_simulated import spec

from mummi.adapters.backend import JobStatus, make_backend
from mummi.core import simdir
from mummi.core.layout import CampaignLayout
from mummi.core.lipids import N_CHANNELS
from mummi.core.patch_input import COARSE_CELLS, PatchInput, patch_input_readable
from mummi.core.resources import ResourcePolicy
from mummi.core.spec_loader import load_spec
from mummi.core.states import JobKind, JobState, Outcome, PatchState, SimState
from mummi.workflow.jobrunner import Finished, JobRunner
from mummi.workflow.micro import MicroPipeline
from mummi.workflow.store import StateStore


def patch(patch_id: str) -> PatchInput:
    return PatchInput(patch_id, np.full((COARSE_CELLS, COARSE_CELLS, N_CHANNELS), 0.1), np.zeros((0, 2)), np.zeros(0))


@contextlib.contextmanager
def pipeline(tmp_path: Path) -> Iterator[tuple[CampaignLayout, StateStore, JobRunner, MicroPipeline]]:
    """A micro pipeline over a fresh store, on the simulated backend."""
    campaign = load_spec(spec(tmp_path))
    cdir = CampaignLayout(tmp_path / "run")
    cdir.root.mkdir(parents=True)
    with StateStore(cdir.db) as store:
        runner = JobRunner(store, make_backend(campaign, cdir))
        yield cdir, store, runner, MicroPipeline(campaign, cdir, store, runner, ResourcePolicy.from_spec(campaign))


def test_a_createsim_that_finds_its_patch_input_unreadable_gets_it_written_again(tmp_path: Path) -> None:
    with pipeline(tmp_path) as (cdir, store, runner, micro):
        store.add_patches([("p1", 0.0, 0, "frame-1")])
        store.set_patch_states(["p1"], PatchState.CANDIDATE)
        store.record_selection("p1", "sim-000001", 1.0)
        micro.start_selected(patch)
        runner.flush()
        path = cdir.sim("sim-000001") / simdir.PATCH_INPUT
        assert patch_input_readable(path)
        path.write_bytes(path.read_bytes()[:50])  # what a crash of the machine may leave of an unsynced file
        (job,) = runner.active(JobKind.CREATESIM, "sim-000001")
        failed = store.set_job_state(job.id, JobState.FAILED, exit_code=1)
        micro.on_finished(Finished(failed, JobStatus(JobState.FAILED, 1, "exit code 1")))
        assert store.selection("sim-000001").state is SimState.SELECTED  # no retry spent on a lost input
        micro.start_selected(patch)
        assert patch_input_readable(path) and store.selection("sim-000001").state is SimState.SETTING_UP


def test_a_job_that_says_a_retry_would_fail_the_same_way_fails_its_sim_at_once(tmp_path: Path) -> None:
    with pipeline(tmp_path) as (cdir, store, runner, micro):
        store.add_patches([("p1", 0.0, 0, "frame-1"), ("p2", 0.0, 1, "frame-1")])
        store.set_patch_states(["p1", "p2"], PatchState.CANDIDATE)
        for n, patch_id in enumerate(("p1", "p2"), 1):
            store.record_selection(patch_id, f"sim-00000{n}", 1.0)
        micro.start_selected(patch)
        runner.flush()
        for n, retry in ((1, False), (2, True)):
            sim_id = f"sim-00000{n}"
            simdir.write_status(cdir.sim(sim_id), "createsim", Outcome.FAILED, error="unstable", retry=retry)
            (job,) = runner.active(JobKind.CREATESIM, sim_id)
            failed = store.set_job_state(job.id, JobState.FAILED, exit_code=1)
            micro.on_finished(Finished(failed, JobStatus(JobState.FAILED, 1, "exit code 1")))
        assert store.selection("sim-000001").state is SimState.FAILED  # it said a retry fails the same way
        assert store.selection("sim-000002").state is SimState.SETTING_UP  # retried
        reasons = [e.data.get("reason", "") for e in store.events("sim.state") if e.subject == "sim-000001"]
        assert any("gave up, not retried: unstable" in r for r in reasons), reasons
