"""The simulated backend: virtual time, node-aware placement, sims continued across walltimes, faults, determinism."""

from __future__ import annotations

from pathlib import Path

import pytest

from mummi.adapters.backend import JobSpec
from mummi.adapters.simulated import SimulatedBackend
from mummi.core import simdir
from mummi.core.exit_codes import EXIT_RESUMABLE
from mummi.core.spec import JobResources, SimSettings, SimulatedSettings
from mummi.core.states import JobKind, JobState, Outcome

DAY = 86400.0


def backend(tmp_path: Path, nodes: int = 2, gpus: int = 2, seed: int = 1, **settings: object) -> SimulatedBackend:
    sim, simulated = SimSettings(length_ns=1020.0), SimulatedSettings.model_validate(settings)
    return SimulatedBackend(tmp_path / "state", nodes=nodes, cores=8, gpus=gpus, seed=seed, sim=sim, settings=simulated)


def job(tmp_path: Path, kind: JobKind, key: str, *, gpus: int = 0, cores: int = 1, walltime_min: float = 2880.0,
        hosts: tuple[str, ...] = ()) -> JobSpec:  # fmt: skip
    workdir = tmp_path / "sims" / key
    workdir.mkdir(parents=True, exist_ok=True)
    resources = JobResources(cores_per_task=cores, gpus_per_task=gpus, walltime_min=walltime_min)
    return JobSpec(f"{kind.value}-{key}", ("true",), resources, workdir, workdir / "log", hosts=hosts, kind=kind)


def run_until_ended(b: SimulatedBackend, ids: list[str], limit_s: float = 30 * DAY) -> dict:
    while not all(s.state.terminal for s in b.status(ids).values()):
        assert b.now() < limit_s, b.status(ids)
        b.wait(1.0)
    return b.status(ids)


def test_a_sim_runs_its_length_at_the_engine_speed_in_virtual_time(tmp_path: Path) -> None:
    b = backend(tmp_path)
    (sim,) = b.submit([job(tmp_path, JobKind.SIM, "s1", gpus=1, walltime_min=2 * 1440)])
    status = run_until_ended(b, [sim])[sim]
    assert status.state is JobState.DONE and status.exit_code == 0
    assert b.now() == pytest.approx(DAY, abs=60)  # 1.02 µs at 1.02 µs/day, in at most tick_s steps
    assert simdir.is_done(tmp_path / "sims" / "s1", JobKind.SIM)


def test_gpu_jobs_are_packed_node_by_node_and_wait_for_a_free_gpu(tmp_path: Path) -> None:
    b = backend(tmp_path, nodes=2, gpus=2)
    ids = b.submit([job(tmp_path, JobKind.SIM, f"s{i}", gpus=1) for i in range(5)])
    states = b.status(ids)
    assert [states[i].state for i in ids].count(JobState.RUNNING) == 4
    assert sorted(b.node_of(i)[0] for i in ids[:4]) == ["node00000", "node00000", "node00001", "node00001"]
    assert states[ids[4]].state is JobState.SUBMITTED
    run_until_ended(b, ids[:1])
    assert b.status(ids[4:])[ids[4]].state is JobState.RUNNING  # the freed GPU, at the same instant


def test_an_analysis_pinned_beside_its_sim_ends_just_after_it(tmp_path: Path) -> None:
    b = backend(tmp_path, analysis_lag_min=2.0)
    (sim,) = b.submit([job(tmp_path, JobKind.SIM, "s1", gpus=1)])
    (analysis,) = b.submit([job(tmp_path, JobKind.ANALYSIS, "s1", cores=3, hosts=tuple(b.node_of(sim)))])
    assert b.node_of(analysis) == b.node_of(sim)
    run_until_ended(b, [sim])
    ended = b.now()
    assert b.status([analysis])[analysis].state is JobState.RUNNING
    run_until_ended(b, [analysis])
    assert b.now() == pytest.approx(ended + 120.0)
    assert simdir.is_done(tmp_path / "sims" / "s1", JobKind.ANALYSIS)


