"""The Flux backend: jobs as Flux jobs in the enclosing (or a named) Flux instance.

Through the flux-python bindings of flux-core 0.88:

* each job becomes a ``JobspecV1`` (tasks, cores and GPUs per task, nodes,
  duration, environment, working directory, output appended to its log);
* a batch is submitted with ``submit_async`` and its futures collected once;
* every job is tracked through one job-manager journal stream
  (``JournalConsumer``), drained without blocking at each poll: never a watch or
  an RPC per job per poll; exit codes come from the ``finish`` event;
* the walltime is Flux's: the duration is the walltime plus ``kill_grace_s`` (at
  most what is left of the instance: Flux refuses longer jobs), and the job shell
  sends SIGTERM ``kill_grace_s`` before it ends (a sim checkpoints and exits 75);
  past the duration Flux kills the job;
* after a coordinator restart, :meth:`FluxBackend.reattach` starts the journal
  first, then reads a ``JobList`` snapshot of the given ids, so no event is lost
  between the two;
* GPUs: the job shell's ``gpu-affinity`` sets ``CUDA_VISIBLE_DEVICES`` per job.

The bindings are found on ``sys.path``, else beside the ``flux`` executable on
``PATH`` (``PREFIX/lib/pythonX.Y/site-packages``), so ``mummi-run`` needs no
``flux python`` wrapper.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from mummi.adapters.backend import Backend, BackendError, JobSpec, JobStatus
from mummi.core.layout import CampaignLayout
from mummi.core.spec import CampaignSpec
from mummi.core.states import JobState

log = logging.getLogger(__name__)

_WALLTIME = "walltime"


def import_flux() -> ModuleType:
    """The ``flux`` package: importable already, or the one installed beside the ``flux`` executable."""
    try:
        import flux
    except ImportError:
        executable = shutil.which("flux")
        if executable is None:
            raise BackendError(
                "resources.backend 'flux': no flux executable on PATH and no flux Python bindings; install "
                "flux-core (README, 'Flux') and put its bin/ on PATH, or choose another resources.backend"
            ) from None
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        site = Path(executable).resolve().parent.parent / "lib" / version / "site-packages"
        if not (site / "flux").is_dir():
            raise BackendError(
                f"resources.backend 'flux': the flux install at {site.parent.parent.parent} has no Python bindings "
                f"for {version} ({site}); build flux-core for this Python or pip install flux-python"
            ) from None
        sys.path.append(str(site))
        import flux
    import flux.hostlist  # noqa: F401 (submodules the backend uses)
    import flux.job

    return flux


@dataclass
class _Tracked:
    """What the journal has told of one job."""

    walltime_s: float | None = None
    state: JobState = JobState.SUBMITTED
    walltime_at: float | None = None
    """Epoch seconds when the job shell sends SIGTERM: its allocation's expiration less the grace."""
    exit_code: int | None = None
    exception: tuple[str, str] | None = None
    """(type, note) of the first fatal exception."""
    nodes: list[str] = field(default_factory=list)


