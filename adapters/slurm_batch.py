"""The Slurm backend outside an allocation: one ``sbatch`` job per job.

Used when ``mummi-run`` runs on a login node (no ``SLURM_JOB_ID``, no
``resources.slurm.job_id``). Each job is submitted as
``sbatch --parsable -N1 -n T -c C [--gpus-per-task=G] --time=… --output=LOG job_runner.sh EXIT_FILE COMMAND…``
(no shell line is built from data: the command travels as the script's
arguments) with the coordinator's environment plus the job's. Slurm runs it when
and where it likes and sets ``CUDA_VISIBLE_DEVICES``. The walltime is enforced
as by the other backends, on the run time Slurm reports (``squeue %M``; no clock
of ours, so a wall clock that jumps changes nothing): SIGTERM to
all its processes (``scancel --full --signal=TERM``; a sim checkpoints and exits
75), ``scancel`` after ``kill_grace_s``; the job's own ``--time`` (walltime plus
grace, in minutes) is Slurm's backstop. ``scancel`` cancels (SIGTERM, SIGKILL
the cluster's ``KillWait`` later; a pending job just ends). The states of all jobs come from one ``squeue`` call per
poll (``sacct`` for jobs ``squeue`` no longer lists, where accounting is on);
exit codes from the exit file the runner leaves on the shared file system. Each
job has a small record (its exit file, log, node, last state) in the backend's
state folder, so a restarted coordinator re-attaches by Slurm job id.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from mummi.adapters.backend import Backend, BackendError, JobSpec, JobStatus
from mummi.adapters.slurm import slurm_command
from mummi.core.atomic import atomic_write_text
from mummi.core.layout import CampaignLayout
from mummi.core.spec import CampaignSpec
from mummi.core.states import JobState

log = logging.getLogger(__name__)

_RUNNER = Path(__file__).with_name("job_runner.sh")
_CANCELLED, _WALLTIME = "cancelled", "walltime"
_LOST = {"NODE_FAIL", "PREEMPTED", "BOOT_FAIL"}
_WAITING = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED"}
_RUNNING = {"RUNNING", "COMPLETING", "STOPPED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD"}


@dataclass
class _BatchJob:
    id: str
    name: str
    exit_file: str
    log_path: str
    walltime_min: float
    slurm_state: str = "PENDING"
    node: str = ""
    elapsed_s: float = 0.0
    """Its run time as Slurm last reported it."""
    stop: str | None = None
    """Why it was asked to stop (cancelled, walltime)."""
    stop_sent_at: float | None = None
    """On this coordinator's ``time.monotonic``; a re-attaching one starts the grace again."""
    kill_sent: bool = False
    state: JobState = JobState.SUBMITTED
    exit_code: int | None = None
    reason: str | None = None
    lost: bool = False


