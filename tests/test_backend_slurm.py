"""The Slurm backend live: a campaign as job steps of an allocation, a killed coordinator re-attached, bad setups."""

from __future__ import annotations

import pytest
from campaign_helpers import SPEC, db_count, kill_mid_campaign_and_resume
from conftest import SLURM_GPUS

from mummi.adapters.slurm import parse_time_left
from mummi.workflow.cli import run_main

pytestmark = pytest.mark.external


def slurm_spec(job_id: str) -> str:
    resources = (
        f"resources: {{backend: slurm, nodes: 1, cores_per_node: 8, gpus_per_node: {SLURM_GPUS}, "
        f"slurm: {{job_id: '{job_id}'}}}}"
    )
    return SPEC.replace("resources: {cores_per_node: 8, gpus_per_node: 2}", resources)


def test_time_left_as_squeue_prints_it() -> None:
    assert parse_time_left("5:00") == 300
    assert parse_time_left("1:02:03") == 3723
    assert parse_time_left("2-01:00:00") == 2 * 86400 + 3600
    assert parse_time_left("UNLIMITED") is None


def test_without_slurm_commands_or_with_an_oversized_job_it_is_refused(tmp_path, capsys, monkeypatch,
                                                                       slurm_allocation) -> None:  # fmt: skip
    spec = tmp_path / "c.yaml"
    spec.write_text(SPEC.replace("resources: {cores_per_node: 8, gpus_per_node: 2}", "resources: {backend: slurm}"))
    with monkeypatch.context() as no_slurm:
        no_slurm.delenv("SLURM_JOB_ID", raising=False)
        no_slurm.setenv("PATH", str(tmp_path))
        assert run_main([str(spec), "--validate"]) == 2
    assert "not inside an allocation (no SLURM_JOB_ID) and sbatch is not on PATH" in capsys.readouterr().err
    big = slurm_spec(slurm_allocation).replace("cores_per_node: 8,", "cores_per_node: 64,") + (
        "analysis: {resources: {cores_per_task: 16}}\n"
    )
    spec.write_text(big)
    assert run_main([str(spec)]) == 2
    assert "analysis.resources: 16 cores and 0 GPUs do not fit a node of allocation" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_the_campaign_runs_as_job_steps_and_survives_a_killed_coordinator(tmp_path, slurm_allocation) -> None:
    (tmp_path / "tiny.yaml").write_text(slurm_spec(slurm_allocation))
    run = kill_mid_campaign_and_resume(tmp_path)
    total = db_count(run / "campaign.db", "SELECT COUNT(*) FROM jobs")
    assert db_count(run / "campaign.db", "SELECT COUNT(*) FROM jobs WHERE backend_id LIKE 'slurm-%'") == total