class FluxBackend(Backend):
    """Jobs in a Flux instance (``uri``, default: the enclosing one, ``FLUX_URI``)."""

    label = "flux"
    poll_interval_s = 0.5

    @classmethod
    def from_spec(cls, spec: CampaignSpec, layout: CampaignLayout) -> FluxBackend:
        return cls(spec.resources.flux.uri)

    @classmethod
    def preflight(cls, spec: CampaignSpec) -> None:
        flux = import_flux()
        uri = spec.resources.flux.uri or os.environ.get("FLUX_URI")
        try:
            handle = flux.Flux(uri) if uri else flux.Flux()
        except OSError as err:
            where = f"at {uri}" if uri else "(FLUX_URI is not set: not inside a Flux instance)"
            raise BackendError(
                f"resources.backend 'flux': no Flux instance reachable {where}: {err}; run mummi-run inside "
                "`flux alloc`/`flux batch`, or set resources.flux.uri"
            ) from err
        if spec.campaign.chain:
            _parent_of(flux, handle)

    def __init__(self, uri: str | None = None, kill_grace_s: float = 30.0) -> None:
        self.uri = uri
        self.kill_grace_s = kill_grace_s
        self._flux: ModuleType | None = None
        self._handle: Any = None
        self._journal: Any = None
        self._jobs: dict[int, _Tracked] = {}

    # -------------------------------------------------------------- verbs
    def submit(self, jobs: Sequence[JobSpec]) -> list[str]:
        flux, handle = self._connect()
        self._start_journal(since=None)
        left = self.time_left_s()
        futures = [flux.job.submit_async(handle, self._jobspec(job, left)) for job in jobs]
        ids = []
        for job, future in zip(jobs, futures):
            try:
                job_id = int(future.get_id())
            except OSError as err:
                if not job.hosts:
                    raise BackendError(f"flux refused job {job.name}: {err}") from err
                # Hosts this instance does not know (R and broker names disagree): run it anywhere.
                log.warning("flux refused %s on %s (%s); submitting it without the placement", job.name,
                            ",".join(job.hosts), err)  # fmt: skip
                unpinned = dataclasses.replace(job, hosts=())
                job_id = int(flux.job.submit_async(handle, self._jobspec(unpinned, left)).get_id())
            self._jobs.setdefault(job_id, _Tracked()).walltime_s = 60.0 * job.resources.walltime_min
            ids.append(str(job_id))
        return ids

    def status(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        self._drain()
        return {job_id: self._status_of(job_id) for job_id in ids}

    def cancel(self, ids: Sequence[str]) -> None:
        flux, handle = self._connect()
        futures = []
        for job_id in ids:
            tracked = self._jobs.get(int(job_id))
            if tracked is None or not tracked.state.terminal:
                futures.append(flux.job.cancel_async(handle, int(job_id), "cancelled by the coordinator"))
        for future in futures:
            try:
                future.get()
            except OSError as err:  # already inactive: nothing to cancel
                log.debug("cancel: %s", err)

    def time_left_s(self) -> float | None:
        _, handle = self._connect()
        expiration = float(handle.rpc("resource.status").get()["R"]["execution"].get("expiration", 0))
        return None if expiration == 0 else max(0.0, expiration - time.time())

    def reattach(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        flux, handle = self._connect()
        self._start_journal(since=time.time())
        wanted = [int(i) for i in ids if int(i) not in self._jobs]
        if wanted:
            listing = flux.job.JobList(handle, ids=wanted, attrs=["all"])
            for info in listing.jobs():
                tracked = _snapshot(info, self.kill_grace_s)
                tracked.nodes = list(flux.hostlist.decode(info.nodelist)) if info.nodelist else []
                self._jobs[int(info.id)] = tracked
            for error in listing.errors:
                log.warning("flux: %s", error)
        return self.status(ids)

    def close(self) -> None:
        if self._journal is not None:
            self._journal.stop()
            self._journal = None

    def chain(self) -> str:
        """Submit this batch instance's own jobspec again to its parent, to start once this one ends (afterany)."""
        flux, handle = self._connect()
        parent, job_id = _parent_of(flux, handle)
        info = flux.job.job_kvs_lookup(parent, flux.job.JobID(job_id), keys=["jobspec"], original=True)
        jobspec = info["jobspec"]
        jobspec.setdefault("attributes", {}).setdefault("system", {})["dependencies"] = [
            {"scheme": "afterany", "value": str(job_id)}
        ]
        return str(int(flux.job.submit(parent, json.dumps(jobspec))))

    def node_of(self, job_id: str) -> list[str]:
        """The hosts of a job (its ``alloc`` event, as of the last :meth:`status`); empty before."""
        tracked = self._jobs.get(int(job_id))
        return list(tracked.nodes) if tracked else []

    # ------------------------------------------------------------ helpers
    def _connect(self) -> tuple[ModuleType, Any]:
        if self._handle is None:
            self._flux = import_flux()
            try:
                self._handle = self._flux.Flux(self.uri) if self.uri else self._flux.Flux()
            except OSError as err:
                raise BackendError(f"cannot reach the Flux instance {self.uri or '(FLUX_URI)'}: {err}") from err
        assert self._flux is not None
        return self._flux, self._handle

    def _start_journal(self, since: float | None) -> None:
        if self._journal is not None:
            return
        flux, handle = self._connect()
        options = {"since": since} if since is not None else {}
        self._journal = flux.job.JournalConsumer(handle, **options).start()

    def _jobspec(self, job: JobSpec, time_left_s: float | None) -> Any:
        """The job's jobspec; its duration ends with the instance at the latest (Flux refuses a longer one)."""
        flux, _ = self._connect()
        res = job.resources
        duration = 60.0 * res.walltime_min + self.kill_grace_s
        if time_left_s is not None:
            duration = min(duration, max(1.0, time_left_s - 1.0))
        job.workdir.mkdir(parents=True, exist_ok=True)
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        spec = flux.job.JobspecV1.from_command(
            list(job.command),
            num_tasks=res.tasks,
            cores_per_task=res.cores_per_task,
            gpus_per_task=res.gpus_per_task or None,
            num_nodes=res.nodes if res.nodes > 1 else None,
            duration=duration,
            environment={**os.environ, **job.env},
            cwd=str(job.workdir),
            output=str(job.log_path),
        )
        spec.setattr("system.job.name", job.name)
        if job.hosts:
            spec.setattr("system.constraints", {"hostlist": list(job.hosts)})
        spec.setattr_shell_option("output.mode", "append")
        spec.setattr_shell_option("signal", {"signum": 15, "timeleft": self.kill_grace_s})
        return spec.dumps()

    def _drain(self) -> None:
        """Apply every journal event that has arrived (poll(0) never reads the socket: a tiny timeout does)."""
        if self._journal is None:
            return
        while True:
            try:
                event = self._journal.poll(0.01)
            except TimeoutError:
                return
            if event is None:
                return
            self._apply(event)

    def _apply(self, event: Any) -> None:
        tracked = self._jobs.setdefault(int(event.jobid), _Tracked())
        if tracked.state.terminal:
            return
        name, context = event.name, event.context or {}
        if name == "alloc" and getattr(event, "R", None):
            execution = event.R.get("execution", {})
            tracked.nodes = list(execution.get("nodelist", []))
            if execution.get("expiration"):
                tracked.walltime_at = float(execution["expiration"]) - self.kill_grace_s
        elif name == "start":
            tracked.state = JobState.RUNNING
        elif name == "exception" and context.get("severity", 0) == 0 and tracked.exception is None:
            tracked.exception = (str(context.get("type")), str(context.get("note", "")))
        elif name == "finish":
            tracked.exit_code = _exit_code(int(context.get("status", 0)))
            stopped_at_walltime = tracked.walltime_at is not None and event.timestamp >= tracked.walltime_at
            if stopped_at_walltime and tracked.exit_code != 0 and tracked.exception is None:
                tracked.exception = (_WALLTIME, "stopped at its walltime")
        elif name == "clean":
            tracked.state = _final_state(tracked)

    def _status_of(self, job_id: str) -> JobStatus:
        tracked = self._jobs.get(int(job_id))
        if tracked is None:
            return JobStatus.forgotten("flux")
        if not tracked.state.terminal:
            return JobStatus(tracked.state)
        return JobStatus(tracked.state, tracked.exit_code, _reason(tracked), lost=_node_lost(tracked))


def _parent_of(flux: ModuleType, handle: Any) -> tuple[Any, str]:
    """A handle on the instance that runs this one as a job, and this instance's job id there."""
    try:
        return flux.Flux(handle.attr_get("parent-uri")), handle.attr_get("jobid")
    except OSError as err:
        raise BackendError(
            "campaign.chain: this Flux instance is not a job of another (no parent-uri), so there is nothing to "
            "submit again; run mummi-run in `flux batch`, or set campaign.chain: 0"
        ) from err


def _exit_code(status: int) -> int:
    """A wait status as a shell reports it: a signalled job shell as 128 + signal."""
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _final_state(tracked: _Tracked) -> JobState:
    kind = tracked.exception[0] if tracked.exception else None
    if kind == "cancel":
        return JobState.CANCELLED
    if kind is None and tracked.exit_code == 0:
        return JobState.DONE
    return JobState.FAILED


def _node_lost(tracked: _Tracked) -> bool:
    """Whether the job ended with a node (a broker) that went away: Flux notes "node failure on HOST (rank N)"."""
    kind, note = tracked.exception or ("", "")
    return tracked.state is JobState.FAILED and (kind == "node-failure" or "node failure" in note)


def _reason(tracked: _Tracked) -> str | None:
    if tracked.state is JobState.DONE:
        return None
    kind, note = tracked.exception or ("", "")
    if kind in ("timeout", _WALLTIME):
        return f"walltime of {(tracked.walltime_s or 0) / 60:.4g} min exceeded"
    if kind == "cancel":
        return "cancelled"
    if kind:
        return f"flux exception {kind}: {note}"
    return f"exit code {tracked.exit_code}"


def _snapshot(info: Any, kill_grace_s: float) -> _Tracked:
    """A job as ``JobList`` describes it (after a coordinator restart)."""
    tracked = _Tracked()
    duration = float(getattr(info, "duration", 0) or 0)
    tracked.walltime_s = duration - kill_grace_s if duration > 0 else None
    expiration = float(getattr(info, "expiration", 0) or 0)
    tracked.walltime_at = expiration - kill_grace_s if expiration > 0 else None
    if info.state == "INACTIVE":
        tracked.exit_code = int(info.returncode) if info.returncode != "" else None
        if tracked.exit_code is not None and tracked.exit_code < 0:
            tracked.exit_code = 128 - tracked.exit_code
        if info.exception.occurred:
            tracked.exception = (str(info.exception.type), str(info.exception.note))
        tracked.state = _final_state(tracked)
    elif info.state in ("RUN", "CLEANUP"):
        tracked.state = JobState.RUNNING
    return tracked


@contextlib.contextmanager
def local_instance(nodes: int = 4, cores_per_node: int = 2, gpus_per_node: int = 2) -> Iterator[str]:
    """A Flux instance of ``nodes`` brokers on this machine (hosts ``node[0-N]``, fake GPUs); yields its URI.

    For tests and benchmarks: ``flux start --test-size`` with a resource config.
    """
    flux = shutil.which("flux")
    if flux is None:
        raise BackendError("no flux executable on PATH (flux-core: README, 'Flux')")
    rundir = Path(tempfile.mkdtemp(prefix="flux-"))  # short: the broker's socket path is limited
    conf = rundir / "resource.toml"
    conf.write_text(
        "[resource]\nnoverify = true\n[[resource.config]]\n"
        f'hosts = "node[0-{nodes - 1}]"\ncores = "0-{cores_per_node - 1}"\n'
        + (f'gpus = "0-{gpus_per_node - 1}"\n' if gpus_per_node else "")
    )
    broker = subprocess.Popen(
        [flux, "start", f"--test-size={nodes}", f"--test-hosts=node[0-{nodes - 1}]", f"--test-rundir={rundir}",
         f"--conf={conf}", "-Sbroker.rc2_none=1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    uri = f"local://{rundir}/local-0"
    env = {**os.environ, "FLUX_URI": uri}
    try:
        deadline = time.monotonic() + 60
        while b" run " not in subprocess.run([flux, "uptime"], env=env, capture_output=True).stdout:
            if broker.poll() is not None or time.monotonic() > deadline:
                raise BackendError(f"the local Flux instance did not start (exit {broker.poll()})")
            time.sleep(0.2)
        yield uri
    finally:
        try:
            subprocess.run([flux, "shutdown", "--quiet"], env=env, capture_output=True, timeout=60)
            broker.wait(timeout=60)
        except subprocess.TimeoutExpired:  # a job that will not die holds the shutdown: end the instance's brokers
            with contextlib.suppress(ProcessLookupError):
                os.killpg(broker.pid, signal.SIGKILL)
            broker.wait(timeout=60)
        shutil.rmtree(rundir, ignore_errors=True)
