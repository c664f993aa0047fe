"""The local backend: packing onto cores and GPUs, exit codes, cancel, re-attach after a coordinator restart."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from mummi.adapters.backend import BackendError, JobSpec
from mummi.adapters.local import LocalBackend
from mummi.core.spec import JobResources
from mummi.core.states import JobState

PY = sys.executable


def job(tmp_path: Path, name: str, code: str, cores: int = 1, gpus: int = 0) -> JobSpec:
    return JobSpec(
        name=name,
        command=(PY, "-c", code),
        resources=JobResources(cores_per_task=cores, gpus_per_task=gpus),
        workdir=tmp_path / name,
        log_path=tmp_path / "logs" / f"{name}.log",
    )


def wait_for(backend: LocalBackend, ids: list[str], timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = backend.status(ids)
        if all(s.state.terminal for s in status.values()):
            return status
        time.sleep(0.05)
    raise AssertionError(f"jobs did not end: {backend.status(ids)}")


ENV_DUMP = (
    "import os; print(os.environ['CUDA_VISIBLE_DEVICES'] + '|' + os.environ['OMP_NUM_THREADS'] + '|' + "
    "','.join(map(str, sorted(os.sched_getaffinity(0)))))"
)


def test_jobs_get_their_own_gpus_and_cores(tmp_path):
    backend = LocalBackend(tmp_path / "state", cores=2, gpus=2)
    ids = backend.submit([job(tmp_path, "g1", ENV_DUMP, gpus=1), job(tmp_path, "g2", ENV_DUMP, gpus=1)])
    status = wait_for(backend, ids)
    assert all(s.state is JobState.DONE and s.exit_code == 0 for s in status.values())
    cpus = sorted(os.sched_getaffinity(0))
    seen = {(tmp_path / "logs" / f"{n}.log").read_text().strip() for n in ("g1", "g2")}
    assert seen == {f"0|1|{cpus[0]}", f"1|1|{cpus[1 % len(cpus)]}"}  # each pinned to its own core
    cpu = backend.submit([job(tmp_path, "c", ENV_DUMP, cores=2)])
    wait_for(backend, cpu)
    both = ",".join(map(str, sorted({cpus[0], cpus[1 % len(cpus)]})))
    assert (tmp_path / "logs" / "c.log").read_text().strip() == f"|2|{both}"


def test_jobs_wait_for_free_cores_and_a_cpu_job_passes_a_waiting_gpu_job(tmp_path):
    backend = LocalBackend(tmp_path / "state", cores=2, gpus=1)
    hold = "import time; time.sleep(1.5)"
    first = backend.submit(
        [job(tmp_path, "a", hold, gpus=1), job(tmp_path, "b", hold, gpus=1), job(tmp_path, "c", hold)]
    )
    status = backend.status(first)
    assert [status[i].state for i in first] == [JobState.RUNNING, JobState.SUBMITTED, JobState.RUNNING]
    final = wait_for(backend, first)
    assert all(s.state is JobState.DONE for s in final.values())


def test_a_failing_job_reports_its_exit_code_and_log(tmp_path):
    backend = LocalBackend(tmp_path / "state", cores=1, gpus=0)
    (job_id,) = backend.submit([job(tmp_path, "bad", "import sys; sys.exit(3)")])
    status = wait_for(backend, [job_id])[job_id]
    assert status.state is JobState.FAILED and status.exit_code == 3
    assert "bad.log" in status.reason


def test_cancel_running_and_queued_jobs(tmp_path):
    backend = LocalBackend(tmp_path / "state", cores=1, gpus=0)
    ids = backend.submit([job(tmp_path, "long", "import time; time.sleep(60)"), job(tmp_path, "queued", "pass")])
    backend.cancel(ids)
    status = wait_for(backend, ids, timeout_s=20)
    assert {s.state for s in status.values()} == {JobState.CANCELLED}
    assert not (tmp_path / "logs" / "queued.log").exists()


def test_unknown_ids_and_oversized_jobs(tmp_path):
    backend = LocalBackend(tmp_path / "state", cores=2, gpus=0)
    assert backend.status(["local-9999999"])["local-9999999"].state is JobState.FAILED
    with pytest.raises(BackendError, match="needs 0 cores and 1 GPUs|needs 1 cores and 1 GPUs"):
        backend.submit([job(tmp_path, "gpu", "pass", gpus=1)])


def test_reattach_after_a_coordinator_restart(tmp_path):
    state = tmp_path / "state"
    first = LocalBackend(state, cores=2, gpus=0)
    marker = tmp_path / "finished"
    code = f"import time, pathlib; time.sleep(1.0); pathlib.Path({str(marker)!r}).write_text('x')"
    ids = first.submit([job(tmp_path, "survivor", code, cores=2), job(tmp_path, "waiting", "pass")])
    assert first.status(ids)[ids[1]].state is JobState.SUBMITTED
    del first  # the coordinator dies; its jobs live on in their own sessions

    second = LocalBackend(state, cores=2, gpus=0)
    status = second.reattach(ids)
    assert status[ids[0]].state is JobState.RUNNING
    assert status[ids[1]].state is JobState.SUBMITTED  # the survivor still holds both cores
    new = second.submit([job(tmp_path, "new", "pass")])
    assert new[0] not in ids
    final = wait_for(second, ids + new)
    assert all(s.state is JobState.DONE for s in final.values())
    assert marker.read_text() == "x"


def test_time_left_counts_down_on_the_backend_clock(tmp_path):
    now = [100.0]
    backend = LocalBackend(tmp_path / "state", cores=1, gpus=0, walltime_s=60, clock=lambda: now[0])
    assert backend.time_left_s() == 60
    now[0] += 45
    assert backend.time_left_s() == 15
    assert LocalBackend(tmp_path / "s2", cores=1, gpus=0).time_left_s() is None
