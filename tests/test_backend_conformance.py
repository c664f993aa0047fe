"""What every scheduler backend must do, run against each backend present (DESIGN.md, "Backends").

Success, a non-zero exit, a kill by a signal, cancel, walltime, GPUs (distinct
``CUDA_VISIBLE_DEVICES`` per concurrent job, never more GPU jobs than GPUs),
environment, working directory, output to the log path, a batch of 100 jobs, and
re-attach after the coordinator died with jobs running. A backend joins by adding
a harness to the ``harness`` fixture (or, like the Slurm backend outside an
allocation, by a module that runs these tests with a ``harness`` of its own).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import FLUX_GPUS_PER_NODE, FLUX_NODES, SLURM_GPUS

from mummi.adapters.backend import Backend, JobSpec, JobStatus
from mummi.adapters.flux import FluxBackend
from mummi.adapters.local import LocalBackend
from mummi.adapters.parsl import ParslBackend
from mummi.adapters.slurm import SlurmBackend
from mummi.core.spec import JobResources
from mummi.core.states import JobState

PY = sys.executable


@dataclass
class Harness:
    """A backend under test: ``make()`` builds one over the same state (a second call is a restarted coordinator)."""

    make: Callable[[], Backend]
    gpus: int
    """GPUs the backend schedules on (all nodes)."""


def local_harness(tmp_path: Path) -> Iterator[Harness]:
    yield Harness(lambda: LocalBackend(tmp_path / "state", cores=4, gpus=2, kill_grace_s=1.0), gpus=2)


def flux_harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    uri = request.getfixturevalue("flux_instance")
    yield Harness(lambda: FluxBackend(uri, kill_grace_s=1.0), gpus=FLUX_NODES * FLUX_GPUS_PER_NODE)


def slurm_harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    job_id = request.getfixturevalue("slurm_allocation")
    yield Harness(lambda: SlurmBackend(tmp_path / "state", job_id, kill_grace_s=1.0), gpus=SLURM_GPUS)


def parsl_harness(tmp_path: Path) -> Iterator[Harness]:
    made: list[Backend] = []

    def make() -> Backend:
        made.append(ParslBackend(tmp_path / "state", cores=4, gpus=2, kill_grace_s=1.0))
        return made[-1]

    yield Harness(make, gpus=2)
    for backend in made:
        backend.close()


@pytest.fixture(params=["local", "flux", "slurm", "parsl"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    if request.param == "local":
        yield from local_harness(tmp_path)
    elif request.param == "parsl":
        yield from parsl_harness(tmp_path)
    elif request.param == "flux":
        yield from flux_harness(request)
    else:
        yield from slurm_harness(request, tmp_path)


def py_job(tmp_path: Path, name: str, code: str, *, cores: int = 1, gpus: int = 0, walltime_min: float = 5.0,
           env: dict[str, str] | None = None) -> JobSpec:  # fmt: skip
    return JobSpec(
        name=name,
        command=(PY, "-c", code),
        resources=JobResources(cores_per_task=cores, gpus_per_task=gpus, walltime_min=walltime_min),
        workdir=tmp_path / "work" / name,
        log_path=tmp_path / "logs" / f"{name}.log",
        env=env or {},
    )


def wait_for(backend: Backend, ids: list[str], timeout_s: float = 90.0) -> dict[str, JobStatus]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = backend.status(ids)
        if all(s.state.terminal for s in status.values()):
            return status
        time.sleep(0.1)
    raise AssertionError(f"jobs did not end within {timeout_s} s: {backend.status(ids)}")


def log_of(tmp_path: Path, name: str) -> str:
    return (tmp_path / "logs" / f"{name}.log").read_text()


def test_success_environment_workdir_and_output(harness: Harness, tmp_path: Path) -> None:
    backend = harness.make()
    code = (
        "import os, sys, json; print(json.dumps({'cwd': os.getcwd(), 'flag': os.environ.get('MUMMI_TEST_FLAG')}));"
        "print('to stderr', file=sys.stderr)"
    )
    (job_id,) = backend.submit([py_job(tmp_path, "ok", code, env={"MUMMI_TEST_FLAG": "on"})])
    status = wait_for(backend, [job_id])[job_id]
    assert status.state is JobState.DONE and status.exit_code == 0
    out = log_of(tmp_path, "ok")
    facts = json.loads(next(line for line in out.splitlines() if line.startswith("{")))  # streams may interleave
    assert Path(facts["cwd"]).resolve() == (tmp_path / "work" / "ok").resolve()
    assert facts["flag"] == "on"
    assert "to stderr" in out
    backend.close()


def test_non_zero_exit_and_a_kill_by_signal_are_failures_with_their_codes(harness: Harness, tmp_path: Path) -> None:
    backend = harness.make()
    ids = backend.submit([
        py_job(tmp_path, "three", "import sys; sys.exit(3)"),
        py_job(tmp_path, "killed", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"),
    ])  # fmt: skip
    status = wait_for(backend, ids)
    assert status[ids[0]].state is JobState.FAILED and status[ids[0]].exit_code == 3
    assert status[ids[1]].state is JobState.FAILED and status[ids[1]].exit_code == 128 + 9
    backend.close()


def test_cancel_running_and_waiting_jobs(harness: Harness, tmp_path: Path) -> None:
    backend = harness.make()
    sleepers = [py_job(tmp_path, f"sleep{i}", "import time; time.sleep(120)", gpus=1) for i in range(harness.gpus + 1)]
    ids = backend.submit(sleepers)
    deadline = time.monotonic() + 60
    while not any(s.state is JobState.RUNNING for s in backend.status(ids).values()):
        assert time.monotonic() < deadline, "no job started"
        time.sleep(0.1)
    backend.cancel(ids)
    status = wait_for(backend, ids, timeout_s=60)
    assert {s.state for s in status.values()} == {JobState.CANCELLED}
    backend.close()


def test_walltime_is_enforced(harness: Harness, tmp_path: Path) -> None:
    backend = harness.make()
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
    polite = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(75)); time.sleep(120)"
    ids = backend.submit([
        py_job(tmp_path, "stubborn", stubborn, walltime_min=0.1),
        py_job(tmp_path, "polite", polite, walltime_min=0.1),
    ])  # fmt: skip
    started = time.monotonic()
    status = wait_for(backend, ids, timeout_s=90)
    assert time.monotonic() - started < 60
    for job_id in ids:
        assert status[job_id].state is JobState.FAILED
        assert "walltime" in (status[job_id].reason or "")
    assert status[ids[1]].exit_code == 75  # a job that stops cleanly at its walltime says so
    backend.close()


def test_a_wall_clock_that_jumps_changes_nothing(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Walltimes run on monotonic clocks: a day forward kills nothing early, a day back delays no stop."""
    backend = harness.make()
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
    ids = backend.submit([
        py_job(tmp_path, "short", "import time; time.sleep(3)", walltime_min=0.1),
        py_job(tmp_path, "stubborn", stubborn, walltime_min=0.1),
    ])  # fmt: skip
    real, jump = time.time, [86400.0]
    monkeypatch.setattr(time, "time", lambda: real() + jump[0])
    assert wait_for(backend, ids[:1])[ids[0]].state is JobState.DONE
    jump[0] = -86400.0
    started = time.monotonic()
    status = wait_for(backend, ids[1:], timeout_s=90)[ids[1]]
    assert status.state is JobState.FAILED and "walltime" in (status.reason or "")
    assert time.monotonic() - started < 60
    backend.close()