def test_a_sim_longer_than_its_walltime_stops_with_a_checkpoint_and_continues(tmp_path: Path) -> None:
    b = backend(tmp_path)
    (first,) = b.submit([job(tmp_path, JobKind.SIM, "s1", gpus=1, walltime_min=600)])
    status = run_until_ended(b, [first])[first]
    assert status.exit_code == EXIT_RESUMABLE and "walltime" in (status.reason or "")
    assert simdir.outcome(tmp_path / "sims" / "s1", JobKind.SIM) is Outcome.INCOMPLETE
    (second,) = b.submit([job(tmp_path, JobKind.SIM, "s1", gpus=1, walltime_min=1440)])
    assert run_until_ended(b, [second])[second].state is JobState.DONE
    assert b.now() == pytest.approx(DAY + 10.0, abs=120)  # the whole length, plus the checkpoint's write


def test_a_hung_job_is_killed_after_its_walltime_and_the_grace(tmp_path: Path) -> None:
    b = backend(tmp_path, hang_rate=1.0, kill_grace_s=30.0)
    (hung,) = b.submit([job(tmp_path, JobKind.CREATESIM, "s1", cores=4, walltime_min=5)])
    status = run_until_ended(b, [hung])[hung]
    assert status.state is JobState.FAILED and "walltime of 5 min exceeded" in (status.reason or "")
    assert b.now() == pytest.approx(5 * 60 + 30)
    assert simdir.read_status(tmp_path / "sims" / "s1", JobKind.CREATESIM) is None


def test_a_lost_node_takes_its_jobs_and_comes_back(tmp_path: Path) -> None:
    b = backend(tmp_path, nodes=1, gpus=2, node_mtbf_h=1.0, node_repair_min=30.0)
    ids = b.submit([job(tmp_path, JobKind.SIM, f"s{i}", gpus=1) for i in range(2)])
    final = run_until_ended(b, ids)
    assert all(s.state is JobState.FAILED and s.reason == "node node00000 lost" for s in final.values())
    (again,) = b.submit([job(tmp_path, JobKind.CREATESIM, "s0")])
    assert b.status([again])[again].state is JobState.SUBMITTED  # the node is down
    lost_at = b.now()
    while b.status([again])[again].state is JobState.SUBMITTED:
        b.wait(1.0)
    assert b.now() == pytest.approx(lost_at + 30 * 60)


def test_the_same_seed_gives_the_same_history_and_the_world_outlives_an_allocation(tmp_path: Path) -> None:
    def history(root: Path) -> list[tuple[float, str, str]]:
        b = backend(root, nodes=3, gpus=2, seed=7, fail_rate=0.2, hang_rate=0.1, node_mtbf_h=24.0, allocation_min=600)
        ids = b.submit([job(root, JobKind.CREATESIM, f"s{i}", cores=3, walltime_min=120) for i in range(12)])
        seen: list[tuple[float, str, str]] = []
        while b.time_left_s():
            b.wait(1.0)
            seen += [(b.now(), i, s.state.value) for i, s in b.status(ids).items() if s.state.terminal]
        b.close()
        return seen

    first, second = history(tmp_path / "a"), history(tmp_path / "b")
    assert first == second and len({i for _, i, _ in first}) == 12
    assert {s for _, _, s in first} >= {"done", "failed"}
    later = backend(tmp_path / "a", nodes=3, gpus=2, seed=7, allocation_min=600)
    assert later.now() == first[-1][0] and later.time_left_s() == 600 * 60  # the next allocation starts then


def test_with_a_poll_interval_one_wait_takes_in_every_event_within_it(tmp_path: Path) -> None:
    b = backend(tmp_path, poll_s=600.0, createsim={"mean_min": 91.0}, train={"mean_min": 93.0})
    ids = b.submit([job(tmp_path, JobKind.CREATESIM, "s1"), job(tmp_path, JobKind.TRAIN, "t")])  # end 2 min apart
    while all(s.state is JobState.RUNNING for s in b.status(ids).values()):
        b.wait(1.0)
    assert all(s.state is JobState.DONE for s in b.status(ids).values())  # both in one turn
    assert b.now() == 6000.0  # the first poll after both ends (5460 s, 5580 s)