class SlurmBatchBackend(Backend):
    """One ``sbatch`` job per job, on the cluster ``mummi-run`` submits to."""

    label = "slurm"
    poll_interval_s = 1.0

    @classmethod
    def from_spec(cls, spec: CampaignSpec, layout: CampaignLayout) -> SlurmBatchBackend:
        s = spec.resources.slurm
        return cls(layout.logs / "slurm-batch-backend", sbatch_args=_sbatch_options(spec),
                   mem_per_cpu_mb=s.mem_per_cpu_mb)  # fmt: skip

    @classmethod
    def preflight(cls, spec: CampaignSpec) -> None:
        if shutil.which("sbatch") is None:
            raise BackendError(
                "resources.backend 'slurm': not inside an allocation (no SLURM_JOB_ID) and sbatch is not on PATH; "
                "run mummi-run on a Slurm cluster's login node or inside salloc/sbatch"
            )
        if spec.campaign.chain:
            raise BackendError(
                "campaign.chain: mummi-run submits each job with sbatch here (it is not inside an allocation), "
                "so there is no allocation to follow up; set campaign.chain: 0, or run it from an sbatch script"
            )
        partition = spec.resources.slurm.partition
        listing = slurm_command(["sinfo", "-h", "-o", "%P %c %G", *(["-p", partition] if partition else [])])
        if not listing.strip():
            raise BackendError(f"resources.slurm.partition {partition!r}: no such Slurm partition (see sinfo)")
        cores = gpus = 0
        for line in listing.splitlines():
            _name, node_cores, gres = line.split(maxsplit=2)
            cores = max(cores, int(node_cores.rstrip("+")))
            gpus = max(gpus, _gpus_in(gres))
        for stage in ("macro", "createsim", "sim", "analysis"):
            res = getattr(spec, stage).resources
            need_cores, need_gpus = res.tasks * res.cores_per_task, res.tasks * res.gpus_per_task
            if need_cores > cores or need_gpus > gpus:
                raise BackendError(
                    f"{stage}.resources: {need_cores} cores and {need_gpus} GPUs do not fit a node of partition "
                    f"{partition or '(default)'} (at most {cores} cores, {gpus} GPUs); lower them or choose "
                    "another resources.slurm.partition"
                )

    def __init__(self, state_dir: str | Path, *, sbatch_args: Sequence[str] = (),
                 mem_per_cpu_mb: int | None = None, kill_grace_s: float = 30.0) -> None:  # fmt: skip
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.sbatch_args = list(sbatch_args)
        self.mem_per_cpu_mb = mem_per_cpu_mb
        self.kill_grace_s = kill_grace_s
        self._jobs: dict[str, _BatchJob] = {}

    # -------------------------------------------------------------- verbs
    def submit(self, jobs: Sequence[JobSpec]) -> list[str]:
        ids = []
        for job in jobs:
            res = job.resources
            if res.nodes != 1:
                raise BackendError(f"job {job.name}: one node per job, it asks for {res.nodes}")
            exit_file = self.state_dir / f"{_safe(job.name)}-{uuid.uuid4().hex}.exit"
            Path(job.workdir).mkdir(parents=True, exist_ok=True)
            Path(job.log_path).parent.mkdir(parents=True, exist_ok=True)
            argv = [
                "sbatch", "--parsable", "-N1", f"--ntasks={res.tasks}", f"--cpus-per-task={res.cores_per_task}",
                f"--time={math.ceil(res.walltime_min + self.kill_grace_s / 60)}", f"--job-name={job.name}",
                f"--chdir={job.workdir}", f"--output={job.log_path}", "--open-mode=append",
            ]  # fmt: skip
            argv.append(f"--gpus-per-task={res.gpus_per_task}" if res.gpus_per_task else "--gres=none")
            if self.mem_per_cpu_mb is not None:
                argv.append(f"--mem-per-cpu={self.mem_per_cpu_mb}")
            if job.hosts:
                argv.append(f"--nodelist={','.join(job.hosts)}")
            argv += [*self.sbatch_args, str(_RUNNER), str(exit_file), *job.command]
            env = {**os.environ, **job.env, "OMP_NUM_THREADS": str(res.cores_per_task)}
            job_id = slurm_command(argv, env=env).strip().split(";")[0]
            rec = _BatchJob(job_id, job.name, str(exit_file), str(job.log_path), res.walltime_min)
            self._jobs[job_id] = rec
            self._save(rec)
            ids.append(job_id)
        return ids

    def status(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        self._refresh([i for i in ids if i in self._jobs and not self._jobs[i].state.terminal])
        self._enforce_stops()
        result = {}
        for job_id in ids:
            rec = self._jobs.get(job_id)
            if rec is None:
                result[job_id] = JobStatus.forgotten("Slurm")
            else:
                result[job_id] = JobStatus(rec.state, rec.exit_code, rec.reason, lost=rec.lost)
        return result

    def cancel(self, ids: Sequence[str]) -> None:
        """``scancel``: SIGTERM to the job's processes, SIGKILL ``KillWait`` later (a pending job just ends)."""
        live = [self._jobs[i] for i in ids if i in self._jobs and not self._jobs[i].state.terminal]
        for rec in live:
            rec.stop, rec.stop_sent_at, rec.kill_sent = _CANCELLED, time.monotonic(), True
            self._save(rec)
        if live:
            slurm_command(["scancel", *(rec.id for rec in live)], check=False)

    def time_left_s(self) -> float | None:
        return None  # each job has its own allocation; the coordinator's has no end

    def reattach(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        for job_id in ids:
            path = self._record_path(job_id)
            if job_id not in self._jobs and path.is_file():
                try:
                    record = json.loads(path.read_text())
                    known = {key: record[key] for key in _BatchJob.__dataclass_fields__ if key in record}
                    rec = _BatchJob(**{**known, "state": JobState(record["state"])})
                except (ValueError, TypeError, KeyError, AttributeError) as err:
                    log.warning("%s: not a job record (%s); the job counts as forgotten", path, err)
                    continue
                rec.stop_sent_at = None if rec.stop_sent_at is None else time.monotonic()
                self._jobs[job_id] = rec
        return self.status(ids)

    def node_of(self, job_id: str) -> list[str]:
        rec = self._jobs.get(job_id)
        return [rec.node] if rec is not None and rec.node else []

    # ------------------------------------------------------------ helpers
    def _enforce_stops(self) -> None:
        """SIGTERM to jobs past their walltime, in one call; ``scancel`` to those still there after the grace."""
        now = time.monotonic()
        to_stop, to_kill = [], []
        for rec in self._jobs.values():
            if rec.state is not JobState.RUNNING:
                continue
            if rec.stop is None and rec.elapsed_s >= 60 * rec.walltime_min:
                log.warning("%s (%s) reached its walltime of %.4g min; stopping it", rec.id, rec.name, rec.walltime_min)
                rec.stop, rec.stop_sent_at = _WALLTIME, now
                to_stop.append(rec)
            elif rec.stop_sent_at is not None and not rec.kill_sent and now - rec.stop_sent_at >= self.kill_grace_s:
                rec.kill_sent = True
                to_kill.append(rec)
        for recs, argv in ((to_stop, ["scancel", "--full", "--signal=TERM"]), (to_kill, ["scancel"])):
            for rec in recs:
                self._save(rec)
            if recs:
                slurm_command([*argv, *(rec.id for rec in recs)], check=False)

    def _refresh(self, ids: list[str]) -> None:
        """Slurm's view of these jobs in one ``squeue`` call (``sacct`` for those it no longer lists)."""
        if not ids:
            return
        seen = _parse(slurm_command(["squeue", "-h", "-j", ",".join(ids), "-o", "%i %T %M %N"], check=False))
        gone = [i for i in ids if i not in seen]
        if gone:
            fields = "JobID,State,Elapsed,NodeList"
            seen.update(_parse(slurm_command(
                ["sacct", "-n", "-X", "-P", "--delimiter= ", "-j", ",".join(gone), "-o", fields], check=False,
            )))  # fmt: skip
        for job_id in ids:
            rec = self._jobs[job_id]
            slurm_state, elapsed_s, node = seen.get(job_id, (None, 0.0, ""))
            rec.node, rec.elapsed_s = node or rec.node, max(rec.elapsed_s, elapsed_s)
            if slurm_state in _WAITING:
                rec.slurm_state = slurm_state
                continue
            code = _read_exit(Path(rec.exit_file))
            if slurm_state in _RUNNING and code is None:
                if rec.state is not JobState.RUNNING:
                    rec.state, rec.slurm_state = JobState.RUNNING, slurm_state
                    self._save(rec)
                continue
            self._finish(rec, slurm_state or rec.slurm_state, code)

    def _finish(self, rec: _BatchJob, slurm_state: str, code: int | None) -> None:
        rec.slurm_state, rec.exit_code = slurm_state, code
        if rec.stop == _CANCELLED:
            rec.state, rec.reason = JobState.CANCELLED, _CANCELLED
        elif slurm_state in _LOST:
            rec.state, rec.lost = JobState.FAILED, True
            rec.reason = f"ended with its node (Slurm state {slurm_state}); log: {rec.log_path}"
        elif rec.stop == _WALLTIME or slurm_state == "TIMEOUT":
            rec.state = JobState.FAILED
            rec.reason = f"walltime of {rec.walltime_min:.4g} min exceeded; log: {rec.log_path}"
        elif code == 0:
            rec.state, rec.reason = JobState.DONE, None
        elif code is None:
            rec.state = JobState.FAILED
            rec.reason = f"ended without an exit code (Slurm state {slurm_state}); log: {rec.log_path}"
        else:
            rec.state, rec.reason = JobState.FAILED, f"exit code {code}; log: {rec.log_path}"
        self._save(rec)

    def _save(self, rec: _BatchJob) -> None:
        # Not fsynced, like the local backend's records: Slurm's own state outlives them.
        atomic_write_text(self._record_path(rec.id), json.dumps({**asdict(rec), "state": rec.state.value}),
                          durable=False)  # fmt: skip

    def _record_path(self, job_id: str) -> Path:
        return self.state_dir / f"{job_id}.json"


def _sbatch_options(spec: CampaignSpec) -> list[str]:
    s = spec.resources.slurm
    options = [f"--partition={s.partition}"] if s.partition else []
    options += [f"--account={s.account}"] if s.account else []
    return [*options, *s.sbatch_args]


def _parse(listing: str) -> dict[str, tuple[str, float, str]]:
    """``ID STATE ELAPSED [NODES]`` lines -> {id: (state, elapsed seconds, nodes)}; "CANCELLED by 123" is CANCELLED."""
    seen = {}
    for line in listing.splitlines():
        fields = line.split()
        if fields[2:3] == ["by"]:
            del fields[2:4]
        if len(fields) >= 3:
            nodes = fields[3] if len(fields) > 3 and fields[3] not in ("(null)", "None") else ""
            seen[fields[0]] = (fields[1], slurm_duration_s(fields[2]), nodes)
    return seen


def slurm_duration_s(text: str) -> float:
    """Seconds in Slurm's ``[days-][hours:]minutes:seconds`` (``INVALID`` or anything else unreadable: 0)."""
    days, _, clock = text.rpartition("-")
    try:
        parts = [int(part) for part in clock.split(":")]
        whole_days = int(days) if days else 0
    except ValueError:
        return 0.0
    if not 1 <= len(parts) <= 3:
        return 0.0
    seconds = 0
    for part in parts:
        seconds = 60 * seconds + part
    return float(86400 * whole_days + seconds)


def _gpus_in(gres: str) -> int:
    """GPUs in sinfo's ``%G`` (``gpu:4``, ``gpu:a100:4(S:0-1)``, ``(null)``)."""
    total = 0
    for entry in gres.split(","):
        if entry.startswith("gpu"):
            total += int(entry.split("(")[0].split(":")[-1])
    return total


def _read_exit(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