HOSTILE = ("two words", "it's", 'say "hi"', "a;b", "$(touch pwned)", "`touch pwned`", "../..", "/etc/passwd",
           "line\nbreak", "*", "-n")  # fmt: skip


def test_hostile_strings_stay_arguments(harness: Harness, tmp_path: Path) -> None:
    """Commands are argument lists end to end: no shell reads a job's arguments, paths or environment."""
    backend = harness.make()
    code = "import json, os, sys; print(json.dumps({'argv': sys.argv[1:], 'env': os.environ['MUMMI_TEST_FLAG']}))"
    spec = py_job(tmp_path, "odd name; $(touch pwned) 'q'", code, env={"MUMMI_TEST_FLAG": "$(touch pwned); `x`"})
    spec = dataclasses.replace(spec, command=(*spec.command, *HOSTILE))
    (job_id,) = backend.submit([spec])
    assert wait_for(backend, [job_id])[job_id].state is JobState.DONE
    facts = json.loads(spec.log_path.read_text().splitlines()[0])
    assert facts == {"argv": list(HOSTILE), "env": "$(touch pwned); `x`"}
    assert not list(tmp_path.rglob("pwned")) and not Path("pwned").exists()
    backend.close()


def test_gpu_jobs_get_distinct_devices_and_never_outnumber_the_gpus(harness: Harness, tmp_path: Path) -> None:
    backend = harness.make()
    code = (
        "import os, time, json; print(json.dumps({'gpus': os.environ.get('CUDA_VISIBLE_DEVICES'), "
        "'start': time.time()})); time.sleep(1.5); print(json.dumps({'end': time.time()}))"
    )
    n = 2 * harness.gpus
    ids = backend.submit([py_job(tmp_path, f"gpu{i}", code, gpus=1) for i in range(n)])
    nodes: dict[str, list[str]] = {}
    deadline = time.monotonic() + 120
    while True:
        status = backend.status(ids)
        nodes.update({i: backend.node_of(i) for i in ids if i not in nodes and backend.node_of(i)})
        if len(nodes) == n and all(s.state.terminal for s in status.values()):
            break
        assert time.monotonic() < deadline, "the GPU jobs did not end"
        time.sleep(0.05)
    assert all(s.state is JobState.DONE for s in status.values())
    spans, devices = [], []
    for i, job_id in enumerate(ids):
        lines = [json.loads(line) for line in log_of(tmp_path, f"gpu{i}").splitlines() if line.startswith("{")]
        devices.append((tuple(nodes[job_id]), lines[0]["gpus"]))
        spans.append((lines[0]["start"], lines[1]["end"]))
    assert all(gpu not in (None, "", "-1") and "," not in gpu for _, gpu in devices)
    for t in sorted(s for s, _ in spans):
        running = [i for i, (s, e) in enumerate(spans) if s <= t < e]
        assert len(running) <= harness.gpus, "more concurrent GPU jobs than GPUs"
        assert len({devices[i] for i in running}) == len(running), "two concurrent jobs share a GPU"
    backend.close()


