"""The local backend: jobs as processes on this machine, packed onto its cores and GPUs.

Each job runs in its own session (process group) through ``job_runner.sh`` (a
POSIX shell script beside this module), so it survives a coordinator crash, can
be cancelled as a whole, and leaves its exit code in a file. The backend keeps one
JSON record per job in its state folder; after a coordinator restart,
:meth:`LocalBackend.reattach` reads them back, keeps the cores and GPUs of jobs
still alive reserved, and reports the others' exit codes.

Jobs are packed node by node (one node here; :class:`~mummi.adapters.slurm.SlurmBackend`
reuses this machinery over the nodes of an allocation): jobs that do not fit the
free resources wait in a queue, and any queued job that fits is started (first
fit), so a waiting GPU job never blocks a CPU-only one; a job with ``hosts`` waits
for room on those. ``CUDA_VISIBLE_DEVICES`` names a job's GPUs (empty for
CPU-only jobs) and ``OMP_NUM_THREADS`` its core count; its process is pinned to
its cores.

Every job's walltime is enforced: past it the job's process group gets SIGTERM
(a sim checkpoints and exits 75), and SIGKILL ``kill_grace_s`` later if it is
still there; the job then ends FAILED with the walltime as its reason. A
cancelled job is stopped the same way.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mummi.adapters.backend import Backend, BackendError, JobSpec, JobStatus
from mummi.core.atomic import atomic_write_text
from mummi.core.layout import CampaignLayout
from mummi.core.spec import CampaignSpec
from mummi.core.states import JobState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Node:
    name: str
    cores: int
    gpus: int


@dataclass
class _LocalJob:
    id: str
    name: str
    command: list[str]
    workdir: str
    log_path: str
    env: dict[str, str]
    cores_needed: int
    gpus_needed: int
    tasks: int = 1
    state: JobState = JobState.SUBMITTED
    pid: int | None = None
    start_ticks: int | None = None
    node: str | None = None
    cores: list[int] = field(default_factory=list)
    gpus: list[int] = field(default_factory=list)
    exit_code: int | None = None
    reason: str | None = None
    walltime_s: float | None = None
    started_at: float | None = None
    """On ``time.monotonic``: system-wide on Linux, so a re-attached coordinator reads the same clock
    (the jobs themselves do not outlive a reboot), and a wall clock that jumps changes nothing."""
    stop_sent_at: float | None = None
    """When it was asked to stop (walltime, cancel); killed ``kill_grace_s`` later if still running."""
    term_sent: bool = False
    kill_sent: bool = False
    hosts: list[str] = field(default_factory=list)


_CANCELLED, _WALLTIME = "cancelled", "walltime"
_SETTLE_S = 0.5
"""A job is signalled once it has run this long (its runner has started its command by then)."""
_RUNNER = Path(__file__).with_name("job_runner.sh")


class LocalBackend(Backend):
    """Jobs as processes on this one machine, on ``cores`` cores and ``gpus`` GPU slots."""

    label = "local"
    poll_interval_s = 0.5

    @classmethod
    def from_spec(cls, spec: CampaignSpec, layout: CampaignLayout) -> Backend:
        r = spec.resources
        walltime = None if r.allocation_walltime_min is None else 60 * r.allocation_walltime_min
        return cls(
            layout.logs / "local-backend",
            cores=r.cores_per_node - r.wfm_cores,
            gpus=r.gpus_per_node,
            walltime_s=walltime,
        )

    def __init__(
        self,
        state_dir: str | Path,
        cores: int,
        gpus: int,
        walltime_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        kill_grace_s: float = 30.0,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.kill_grace_s = kill_grace_s
        self.nodes = [Node(socket.gethostname(), cores, gpus)]
        self.walltime_s = walltime_s
        self._clock = clock
        self._started = clock()
        self._jobs: dict[str, _LocalJob] = {}
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._queue: list[str] = []
        self._counter: int | None = None

    # -------------------------------------------------------------- verbs
    def submit(self, jobs: Sequence[JobSpec]) -> list[str]:
        records = [self._record_for(job) for job in jobs]
        for rec in records:
            self._jobs[rec.id] = rec
            self._queue.append(rec.id)
            self._save(rec)
        self._schedule()
        return [rec.id for rec in records]

    def status(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        self._enforce_stops()
        self._reap()
        self._schedule()
        result = {}
        for job_id in ids:
            rec = self._jobs.get(job_id)
            if rec is None:
                result[job_id] = JobStatus.forgotten(self.label)
            else:
                result[job_id] = JobStatus(rec.state, rec.exit_code, rec.reason)
        return result

    def cancel(self, ids: Sequence[str]) -> None:
        for job_id in ids:
            rec = self._jobs.get(job_id)
            if rec is None or rec.state.terminal:
                continue
            if job_id in self._queue:
                self._queue.remove(job_id)
                self._finish(rec, JobState.CANCELLED, None, "cancelled before it started")
            else:
                rec.reason, rec.stop_sent_at = _CANCELLED, time.monotonic()
                self._save(rec)
        self._enforce_stops()

    def time_left_s(self) -> float | None:
        if self.walltime_s is None:
            return None
        return max(0.0, self.walltime_s - (self._clock() - self._started))

    def reattach(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        for job_id in ids:
            path = self._record_path(job_id)
            if job_id in self._jobs or not path.is_file():
                continue
            try:
                record = json.loads(path.read_text())
                rec = _LocalJob(**{**record, "state": JobState(record["state"])})
            except (ValueError, TypeError, KeyError) as err:
                log.warning("%s: not a job record (%s); the job counts as forgotten", path, err)
                continue
            self._jobs[job_id] = rec
            if rec.state is JobState.SUBMITTED:
                self._queue.append(job_id)
            elif rec.state is JobState.RUNNING:
                log.info("re-attached to %s (%s, pid %s)", job_id, rec.name, rec.pid)
        return self.status(ids)

    def close(self) -> None:
        self._reap()

    def node_of(self, job_id: str) -> list[str]:
        rec = self._jobs.get(job_id)
        return [rec.node] if rec is not None and rec.node is not None else []

    # ------------------------------------------------------------- hooks
    def _stop(self, recs: Sequence[_LocalJob]) -> None:
        """Ask running jobs to stop (SIGTERM: a sim checkpoints and exits 75); SIGCONT, as Slurm sends, lets a
        stopped process act on it."""
        for rec in recs:
            _signal_group(rec.pid, signal.SIGTERM)
            _signal_group(rec.pid, signal.SIGCONT)

    def _kill(self, recs: Sequence[_LocalJob]) -> None:
        """End jobs that did not stop when asked."""
        for rec in recs:
            _signal_group(rec.pid, signal.SIGKILL)

    def _argv(self, rec: _LocalJob) -> list[str]:
        """The command that runs the job (the exit-code runner wraps it)."""
        return list(rec.command)

    def _env(self, rec: _LocalJob) -> dict[str, str]:
        """The job's environment beyond the coordinator's and the job's own."""
        return {
            "CUDA_VISIBLE_DEVICES": ",".join(map(str, rec.gpus)),
            "OMP_NUM_THREADS": str(max(1, len(rec.cores))),
            "MUMMI_CPUS": _cpu_ids(rec.cores),
        }

    # ------------------------------------------------------------ helpers
    def _record_for(self, job: JobSpec) -> _LocalJob:
        res = job.resources
        if res.nodes != 1:
            raise BackendError(f"job {job.name}: the {self.label} backend runs jobs on one node each, the job asks for "
                               f"{res.nodes}")  # fmt: skip
        cores, gpus = res.tasks * res.cores_per_task, res.tasks * res.gpus_per_task
        if not any(cores <= n.cores and gpus <= n.gpus for n in self.nodes):
            largest = max(self.nodes, key=lambda n: (n.gpus, n.cores))
            raise BackendError(
                f"job {job.name} needs {cores} cores and {gpus} GPUs on one node; a node offers {largest.cores} "
                f"cores and {largest.gpus} GPUs (resources.cores_per_node / gpus_per_node)"
            )
        return _LocalJob(
            id=self._next_id(),
            name=job.name,
            command=list(job.command),
            workdir=str(job.workdir),
            log_path=str(job.log_path),
            env=dict(job.env),
            cores_needed=cores,
            gpus_needed=gpus,
            tasks=res.tasks,
            walltime_s=60.0 * res.walltime_min,
            hosts=list(job.hosts),
        )

    def _next_id(self) -> str:
        if self._counter is None:
            numbers = [int(p.stem.rsplit("-", 1)[1]) for p in self.state_dir.glob(f"{self.label}-*.json")]
            self._counter = max(numbers, default=0)
        self._counter += 1
        return f"{self.label}-{self._counter:07d}"

    def _free(self) -> dict[str, tuple[list[int], list[int]]]:
        """Free core and GPU indices per node."""
        busy = [r for r in self._jobs.values() if r.state is JobState.RUNNING]
        free = {}
        for node in self.nodes:
            used_cores = {c for r in busy if r.node == node.name for c in r.cores}
            used_gpus = {g for r in busy if r.node == node.name for g in r.gpus}
            free[node.name] = (
                [c for c in range(node.cores) if c not in used_cores],
                [g for g in range(node.gpus) if g not in used_gpus],
            )
        return free

    def _schedule(self) -> None:
        free = self._free()
        for job_id in list(self._queue):
            rec = self._jobs[job_id]
            only_here = len(self.nodes) == 1  # one node: ``hosts`` cannot mean another
            for name, (cores, gpus) in free.items():
                if rec.hosts and name not in rec.hosts and not only_here:
                    continue
                c, g = rec.cores_needed, rec.gpus_needed
                if c <= len(cores) and g <= len(gpus):
                    rec.node, rec.cores, rec.gpus = name, cores[:c], gpus[:g]
                    free[name] = (cores[c:], gpus[g:])
                    self._queue.remove(job_id)
                    self._launch(rec)
                    break

    def _launch(self, rec: _LocalJob) -> None:
        exit_file = self._exit_path(rec.id)
        exit_file.unlink(missing_ok=True)
        env = {**os.environ, **rec.env, **self._env(rec), "MUMMI_JOB_ID": rec.id}
        argv = ["/bin/sh", str(_RUNNER), str(exit_file), *self._argv(rec)]
        Path(rec.workdir).mkdir(parents=True, exist_ok=True)
        Path(rec.log_path).parent.mkdir(parents=True, exist_ok=True)
        with open(rec.log_path, "ab") as out:
            try:
                child = subprocess.Popen(argv, cwd=rec.workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
            except OSError as err:
                self._finish(rec, JobState.FAILED, None, f"cannot start: {err}")
                return
        self._children[rec.id] = child
        rec.pid, rec.start_ticks = child.pid, _start_ticks(child.pid)
        rec.state, rec.started_at = JobState.RUNNING, time.monotonic()
        self._save(rec)
        log.debug("started %s (%s) pid %d on %s cores %s gpus %s", rec.id, rec.name, child.pid, rec.node, rec.cores,
                  rec.gpus)  # fmt: skip

    def _enforce_stops(self) -> None:
        """Stop jobs past their walltime; kill those asked to stop ``kill_grace_s`` ago that are still there."""
        now = time.monotonic()
        to_stop, to_kill = [], []
        for rec in self._jobs.values():
            if rec.state is not JobState.RUNNING:
                continue
            if rec.stop_sent_at is None and rec.walltime_s is not None and rec.started_at is not None:
                if now - rec.started_at >= rec.walltime_s:
                    log.warning("%s (%s) reached its walltime of %.4g min; stopping it", rec.id, rec.name,
                                rec.walltime_s / 60)  # fmt: skip
                    rec.reason, rec.stop_sent_at = _WALLTIME, now
            if rec.stop_sent_at is None:
                continue
            # A SIGTERM in a job's first instants could reach the runner before its command exists, and be lost.
            if not rec.term_sent and now - (rec.started_at or 0.0) >= _SETTLE_S:
                rec.term_sent = True
                self._save(rec)
                to_stop.append(rec)
            elif not rec.kill_sent and now - rec.stop_sent_at >= self.kill_grace_s:
                rec.kill_sent = True
                to_kill.append(rec)
        if to_stop:
            self._stop(to_stop)
        if to_kill:
            self._kill(to_kill)

    def _reap(self) -> None:
        for rec in self._jobs.values():
            if rec.state is not JobState.RUNNING:
                continue
            child = self._children.get(rec.id)
            if child is not None:
                if child.poll() is None:
                    continue
                del self._children[rec.id]
            elif _alive(rec.pid, rec.start_ticks):
                continue
            code = _read_exit(self._exit_path(rec.id))
            if rec.reason == _CANCELLED:
                self._finish(rec, JobState.CANCELLED, code, _CANCELLED)
            elif rec.reason == _WALLTIME:
                limit = (rec.walltime_s or 0) / 60
                self._finish(rec, JobState.FAILED, code, f"walltime of {limit:.4g} min exceeded; log: {rec.log_path}")
            elif code is None:
                self._finish(rec, JobState.FAILED, None, "the job's runner died without an exit code")
            else:
                self._finish(
                    rec,
                    JobState.DONE if code == 0 else JobState.FAILED,
                    code,
                    None if code == 0 else f"exit code {code}; log: {rec.log_path}",
                )

    def _finish(self, rec: _LocalJob, state: JobState, code: int | None, reason: str | None) -> None:
        rec.state, rec.exit_code, rec.reason = state, code, reason
        self._save(rec)

    def _save(self, rec: _LocalJob) -> None:
        # Not fsynced: a record matters only while its job's processes live, and they die with the machine.
        record = json.dumps({**asdict(rec), "state": rec.state.value})
        atomic_write_text(self._record_path(rec.id), record, durable=False)

    def _record_path(self, job_id: str) -> Path:
        return self.state_dir / f"{job_id}.json"

    def _exit_path(self, job_id: str) -> Path:
        return self.state_dir / f"{job_id}.exit"


def _cpu_ids(indices: Sequence[int]) -> str:
    """The CPUs (as ``taskset -c`` takes them) of core slots ``indices``, counted in this process's allowed CPUs."""
    if not indices or not hasattr(os, "sched_getaffinity"):
        return ""
    cpus = sorted(os.sched_getaffinity(0))
    return ",".join(str(cpus[i % len(cpus)]) for i in indices)


def _read_exit(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _start_ticks(pid: int) -> int | None:
    """Process start time in clock ticks since boot (Linux), to tell a pid from a reused one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _alive(pid: int | None, start_ticks: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if start_ticks is not None and _start_ticks(pid) != start_ticks:
        return False
    return _state_of(pid) != "Z"


def _state_of(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def _signal_group(pid: int | None, signum: int) -> None:
    if pid is None:
        return
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass
