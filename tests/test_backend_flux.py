"""The Flux backend live: a campaign on a 4-node Flux test instance, a coordinator killed and re-attached, bad URIs."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from campaign_helpers import SPEC, db_count, kill_mid_campaign_and_resume
from conftest import FLUX_CORES_PER_NODE, FLUX_GPUS_PER_NODE, FLUX_NODES

from mummi.workflow.cli import run_main

pytestmark = pytest.mark.external


def flux_spec(uri: str) -> str:
    resources = (
        f"resources: {{backend: flux, nodes: {FLUX_NODES}, cores_per_node: {FLUX_CORES_PER_NODE}, "
        f"gpus_per_node: {FLUX_GPUS_PER_NODE}, flux: {{uri: '{uri}'}}}}"
    )
    return SPEC.replace("resources: {cores_per_node: 8, gpus_per_node: 2}", resources)


def flux_jobs_of(run: Path) -> int:
    return db_count(run / "campaign.db", "SELECT COUNT(*) FROM jobs WHERE backend_id GLOB '[0-9]*'")


def test_an_unreachable_instance_is_refused_before_anything_is_written(tmp_path, capsys, flux_instance) -> None:
    spec = tmp_path / "c.yaml"
    spec.write_text(flux_spec(f"local://{tmp_path}/no-broker/local-0"))
    assert run_main([str(spec), "--validate"]) == 2
    err = capsys.readouterr().err
    assert "resources.backend 'flux': no Flux instance reachable" in err and "resources.flux.uri" in err
    assert run_main([str(spec)]) == 2
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_the_campaign_runs_on_flux_and_survives_a_killed_coordinator(tmp_path, flux_instance) -> None:
    (tmp_path / "tiny.yaml").write_text(flux_spec(flux_instance))
    run = kill_mid_campaign_and_resume(tmp_path)
    total = db_count(run / "campaign.db", "SELECT COUNT(*) FROM jobs")
    assert flux_jobs_of(run) == total, "every job ran as a Flux job"
    assert_analyses_ran_beside_their_sims(flux_instance)


def assert_analyses_ran_beside_their_sims(uri: str) -> None:
    """Flux's own record: every analysis ran on a node where its sim ran (names: KIND-SIMID-aN)."""
    listing = subprocess.run(
        [shutil.which("flux") or "flux", "jobs", "-a", "-n", "-o", "{name} {nodelist}"],
        env={**os.environ, "FLUX_URI": uri}, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    sim_nodes: dict[str, set[str]] = {}
    analysis_nodes: dict[str, str] = {}
    for line in listing.stdout.splitlines():
        if len(line.split()) != 2:
            continue  # a job that never ran has no node
        name, node = line.split()
        kind, _, rest = name.partition("-")
        sim_id = rest.rsplit("-a", 1)[0]
        if kind == "sim":
            sim_nodes.setdefault(sim_id, set()).add(node)
        elif kind == "analysis":
            analysis_nodes[sim_id] = node
    assert analysis_nodes, "no analysis ran"
    assert len({n for nodes in sim_nodes.values() for n in nodes}) > 1, "the sims all ran on one node"
    for sim_id, node in analysis_nodes.items():
        assert node in sim_nodes.get(sim_id, set()), f"{sim_id}: analysis on {node}, sim on {sim_nodes.get(sim_id)}"


def test_a_lost_node_takes_its_jobs_which_are_reported_lost(tmp_path) -> None:
    """A broker (a node) dies under a running job: Flux raises a node-failure exception; the job is lost, not failed
    through its own fault, so the coordinator runs it again without spending a retry."""
    import signal
    import time

    from test_backend_conformance import py_job, wait_for

    from mummi.adapters.flux import FluxBackend, local_instance
    from mummi.core.states import JobState

    with local_instance(2, 2, 0) as uri:
        backend = FluxBackend(uri, kill_grace_s=1.0)
        job = py_job(tmp_path, "doomed", "import time; time.sleep(300)")
        (job_id,) = backend.submit([dataclasses.replace(job, hosts=("node1",))])
        deadline = time.monotonic() + 60
        while backend.status([job_id])[job_id].state is not JobState.RUNNING:
            assert time.monotonic() < deadline, backend.status([job_id])
            time.sleep(0.1)
        env = {**os.environ, "FLUX_URI": uri}
        pid = subprocess.run(["flux", "exec", "-r", "1", "flux", "getattr", "broker.pid"], env=env,
                             capture_output=True, text=True, timeout=60, check=True).stdout.strip()  # fmt: skip
        os.kill(int(pid), signal.SIGKILL)
        status = wait_for(backend, [job_id], timeout_s=120)[job_id]
        backend.close()
    assert status.state is JobState.FAILED and status.lost, status
