"""The Parsl backend: a campaign on HighThroughputExecutors, and what a restarted coordinator says of old tasks."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from campaign_helpers import SPEC, check_campaign, db_count, finish, mummi
from conftest import require_program

from mummi.adapters.backend import JobSpec
from mummi.adapters.parsl import ParslBackend
from mummi.core.spec import JobResources, ParslSettings
from mummi.core.states import JobState


def job(tmp_path: Path, name: str, code: str) -> JobSpec:
    return JobSpec(name=name, command=(sys.executable, "-c", code), resources=JobResources(walltime_min=5),
                   workdir=tmp_path / name, log_path=tmp_path / f"{name}.log")  # fmt: skip


def test_a_restarted_coordinator_reports_finished_tasks_and_reruns_lost_ones(tmp_path: Path) -> None:
    first = ParslBackend(tmp_path / "state", cores=2, gpus=0, kill_grace_s=1.0)
    done_id, lost_id = first.submit(
        [job(tmp_path, "quick", "pass"), job(tmp_path, "slow", "import time; time.sleep(60)")]
    )
    deadline = time.monotonic() + 60
    while first.status([done_id])[done_id].state is not JobState.DONE or not first.node_of(lost_id):
        assert time.monotonic() < deadline, first.status([done_id, lost_id])
        time.sleep(0.1)
    first.close()  # the coordinator's DataFlowKernel is gone

    second = ParslBackend(tmp_path / "state", cores=2, gpus=0, kill_grace_s=1.0)
    status = second.reattach([done_id, lost_id])
    assert status[done_id].state is JobState.DONE and status[done_id].exit_code == 0
    assert status[lost_id].state is JobState.FAILED and "cannot re-attach" in (status[lost_id].reason or "")
    assert (tmp_path / "state" / f"{lost_id}.cancel").exists(), "a lost task is asked to stop wherever it runs"
    (new_id,) = second.submit([job(tmp_path, "again", "pass")])
    assert new_id not in (done_id, lost_id)
    second.close()


@pytest.mark.external
def test_with_the_slurm_provider_the_workers_run_in_slurm_jobs(tmp_path: Path) -> None:
    require_program("sbatch", "a Slurm cluster is needed (.ci/slurm-cluster.sh start)")
    settings = ParslSettings(provider="slurm", address="127.0.0.1", scheduler_options=["--comment=mummi-tests"])
    backend = ParslBackend(tmp_path / "state", cores=2, gpus=2, settings=settings, walltime_min=10, kill_grace_s=1.0)
    where = "import os; print(os.environ['SLURM_JOB_ID'], os.environ.get('CUDA_VISIBLE_DEVICES', ''))"
    gpu = JobResources(gpus_per_task=1, walltime_min=5)
    jobs = [job(tmp_path, f"cpu{i}", where) for i in range(2)]
    jobs += [JobSpec(name=f"gpu{i}", command=(sys.executable, "-c", where + "; import time; time.sleep(2)"),
                     resources=gpu, workdir=tmp_path / f"gpu{i}", log_path=tmp_path / f"gpu{i}.log")
             for i in range(2)]  # fmt: skip
    try:
        ids = backend.submit(jobs)
        deadline = time.monotonic() + 180
        while not all(s.state.terminal for s in backend.status(ids).values()):
            assert time.monotonic() < deadline, backend.status(ids)
            time.sleep(0.2)
        assert all(s.state is JobState.DONE for s in backend.status(ids).values()), backend.status(ids)
        assert 0 < (backend.time_left_s() or 0) < 600  # the workers' jobs end after walltime_min
    finally:
        backend.close()
    seen = {j.name: (tmp_path / f"{j.name}.log").read_text().split() for j in jobs}
    cpu_jobs, gpu_jobs = {seen["cpu0"][0], seen["cpu1"][0]}, {seen["gpu0"][0], seen["gpu1"][0]}
    assert len(cpu_jobs) == len(gpu_jobs) == 1 and cpu_jobs != gpu_jobs  # one Slurm job per executor
    assert sorted(seen[f"gpu{i}"][1] for i in range(2)) == ["0", "1"]  # a GPU each, side by side


@pytest.mark.slow
def test_the_campaign_runs_on_parsl(tmp_path: Path) -> None:
    spec = SPEC.replace("resources: {cores_per_node: 8, gpus_per_node: 2}",
                        "resources: {backend: parsl, cores_per_node: 8, gpus_per_node: 2}")  # fmt: skip
    (tmp_path / "tiny.yaml").write_text(spec)
    code, out = finish(mummi("tiny.yaml", cwd=tmp_path))
    assert code == 0, out[-4000:]
    check_campaign(tmp_path / "run")
    db = tmp_path / "run" / "campaign.db"
    total = db_count(db, "SELECT COUNT(*) FROM jobs")
    assert db_count(db, "SELECT COUNT(*) FROM jobs WHERE backend_id LIKE 'parsl-%'") == total
    assert db_count(db, "SELECT COUNT(*) FROM jobs WHERE state = 'failed'") == 0


def test_a_job_with_more_than_one_gpu_is_refused_before_anything_is_written(tmp_path: Path, capsys) -> None:
    from mummi.workflow.cli import run_main

    spec = SPEC.replace("resources: {cores_per_node: 8, gpus_per_node: 2}",
                        "resources: {backend: parsl, cores_per_node: 8, gpus_per_node: 4}")  # fmt: skip
    (tmp_path / "tiny.yaml").write_text(spec.replace("sim:\n", "sim:\n  resources: {gpus_per_task: 2}\n"))
    assert run_main([str(tmp_path / "tiny.yaml"), "--validate"]) == 2
    assert "sim.resources: the Parsl backend runs one-node jobs with at most one GPU" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