def test_a_batch_of_100_jobs(harness: Harness, tmp_path: Path) -> None:
    backend = harness.make()
    ids = backend.submit([py_job(tmp_path, f"b{i:03d}", f"print({i})") for i in range(100)])
    assert len(set(ids)) == 100
    status = wait_for(backend, ids, timeout_s=300)
    assert all(s.state is JobState.DONE for s in status.values())
    assert [log_of(tmp_path, f"b{i:03d}").strip() for i in range(100)] == [str(i) for i in range(100)]
    backend.close()


# Parsl cannot re-attach to a dead DataFlowKernel's tasks: test_backend_parsl.py tests what it does instead.
@pytest.mark.parametrize("harness", ["local", "flux", "slurm"], indirect=True)
def test_reattach_after_the_coordinator_dies_with_jobs_running(harness: Harness, tmp_path: Path) -> None:
    check_reattach(harness, tmp_path)


def check_reattach(harness: Harness, tmp_path: Path) -> None:
    first = harness.make()
    marker = tmp_path / "finished"
    code = f"import time, pathlib; time.sleep(2.0); pathlib.Path({str(marker)!r}).write_text('x')"
    ids = first.submit([py_job(tmp_path, "survivor", code), py_job(tmp_path, "failer", "import sys; sys.exit(4)")])
    deadline = time.monotonic() + 60
    while first.status(ids[:1])[ids[0]].state is not JobState.RUNNING:
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.1)
    del first  # the coordinator dies; its jobs live on

    second = harness.make()
    status = second.reattach(ids)
    assert status[ids[0]].state in (JobState.RUNNING, JobState.DONE)
    final = wait_for(second, ids)
    assert final[ids[0]].state is JobState.DONE and marker.read_text() == "x"
    assert final[ids[1]].state is JobState.FAILED and final[ids[1]].exit_code == 4
    second.close()
