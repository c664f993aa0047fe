"""The Parsl backend: jobs as bash apps on two HighThroughputExecutors inside the allocation.

Parsl's HighThroughputExecutor has no per-task GPU request, so there are two
executors: ``gpu``, whose workers are the node's GPUs (``available_accelerators``:
each worker, and so each task, sees one ``CUDA_VISIBLE_DEVICES``), for jobs that
ask for a GPU; and ``cpu``, one worker per core, for the others. Parsl's own
retries are off (the coordinator decides). Each job runs through the exit-code
runner (:mod:`mummi.adapters.watchdog_runner`), which the coordinator cannot signal
on a worker node, so the runner watches over the job itself: it stops it at its
walltime (SIGTERM, then SIGKILL after ``kill_grace_s``) or when the job's cancel
file appears in the backend's state folder (on the campaign's shared file
system), and records the exit code, why it was stopped, and the node it ran on.

A restarted coordinator cannot re-attach to the tasks of a dead DataFlowKernel:
jobs that had finished report their recorded outcome; the others are asked to
stop (cancel file) and reported FAILED as lost, so they are run again, from
their checkpoints.

Where the workers run is ``resources.parsl.provider``: ``local`` starts each
executor's worker pools with Parsl's ``LocalProvider``, on this node, or, with
``resources.nodes`` > 1 inside a Slurm allocation, on every node of it through
``SrunLauncher``; ``slurm`` puts each executor's workers in a Slurm job of its
own (``SlurmProvider`` with ``SrunLauncher``, not exclusive: the GPU executor's
job asks for the GPUs and a core per GPU, the CPU executor's for the cores).
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mummi.adapters.backend import Backend, BackendError, JobSpec, JobStatus
from mummi.core.layout import CampaignLayout
from mummi.core.spec import CampaignSpec, ParslSettings
from mummi.core.states import JobState

if TYPE_CHECKING:
    from parsl.dataflow.futures import AppFuture

log = logging.getLogger(__name__)

_RUNNER = Path(__file__).with_name("watchdog_runner.py")
_LOST = "lost with the previous coordinator (Parsl cannot re-attach); it runs again"


def _command(command: str) -> str:
    """The bash app: its return value is the command line Parsl runs."""
    return command


class ParslBackend(Backend):
    """Bash apps on a ``gpu`` and a ``cpu`` HighThroughputExecutor (LocalProvider)."""

    label = "parsl"
    poll_interval_s = 0.5

    @classmethod
    def from_spec(cls, spec: CampaignSpec, layout: CampaignLayout) -> ParslBackend:
        r = spec.resources
        return cls(layout.logs / "parsl-backend", cores=r.cores_per_node - r.wfm_cores, gpus=r.gpus_per_node,
                   nodes=r.nodes, settings=r.parsl, walltime_min=r.allocation_walltime_min)  # fmt: skip

    @classmethod
    def preflight(cls, spec: CampaignSpec) -> None:
        try:
            import parsl  # noqa: F401
        except ImportError as err:
            raise BackendError(f"resources.backend 'parsl': Parsl is not installed ({err}); pip install parsl") from err
        for stage in ("macro", "createsim", "sim", "analysis"):
            res = getattr(spec, stage).resources
            if res.nodes != 1 or res.tasks * res.gpus_per_task > 1:
                raise BackendError(
                    f"{stage}.resources: the Parsl backend runs one-node jobs with at most one GPU each "
                    "(a HighThroughputExecutor worker per GPU); use the Slurm or Flux backend for larger jobs"
                )

    def __init__(self, state_dir: str | Path, cores: int, gpus: int, *, nodes: int = 1,
                 settings: ParslSettings | None = None, walltime_min: float | None = None,
                 kill_grace_s: float = 30.0) -> None:  # fmt: skip
        self.state_dir = Path(state_dir)
        self.cores, self.gpus, self.nodes = cores, gpus, nodes
        self.settings = settings or ParslSettings()
        self.walltime_min = walltime_min
        self.kill_grace_s = kill_grace_s
        self._dfk: Any = None
        self._started_at: float | None = None
        self._apps: dict[str, Any] = {}
        self._futures: dict[str, AppFuture] = {}
        self._lost: set[str] = set()
        self._run = uuid.uuid4().hex[:12]  # ids never repeat those of an earlier coordinator
        self._counter = 0

    # -------------------------------------------------------------- verbs
    def submit(self, jobs: Sequence[JobSpec]) -> list[str]:
        self._start()
        ids = []
        for job in jobs:
            res = job.resources
            if res.nodes != 1 or res.tasks * res.gpus_per_task > 1:
                raise BackendError(f"job {job.name}: the Parsl backend runs one-node jobs with at most one GPU")
            job_id = self._next_id()
            job.workdir.mkdir(parents=True, exist_ok=True)
            job.log_path.parent.mkdir(parents=True, exist_ok=True)
            runner = [
                sys.executable, "-I", "-S", str(_RUNNER), str(self._path(job_id, "exit")),
                "--walltime", f"{60.0 * res.walltime_min:g}", "--grace", f"{self.kill_grace_s:g}",
                "--cancel-file", str(self._path(job_id, "cancel")), "--started-file", str(self._path(job_id, "host")),
                "--", *job.command,
            ]  # fmt: skip
            env = [f"{k}={v}" for k, v in job.env.items()]
            # Output redirected here, not through Parsl's stdout/stderr, which adds a header of its own.
            log_file = shlex.quote(str(job.log_path))
            line = f"cd {shlex.quote(str(job.workdir))} && exec env {shlex.join(env + runner)} >> {log_file} 2>&1"
            self._futures[job_id] = self._apps["gpu" if res.gpus_per_task else "cpu"](line)
            ids.append(job_id)
        return ids

    def status(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        return {job_id: self._status_of(job_id) for job_id in ids}

    def cancel(self, ids: Sequence[str]) -> None:
        for job_id in ids:
            if not self._path(job_id, "exit").exists():
                self._path(job_id, "cancel").touch()

    def time_left_s(self) -> float | None:
        """The workers' Slurm jobs end at their walltime (provider ``slurm``); local workers never do."""
        if self.settings.provider != "slurm" or self._started_at is None:
            return None
        return max(0.0, 60 * self._walltime_min() - (time.monotonic() - self._started_at))

    def reattach(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        for job_id in ids:
            if job_id not in self._futures and not self._path(job_id, "exit").exists():
                self._path(job_id, "cancel").touch()  # in case it still runs somewhere
                self._lost.add(job_id)
        return self.status(ids)

    def close(self) -> None:
        if self._dfk is not None:
            import parsl

            self._await_handover()
            self._dfk.cleanup()
            parsl.clear()
            self._dfk = None

    def node_of(self, job_id: str) -> list[str]:
        try:
            return [self._path(job_id, "host").read_text().strip()]
        except FileNotFoundError:
            return []

    # ------------------------------------------------------------ helpers
    def _await_handover(self, timeout_s: float = 60.0) -> None:
        """Wait until Parsl has handed every submitted task to its executor: its cleanup stops the
        executors before its launch threads, and a task still being handed over then can block it
        for ever (seen once: a launch thread stuck sending to an interchange that had gone)."""
        deadline = time.monotonic() + timeout_s
        while any(f.task_status() == "pending" for f in self._futures.values()):
            if time.monotonic() > deadline:
                log.warning("Parsl has not handed every task to its executor after %g s; closing anyway", timeout_s)
                return
            time.sleep(0.05)

    def _start(self) -> None:
        if self._dfk is not None:
            return
        import parsl
        from parsl.app.app import bash_app
        from parsl.config import Config
        from parsl.executors import HighThroughputExecutor

        self.state_dir.mkdir(parents=True, exist_ok=True)
        # Parsl starts its interchange and worker pools by script name: they sit beside this interpreter.
        bin_dir = str(Path(sys.executable).parent)
        if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
        one_node = self.nodes == 1 and self.settings.provider == "local"
        address = self.settings.address or ("127.0.0.1" if one_node else None)

        def executor(label: str, workers: int, accelerators: list[str] | None) -> HighThroughputExecutor:
            return HighThroughputExecutor(label=label, max_workers_per_node=workers, cores_per_worker=1e-6,
                                          available_accelerators=accelerators or [], provider=self._provider(label),
                                          address=address, cpu_affinity="none",
                                          worker_logdir_root=str(self.state_dir / "workers"))  # fmt: skip

        executors = [executor("cpu", self.cores, None)]
        if self.gpus:
            executors.append(executor("gpu", self.gpus, [str(g) for g in range(self.gpus)]))
        config = Config(executors=executors, retries=0, run_dir=str(self.state_dir / "runinfo"), strategy="none",
                        initialize_logging=False)  # fmt: skip
        self._dfk = parsl.load(config)
        self._started_at = time.monotonic()
        self._apps = {e.label: bash_app(_command, executors=[e.label]) for e in executors}

    def _provider(self, label: str) -> Any:
        """Where executor ``label``'s worker pools run: one block of ``nodes`` nodes, started once."""
        from parsl.launchers import SingleNodeLauncher, SrunLauncher
        from parsl.providers import LocalProvider, SlurmProvider

        p = self.settings
        if p.provider == "local":
            # Inside an allocation the two executors' pools share its nodes: each srun step overlaps the other.
            launcher = SrunLauncher(overrides="--overlap") if self.nodes > 1 else SingleNodeLauncher()
            return LocalProvider(nodes_per_block=self.nodes, launcher=launcher, worker_init=p.worker_init,
                                 init_blocks=1, min_blocks=1, max_blocks=1)  # fmt: skip
        gpus = self.gpus if label == "gpu" else None
        minutes = round(self._walltime_min())
        return SlurmProvider(
            partition=p.partition, account=p.account, nodes_per_block=self.nodes, exclusive=False,
            cores_per_node=self.gpus if label == "gpu" else self.cores, gpus_per_node=gpus,
            walltime=f"{minutes // 60:02d}:{minutes % 60:02d}:00", worker_init=p.worker_init,
            scheduler_options="\n".join(f"#SBATCH {option}" for option in p.scheduler_options),
            launcher=SrunLauncher(), init_blocks=1, min_blocks=1, max_blocks=1,
        )  # fmt: skip

    def _walltime_min(self) -> float:
        return self.walltime_min or 24 * 60.0

    def _status_of(self, job_id: str) -> JobStatus:
        exit_file = self._path(job_id, "exit")
        if exit_file.exists():
            lines = exit_file.read_text().split("\n")
            code, reason = int(lines[0]), (lines[1] if len(lines) > 1 else "")
            if reason == "cancelled":
                return JobStatus(JobState.CANCELLED, code, "cancelled")
            if reason == "walltime":
                return JobStatus(JobState.FAILED, code, "walltime exceeded")
            return JobStatus(JobState.DONE if code == 0 else JobState.FAILED, code,
                             None if code == 0 else f"exit code {code}")  # fmt: skip
        future = self._futures.get(job_id)
        if job_id in self._lost:
            return JobStatus(JobState.FAILED, reason=_LOST, lost=True)
        if future is None:
            return JobStatus.forgotten("parsl")
        if future.done():
            error = future.exception()
            if not self._path(job_id, "exit").exists():  # the runner never ran, or died
                if self._path(job_id, "cancel").exists():
                    return JobStatus(JobState.CANCELLED, reason="cancelled")
                return JobStatus(JobState.FAILED, reason=f"the task ended without an exit code: {error}")
            return self._status_of(job_id)
        return JobStatus(JobState.RUNNING if self._path(job_id, "host").exists() else JobState.SUBMITTED)

    def _path(self, job_id: str, kind: str) -> Path:
        return self.state_dir / f"{job_id}.{kind}"

    def _next_id(self) -> str:
        self._counter += 1
        return f"parsl-{self._run}-{self._counter:07d}"
