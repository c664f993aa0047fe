"""The Slurm backend: inside an allocation, each job is a job step (``srun --exact``) on a node of it.

The allocation is read once (``scontrol show job -d``): its nodes, cores and GPUs
per node. Jobs are packed onto those nodes by the same machinery as the local
backend (first fit, node by node, ``hosts`` honoured), so the coordinator never
hands Slurm a step that does not fit: such a step would block inside ``srun``,
invisible to ``squeue``. Each step is started as
``srun --jobid=J --exact -N1 --nodelist=NODE -n T -c C [--gpus-per-task=G] --time=...``
in its own session through the exit-code runner, so it outlives a coordinator
crash, is re-attached by its record, and leaves its exit code in a file (the
test cluster, like many, runs without accounting, so ``sacct`` cannot be asked).
Slurm sets ``CUDA_VISIBLE_DEVICES`` per step. The walltime is enforced as by the
local backend (SIGTERM at the walltime, SIGKILL after the grace), with the step's
own ``--time`` (walltime plus grace) behind it. Steps are counted against the
cluster's ``MaxStepCount``: a warning at 90 %, a refusal at the limit.

Outside an allocation (no ``SLURM_JOB_ID``, no ``resources.slurm.job_id``) the
spec's ``slurm`` backend is :class:`~mummi.adapters.slurm_batch.SlurmBatchBackend`:
one ``sbatch`` job per job.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from mummi.adapters.backend import Backend, BackendError, JobSpec, JobStatus
from mummi.adapters.local import LocalBackend, Node, _LocalJob
from mummi.core.layout import CampaignLayout
from mummi.core.spec import CampaignSpec

log = logging.getLogger(__name__)


def slurm_command(
    argv: Sequence[str], *, check: bool = True, cwd: str | None = None, env: dict[str, str] | None = None
) -> str:
    """The output of a Slurm command; :class:`BackendError` with its message when it fails (unless not ``check``)."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=60, cwd=cwd, env=env)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise BackendError(f"{argv[0]} failed: {err}") from err
    if done.returncode != 0 and not check:
        log.debug("%s: %s", " ".join(argv), done.stderr.strip())
    elif done.returncode != 0:
        raise BackendError(f"{' '.join(argv)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _job_fields(job_id: str) -> dict[str, str]:
    """``scontrol show job -d -o``: one line of KEY=VALUE (values with spaces are not used here)."""
    line = slurm_command(["scontrol", "show", "job", "-d", "-o", job_id])
    return dict(tok.split("=", 1) for tok in line.split() if "=" in tok)


def allocation_nodes(job_id: str) -> list[Node]:
    """The nodes of allocation ``job_id`` with their cores and GPUs (assumed alike across nodes)."""
    fields = _job_fields(job_id)
    if fields.get("JobState") not in (None, "RUNNING"):
        raise BackendError(f"Slurm job {job_id} is {fields.get('JobState')}, not a running allocation")
    names = slurm_command(["scontrol", "show", "hostnames", fields["NodeList"]]).split()
    cores = int(fields["NumCPUs"]) // len(names)
    gpus = 0
    for entry in fields.get("JOB_GRES", "").split(","):
        if entry.startswith("gpu"):
            gpus = int(re.sub(r"\(.*\)", "", entry).split(":")[-1]) // len(names)
    return [Node(name, cores, gpus) for name in names]


def parse_time_left(text: str) -> float | None:
    """Seconds in squeue's ``%L`` ([days-][hours:]minutes:seconds); None for no limit."""
    text = text.strip()
    if not text or text.upper() in ("UNLIMITED", "NOT_SET", "INVALID"):
        return None
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    return ((int(days or 0) * 24 + parts[0]) * 60 + parts[1]) * 60.0 + parts[2]


class SlurmBackend(LocalBackend):
    """Job steps in the Slurm allocation ``job_id``."""

    label = "slurm"
    poll_interval_s = 0.5

    @classmethod
    def from_spec(cls, spec: CampaignSpec, layout: CampaignLayout) -> Backend:
        job_id = _job_id(spec)
        if job_id is None:
            from mummi.adapters.slurm_batch import SlurmBatchBackend

            return SlurmBatchBackend.from_spec(spec, layout)
        s = spec.resources.slurm
        return cls(layout.logs / "slurm-backend", job_id, srun_args=s.srun_args, mem_per_cpu_mb=s.mem_per_cpu_mb)

    @classmethod
    def preflight(cls, spec: CampaignSpec) -> None:
        job_id = _job_id(spec)
        if job_id is None:
            from mummi.adapters.slurm_batch import SlurmBatchBackend

            SlurmBatchBackend.preflight(spec)
            return
        if shutil.which("srun") is None:
            raise BackendError("resources.backend 'slurm': srun is not on PATH; run on a Slurm cluster's node")
        nodes = allocation_nodes(job_id)
        if spec.campaign.chain and _job_fields(job_id).get("BatchFlag") != "1":
            raise BackendError(
                f"campaign.chain: allocation {job_id} is not a batch job, so there is no script to submit again; "
                "run mummi-run from an sbatch script (README, 'Slurm'), or set campaign.chain: 0"
            )
        for stage in ("macro", "createsim", "sim", "analysis"):
            res = getattr(spec, stage).resources
            cores, gpus = res.tasks * res.cores_per_task, res.tasks * res.gpus_per_task
            if cores > nodes[0].cores or gpus > nodes[0].gpus:
                raise BackendError(
                    f"{stage}.resources: {cores} cores and {gpus} GPUs do not fit a node of allocation {job_id} "
                    f"({nodes[0].cores} cores, {nodes[0].gpus} GPUs); lower them or allocate larger nodes"
                )

    def __init__(
        self,
        state_dir: str | Path,
        job_id: str,
        *,
        srun_args: Sequence[str] = (),
        mem_per_cpu_mb: int | None = None,
        kill_grace_s: float = 30.0,
    ) -> None:
        super().__init__(state_dir, cores=0, gpus=0, kill_grace_s=kill_grace_s)
        self.job_id = job_id
        self.srun_args = list(srun_args)
        self.mem_per_cpu_mb = mem_per_cpu_mb
        self.nodes = []  # read from the allocation at the first submit (constructors do no I/O)
        self._max_steps: int | None = None
        self._end: tuple[float, float | None] | None = None

    def submit(self, jobs: Sequence[JobSpec]) -> list[str]:
        if not self.nodes:
            self.nodes = allocation_nodes(self.job_id)
            log.info("Slurm allocation %s: %s", self.job_id,
                     ", ".join(f"{n.name} ({n.cores} cores, {n.gpus} GPUs)" for n in self.nodes))  # fmt: skip
        self._count_steps(len(jobs))
        return super().submit(jobs)

    def reattach(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        if not self.nodes:
            self.nodes = allocation_nodes(self.job_id)
        return super().reattach(ids)

    def time_left_s(self) -> float | None:
        """From squeue's time left of the allocation, read again at most once a minute."""
        now = time.monotonic()
        if self._end is None or now - self._end[0] > 60:
            left = parse_time_left(slurm_command(["squeue", "-h", "-j", self.job_id, "-o", "%L"]))
            self._end = (now, None if left is None else now + left)
        end = self._end[1]
        return None if end is None else max(0.0, end - now)

    def _argv(self, rec: _LocalJob) -> list[str]:
        gpus_per_task = rec.gpus_needed // rec.tasks
        minutes, seconds = divmod(math.ceil((rec.walltime_s or 0) + self.kill_grace_s), 60)
        argv = [
            "srun", f"--jobid={self.job_id}", "--exact", "-N1", f"--nodelist={rec.node}",
            f"--ntasks={rec.tasks}", f"--cpus-per-task={rec.cores_needed // rec.tasks}",
            f"--time={minutes}:{seconds:02d}", f"--job-name={rec.id}",
        ]  # fmt: skip
        # A step that names no GRES is given all of the allocation's, which serialises every step.
        argv.append(f"--gpus-per-task={gpus_per_task}" if gpus_per_task else "--gres=none")
        if self.mem_per_cpu_mb is not None:
            argv.append(f"--mem-per-cpu={self.mem_per_cpu_mb}")
        return [*argv, *self.srun_args, "--", *rec.command]

    def chain(self) -> str:
        """``sbatch --dependency=afterany:J`` of this allocation's batch script, with its size and time limit."""
        fields = _job_fields(self.job_id)
        if fields.get("BatchFlag") != "1":
            raise BackendError(f"allocation {self.job_id} is not a batch job: nothing to submit again")
        options = [f"--dependency=afterany:{self.job_id}", f"--nodes={fields['NumNodes']}",
                   f"--time={fields['TimeLimit']}", f"--job-name={fields['JobName']}"]  # fmt: skip
        for key, option in (("Partition", "--partition"), ("Account", "--account")):
            if fields.get(key) not in (None, "(null)"):
                options.append(f"{option}={fields[key]}")
        gres = fields.get("TresPerNode", "")
        if gres.startswith("gres:"):
            options.append(f"--gres={gres.removeprefix('gres:')}")
        if fields.get("OverSubscribe") == "NO":
            options.append("--exclusive")
        out = slurm_command(["sbatch", "--parsable", *options, fields["Command"]], cwd=fields.get("WorkDir"))
        return out.strip().split(";")[0]

    def _stop(self, recs: Sequence[_LocalJob]) -> None:
        """SIGTERM to the steps' tasks (``scancel --signal``): srun itself, signalled, would kill the step.

        A step still being created is not signalled; it is killed after the grace like a stubborn one.
        """
        steps = self._steps_of(recs)
        if steps:
            slurm_command(["scancel", "--signal=TERM", *steps], check=False)  # a step may have just ended

    def _kill(self, recs: Sequence[_LocalJob]) -> None:
        steps = self._steps_of(recs)
        if steps:
            slurm_command(["scancel", *steps], check=False)
        super()._kill(recs)

    def _steps_of(self, recs: Sequence[_LocalJob]) -> list[str]:
        """The step ids (``J.S``) of these jobs that Slurm runs now, in one ``squeue`` call."""
        listing = slurm_command(["squeue", "--steps", "-h", "-j", self.job_id, "-o", "%i %j"])
        steps = {}
        for line in listing.splitlines():
            step, _, name = line.partition(" ")
            steps[name.strip()] = step
        return [steps[rec.id] for rec in recs if rec.id in steps]

    def _env(self, rec: _LocalJob) -> dict[str, str]:
        return {"OMP_NUM_THREADS": str(rec.cores_needed // rec.tasks)}

    def _count_steps(self, new: int) -> None:
        if self._max_steps is None:
            match = re.search(r"MaxStepCount\s*=\s*(\d+)", slurm_command(["scontrol", "show", "config"]))
            self._max_steps = int(match.group(1)) if match else 40000
        launched = len(list(self.state_dir.glob(f"{self.label}-*.json")))
        if launched + new > self._max_steps:
            raise BackendError(
                f"allocation {self.job_id} would exceed the cluster's MaxStepCount ({self._max_steps}) with "
                f"{launched + new} steps; end this allocation (mummi-run resumes in the next) or ask for Flux "
                "inside the allocation (README)"
            )
        if launched + new > 0.9 * self._max_steps:
            log.warning("%d of the cluster's MaxStepCount of %d job steps used in allocation %s",
                        launched + new, self._max_steps, self.job_id)  # fmt: skip


def _job_id(spec: CampaignSpec) -> str | None:
    """The allocation ``mummi-run`` runs in, if any."""
    return spec.resources.slurm.job_id or os.environ.get("SLURM_JOB_ID") or None
