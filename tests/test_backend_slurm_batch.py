"""The Slurm backend outside an allocation (one sbatch job per job): the conformance suite, preflight, a campaign.

A module of its own: the suite's in-allocation harness holds the test cluster's
node for its whole module, and jobs submitted here need that node.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import test_backend_conformance as suite
from campaign_helpers import SPEC, db_count, kill_mid_campaign_and_resume
from conftest import SLURM_GPUS, require_program

from mummi.adapters.backend import BackendError
from mummi.adapters.slurm import SlurmBackend
from mummi.adapters.slurm_batch import SlurmBatchBackend
from mummi.core.layout import CampaignLayout
from mummi.core.spec import CampaignSpec


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[suite.Harness]:
    require_program("sbatch", "a Slurm cluster is needed (.ci/slurm-cluster.sh start)")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    yield suite.Harness(lambda: SlurmBatchBackend(tmp_path / "state", kill_grace_s=1.0), gpus=SLURM_GPUS)


test_success_environment_workdir_and_output = suite.test_success_environment_workdir_and_output
test_non_zero_exit_and_a_kill_by_signal = suite.test_non_zero_exit_and_a_kill_by_signal_are_failures_with_their_codes
test_cancel_running_and_waiting_jobs = suite.test_cancel_running_and_waiting_jobs
test_walltime_is_enforced = suite.test_walltime_is_enforced
test_a_wall_clock_that_jumps_changes_nothing = suite.test_a_wall_clock_that_jumps_changes_nothing
test_hostile_strings_stay_arguments = suite.test_hostile_strings_stay_arguments
test_gpu_jobs_get_distinct_devices = suite.test_gpu_jobs_get_distinct_devices_and_never_outnumber_the_gpus
test_a_batch_of_100_jobs = suite.test_a_batch_of_100_jobs


def test_reattach_after_the_coordinator_dies_with_jobs_running(harness: suite.Harness, tmp_path: Path) -> None:
    suite.check_reattach(harness, tmp_path)


def spec_outside_an_allocation(chain: int = 0, sim_gpus: int = 1, **slurm: object) -> CampaignSpec:
    return CampaignSpec.model_validate({
        "campaign": {"name": "batch", "workdir": "/tmp/unused", "chain": chain},
        "resources": {"backend": "slurm", "gpus_per_node": 8, "slurm": slurm},
        "sim": {"resources": {"gpus_per_task": sim_gpus}},
    })  # fmt: skip


def test_outside_an_allocation_the_slurm_backend_submits_sbatch_jobs(harness, tmp_path) -> None:
    spec = spec_outside_an_allocation(sbatch_args=["--qos=normal"])
    SlurmBackend.preflight(spec)
    backend = SlurmBackend.from_spec(spec, CampaignLayout(tmp_path / "campaign"))
    assert isinstance(backend, SlurmBatchBackend) and "--qos=normal" in backend.sbatch_args


def test_preflight_names_an_unknown_partition_a_job_too_large_and_chaining(harness) -> None:
    with pytest.raises(BackendError, match="resources.slurm.partition 'nosuch'"):
        SlurmBackend.preflight(spec_outside_an_allocation(partition="nosuch"))
    with pytest.raises(BackendError, match=r"sim.resources: .* do not fit a node"):
        SlurmBackend.preflight(spec_outside_an_allocation(sim_gpus=SLURM_GPUS + 1))
    with pytest.raises(BackendError, match="campaign.chain"):
        SlurmBackend.preflight(spec_outside_an_allocation(chain=2))


@pytest.mark.slow
def test_the_campaign_runs_as_sbatch_jobs_and_survives_a_killed_coordinator(harness, tmp_path) -> None:
    resources = f"resources: {{backend: slurm, nodes: 1, cores_per_node: 8, gpus_per_node: {SLURM_GPUS}}}"
    (tmp_path / "tiny.yaml").write_text(SPEC.replace("resources: {cores_per_node: 8, gpus_per_node: 2}", resources))
    run = kill_mid_campaign_and_resume(tmp_path)
    total = db_count(run / "campaign.db", "SELECT COUNT(*) FROM jobs")
    slurm_jobs = db_count(run / "campaign.db", "SELECT COUNT(*) FROM jobs WHERE backend_id NOT GLOB '*[^0-9]*'")
    assert total > 0 and slurm_jobs == total  # Slurm job ids


def test_squeue_and_sacct_lines_give_state_run_time_and_node() -> None:
    from mummi.adapters.slurm_batch import _parse, slurm_duration_s

    assert [slurm_duration_s(t) for t in ("0:05", "1:02:03", "2-01:02:03", "INVALID", "")] == [5, 3723, 176523, 0, 0]
    seen = _parse("12 RUNNING 1:00 node1\n13 PENDING 0:00\n14 CANCELLED by 0 00:00:07 node2\n")
    assert seen == {"12": ("RUNNING", 60.0, "node1"), "13": ("PENDING", 0.0, ""), "14": ("CANCELLED", 7.0, "node2")}
