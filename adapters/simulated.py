"""The simulated backend: jobs that run no process, on a virtual clock, over many nodes.

It replays a machine the size of Sierra on a laptop: the coordinator, sampler,
store and feedback run for real; only the jobs are models. A job "runs" for a
duration drawn from ``resources.simulated`` (createsim about 90 minutes; a sim
its ``sim.length_ns`` at the engine's speed, continued across walltimes from its
checkpoint; an analysis until just after its sim; the macro model and the
training), on a node with free cores and GPUs (first fit among the nodes with
room, ``hosts`` honoured), so packing and fragmentation are real. A job not pinned
to a node leaves on it the cores each of its free GPUs needs for a sim and its
in situ analysis, as MuMMI laid out its nodes: setups never strand a GPU. Jobs may exit
non-zero part-way (``fail_rate``), hang until their walltime (``hang_rate``:
SIGTERM, then the kill after ``kill_grace_s``), or vanish with their node
(``node_mtbf_h``, reported ``lost``; a sim keeps the work up to its last
checkpoint; the node is back ``node_repair_min`` later). A job of the
micro scale leaves the status record the real one would (``done``; ``incomplete``
with exit 75 for a sim stopped at its walltime or cancelled), and an analysis
that follows its sim to the end leaves RDF counts drawn from the replay's hidden
truth (:mod:`mummi.analysis.synthetic_rdf`), so the coordinator's code path,
feedback included, is the real one.

Time is the backend's: :meth:`now` is virtual, and :meth:`wait` advances it to
the next event (a job ending, a node lost), at most ``tick_s`` ahead and at least
``poll_s`` (the poll interval a real coordinator would have), instead of
sleeping. The allocation lasts ``allocation_min`` of virtual time. Everything
random comes from one generator seeded with the campaign's seed, and events at
the same instant are handled in the order they were made: the same spec gives
the same history. The backend's world (clock, generator, sims' remaining work,
nodes down, jobs still active) is saved in its state folder when it closes, so
the next ``mummi-run`` (the next allocation) continues it. Every submission, start, end
and node event is appended to ``history.csv`` in that folder (virtual time, event,
job, kind, subject (its folder's name), node, state, exit code, reason): the replay's record, byte for byte
the same for the same spec.
"""

from __future__ import annotations

import csv
import heapq
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mummi.adapters.backend import Backend, BackendError, JobSpec, JobStatus
from mummi.analysis.rdf import bin_edges
from mummi.analysis.synthetic_rdf import HiddenProfiles
from mummi.core import simdir
from mummi.core.atomic import atomic_write_text
from mummi.core.exit_codes import EXIT_RESUMABLE
from mummi.core.layout import CampaignLayout
from mummi.core.spec import AnalysisSettings, CampaignSpec, DurationModel, SimSettings, SimulatedSettings
from mummi.core.states import SIM_STAGES, JobKind, JobState, Outcome

#: A stopped sim writes its checkpoint and exits within this long of SIGTERM.
_CHECKPOINT_S = 10.0
_STATE_FILE = "simulated.json"
HISTORY_FILE = "history.csv"
HISTORY_COLUMNS = ("time_s", "event", "job", "kind", "subject", "node", "state", "exit_code", "reason")


@dataclass
class _Job:
    id: str
    kind: str
    key: str
    """The job's working folder: a sim and its analysis share it."""
    cores: int
    gpus: int
    walltime_s: float
    hosts: list[str]
    state: JobState = JobState.SUBMITTED
    node: int | None = None
    started_at: float | None = None
    work_s: float = 0.0
    """How long it runs if nothing stops it (inf: it hangs)."""
    fails: bool = False
    stopping: str | None = None
    """Why it was asked to stop (walltime, cancelled)."""
    version: int = 0
    """Events made for an earlier version of the job are stale."""
    exit_code: int | None = None
    reason: str | None = None
    lost: bool = False


@dataclass
class _World:
    """What persists from one allocation (one ``mummi-run``) to the next."""

    now: float = 0.0
    counter: int = 0
    rng: dict[str, Any] = field(default_factory=dict)
    remaining_s: dict[str, float] = field(default_factory=dict)
    """Sims' work left after a stop, by working folder."""
    down_until: dict[str, float] = field(default_factory=dict)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    allocations: int = 0


class SimulatedBackend(Backend):
    """Jobs as events on a virtual clock over ``nodes`` nodes of ``cores`` cores and ``gpus`` GPUs."""

    label = "simulated"
    poll_interval_s = 0.0
    jobs_write_files = False

    @classmethod
    def from_spec(cls, spec: CampaignSpec, layout: CampaignLayout) -> SimulatedBackend:
        r = spec.resources
        sim, analysis = spec.sim.resources, spec.analysis.resources
        per_gpu = (sim.tasks * sim.cores_per_task + analysis.tasks * analysis.cores_per_task) // max(
            1, sim.tasks * sim.gpus_per_task
        )
        return cls(layout.logs / "simulated-backend", nodes=r.nodes, cores=r.cores_per_node, gpus=r.gpus_per_node,
                   settings=r.simulated, seed=spec.campaign.seed, sim=spec.sim, cores_per_gpu=per_gpu,
                   rdf_edges=bin_edges(spec.analysis.bin_nm, spec.analysis.r_max_nm))  # fmt: skip

    def __init__(self, state_dir: str | Path, *, nodes: int, cores: int, gpus: int, settings: SimulatedSettings,
                 seed: int = 0, sim: SimSettings | None = None, cores_per_gpu: int = 0,
                 rdf_edges: np.ndarray | None = None) -> None:  # fmt: skip
        self.state_dir = Path(state_dir)
        self.truth = HiddenProfiles(seed)
        analysis = AnalysisSettings()
        self.rdf_edges = bin_edges(analysis.bin_nm, analysis.r_max_nm) if rdf_edges is None else rdf_edges
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.settings, self.sim = settings, sim or SimSettings()
        self.names = [f"node{i:05d}" for i in range(nodes)]
        self._index = {name: i for i, name in enumerate(self.names)}
        self.cores, self.gpus, self.cores_per_gpu = cores, gpus, cores_per_gpu
        self._free_cores = [cores] * nodes
        self._free_gpus = [gpus] * nodes
        # Nodes with room for an unpinned CPU job / GPU job: placement looks only at these.
        self._cpu_room: set[int] = set()
        self._gpu_room: set[int] = set()
        self._full: set[tuple[int, int]] = set()
        """Job shapes (cores, GPUs) no node could take since resources were last freed."""
        self._jobs: dict[str, _Job] = {}
        self._changed: set[str] = set()
        self._queues: dict[tuple[int, int] | None, dict[str, None]] = {}
        """Jobs waiting for room, in submission order: by shape (cores, GPUs), pinned jobs under None."""
        self._events: list[tuple[float, int, str, str, int]] = []  # (time, seq, what, job id or node, version)
        self._seq = 0
        self._analysis_of: dict[str, str] = {}
        self._sim_of: dict[str, str] = {}
        self._world = self._load_world()
        for node in range(nodes):
            self._update(node)
        self._rng = np.random.default_rng(seed)
        if self._world.rng:
            self._rng.bit_generator.state = self._world.rng
        self._world.allocations += 1
        self._alloc_end = None if settings.allocation_min is None else self._world.now + 60 * settings.allocation_min
        for name, until in self._world.down_until.items():
            if until > self._world.now:
                self._take_down(self._index[name])
                self._push(until, "node_back", name, 0)
        for record in self._world.jobs:
            job = _Job(**{**record, "state": JobState(record["state"])})
            self._jobs[job.id] = job
            self._adopt(job)
        if settings.node_mtbf_h is not None:
            self._push(self._world.now + self._next_loss_in(), "node_loss", "", 0)
        history = self.state_dir / HISTORY_FILE
        self._history = open(history, "a", encoding="utf-8", newline="")  # kept open for the backend's life
        self._history_rows = csv.writer(self._history)
        if history.stat().st_size == 0:
            self._history_rows.writerow(HISTORY_COLUMNS)

    # -------------------------------------------------------------- verbs
    def submit(self, jobs: Sequence[JobSpec]) -> list[str]:
        ids = []
        for spec in jobs:
            res = spec.resources
            cores, gpus = res.tasks * res.cores_per_task, res.tasks * res.gpus_per_task
            if res.nodes != 1 or cores > self.cores or gpus > self.gpus:
                raise BackendError(f"job {spec.name} needs {res.nodes} node(s), {cores} cores and {gpus} GPUs; a "
                                   f"node has {self.cores} cores and {self.gpus} GPUs")  # fmt: skip
            self._world.counter += 1
            job = _Job(f"{self.label}-{self._world.counter:08d}", (spec.kind or JobKind.MACRO).value,
                       str(spec.workdir), cores, gpus, 60.0 * res.walltime_min, list(spec.hosts))  # fmt: skip
            self._jobs[job.id] = job
            self._queues.setdefault(None if job.hosts else (job.cores, job.gpus), {})[job.id] = None
            self._log("submit", job)
            ids.append(job.id)
        self._schedule()
        return ids

    def status(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        result = {}
        for job_id in ids:
            job = self._jobs.get(job_id)
            if job is None:
                result[job_id] = JobStatus.forgotten("simulated")
            else:
                result[job_id] = JobStatus(job.state, job.exit_code, job.reason, lost=job.lost)
        return result

    def cancel(self, ids: Sequence[str]) -> None:
        for job_id in ids:
            job = self._jobs.get(job_id)
            if job is None or job.state.terminal:
                continue
            if job.state is JobState.SUBMITTED:
                self._queues[None if job.hosts else (job.cores, job.gpus)].pop(job_id)
                self._end(job, JobState.CANCELLED, "cancelled before it started", None)
            elif job.stopping is None:
                job.stopping = "cancelled"
                self._stop(job)

    def time_left_s(self) -> float | None:
        return None if self._alloc_end is None else max(0.0, self._alloc_end - self._world.now)

    def now(self) -> float:
        return self._world.now

    def wait(self, seconds: float) -> None:
        """Advance the clock to the next event (at least ``poll_s``, at most ``tick_s`` ahead; never past the end)."""
        now, s = self._world.now, self.settings
        target = now + s.tick_s
        if self._events:
            target = min(target, self._events[0][0])
        target = max(target, now + s.poll_s)
        if self._alloc_end is not None:
            target = min(target, max(self._alloc_end, self._world.now))
        self._world.now = max(self._world.now, target)
        while self._events and self._events[0][0] <= self._world.now:
            _, _, what, subject, version = heapq.heappop(self._events)
            self._handle(what, subject, version)
        self._schedule()

    def node_of(self, job_id: str) -> list[str]:
        job = self._jobs.get(job_id)
        return [self.names[job.node]] if job is not None and job.node is not None else []

    def close(self) -> None:
        self._history.close()
        self._world.rng = dict(self._rng.bit_generator.state)
        self._world.jobs = [asdict(j) | {"state": j.state.value} for j in self._jobs.values() if not j.state.terminal]
        atomic_write_text(self.state_dir / _STATE_FILE, json.dumps(asdict(self._world)))

    # ----------------------------------------------------------- scheduling
    def _schedule(self) -> None:
        """Start every queued job that fits: first fit in submission order, shape by shape.

        Once a shape finds no node, its later jobs wait unseen until resources are freed.
        """
        for shape, queue in self._queues.items():
            if shape in self._full:
                continue
            for job_id in list(queue):
                job = self._jobs[job_id]
                node = self._place(job)
                if node is not None:
                    del queue[job_id]
                    self._start(job, node)
                elif shape is not None:
                    self._full.add(shape)
                    break

    def _place(self, job: _Job) -> int | None:
        if job.hosts:  # a GPU's companion: it may use the cores kept for the node's GPUs
            for node in (self._index[h] for h in job.hosts if h in self._index):
                if self._free_cores[node] >= job.cores and self._free_gpus[node] >= job.gpus:
                    return node
            return None
        for node in self._gpu_room if job.gpus else self._cpu_room:
            if self._free_gpus[node] >= job.gpus and self._spare(node) >= job.cores - job.gpus * self.cores_per_gpu:
                return node
        return None

    def _spare(self, node: int) -> int:
        """Free cores beyond those kept for the node's free GPUs (each a sim and its in situ analysis)."""
        return self._free_cores[node] - self._free_gpus[node] * self.cores_per_gpu

    def _update(self, node: int) -> None:
        """After a change on ``node``: its room for unpinned jobs; freed resources may fit any shape again."""
        spare, up = self._spare(node), self.names[node] not in self._world.down_until
        for room, has in ((self._cpu_room, up and spare > 0), (self._gpu_room, up and self._free_gpus[node] > 0
                                                                and spare >= 0)):  # fmt: skip
            if has:
                room.add(node)
            else:
                room.discard(node)

    def _freed(self, node: int) -> None:
        self._update(node)
        self._full.clear()

    def changed(self) -> set[str]:
        changed, self._changed = self._changed, set()
        return changed

    def _log(self, event: str, job: _Job | None = None, node: str = "") -> None:
        row: tuple[object, ...] = (f"{self._world.now:.3f}", event, "", "", "", node, "", "", "")
        if job is not None:
            node = self.names[job.node] if job.node is not None else ""
            subject = Path(job.key).name
            row = (row[0], event, job.id, job.kind, subject, node, job.state.value, job.exit_code, job.reason)
        self._history_rows.writerow(row)

    def _start(self, job: _Job, node: int) -> None:
        job.node, job.state, job.started_at = node, JobState.RUNNING, self._world.now
        self._changed.add(job.id)
        self._log("start", job)
        self._free_cores[node] -= job.cores
        self._free_gpus[node] -= job.gpus
        self._update(node)
        job.work_s, job.fails = self._draw_work(job)
        if job.kind == JobKind.ANALYSIS.value:
            self._analysis_of[job.key] = job.id
            if job.key in self._sim_of:
                return  # it ends just after its sim
        if job.kind == JobKind.SIM.value:
            self._sim_of[job.key] = job.id
        self._push_end(job)

    def _draw_work(self, job: _Job) -> tuple[float, bool]:
        s = self.settings
        u = self._rng.random()
        if u < s.hang_rate:
            return math.inf, False
        if job.kind == JobKind.SIM.value:
            work = self._world.remaining_s.get(job.key, -1.0)
            if work < 0:  # its first start: its whole length, at this sim's own speed
                days = self.sim.length_ns / s.sim_ns_per_day
                work = self._draw(DurationModel(mean_min=1440.0 * days, spread=s.sim_speed_spread))
                self._world.remaining_s[job.key] = work
        elif job.kind == JobKind.ANALYSIS.value:
            work = 60.0 * s.analysis_lag_min
        else:
            work = self._draw(getattr(s, {"createsim": "createsim", "train": "train"}.get(job.kind, "macro")))
        fails = u < s.hang_rate + s.fail_rate
        return (work * self._rng.random() if fails else work), fails

    def _draw(self, model: DurationModel) -> float:
        if model.spread == 0:
            return 60.0 * model.mean_min
        sigma = math.sqrt(math.log1p(model.spread**2))
        return 60.0 * model.mean_min * float(self._rng.lognormal(-0.5 * sigma**2, sigma))

    def _push_end(self, job: _Job) -> None:
        """Its end, its walltime, or (a sim) its own clean stop ``sim.stop_margin_min`` before the walltime."""
        assert job.started_at is not None
        ends = job.started_at + job.work_s
        deadline = job.started_at + job.walltime_s
        sim_runs = job.kind == JobKind.SIM.value and not job.fails and job.work_s < math.inf  # a hung one cannot stop
        margin = 60 * self.sim.stop_margin_min if sim_runs else 0.0
        if ends < deadline - margin:
            self._push(ends, "end", job.id, job.version)
        elif margin and job.walltime_s > margin:
            self._push(deadline - margin, "stop_self", job.id, job.version)
        else:
            self._push(deadline, "walltime", job.id, job.version)

    def _push(self, when: float, what: str, subject: str, version: int) -> None:
        self._seq += 1
        heapq.heappush(self._events, (when, self._seq, what, subject, version))

    # --------------------------------------------------------------- events
    def _handle(self, what: str, subject: str, version: int) -> None:
        if what == "node_loss":
            self._lose_node()
            return
        if what == "node_back":
            self._bring_back(subject)
            return
        job = self._jobs.get(subject)
        if job is None or job.version != version or job.state is not JobState.RUNNING:
            return  # stale: the job was stopped, lost or restarted since
        if what == "end":
            self._finish_naturally(job)
        elif what == "walltime":
            job.stopping = "walltime"
            self._stop(job)
        elif what == "kill":
            self._end(job, *self._stopped(job), 128 + 9)
        elif what == "checkpointed":
            self._checkpointed(job)
        elif what == "stop_self":
            job.stopping = "margin"
            self._push(self._world.now + _CHECKPOINT_S, "checkpointed", job.id, job.version)

    def _stop(self, job: _Job) -> None:
        """SIGTERM: a sim checkpoints and exits 75; a hung job is killed after the grace; others die at once."""
        job.version += 1
        if job.work_s == math.inf:
            self._push(self._world.now + self.settings.kill_grace_s, "kill", job.id, job.version)
        elif job.kind == JobKind.SIM.value:
            self._push(self._world.now + _CHECKPOINT_S, "checkpointed", job.id, job.version)
        else:
            self._end(job, *self._stopped(job), 128 + 15)

    def _checkpointed(self, job: _Job) -> None:
        assert job.started_at is not None
        done = self._world.now - _CHECKPOINT_S - job.started_at
        self._world.remaining_s[job.key] = max(0.0, job.work_s - done)
        simdir.write_status_in_place(job.key, JobKind.SIM, Outcome.INCOMPLETE)
        if job.stopping == "cancelled":
            self._end(job, JobState.CANCELLED, "cancelled", EXIT_RESUMABLE)
        elif job.stopping == "margin":
            self._end(job, JobState.FAILED, "exit code 75 (stopped before its walltime)", EXIT_RESUMABLE)
        else:
            self._end(job, JobState.FAILED, f"walltime of {job.walltime_s / 60:.4g} min reached", EXIT_RESUMABLE)

    def _finish_naturally(self, job: _Job) -> None:
        kind = JobKind(job.kind)
        if job.fails:
            if kind in SIM_STAGES:
                simdir.write_status_in_place(job.key, kind, Outcome.FAILED, error="simulated failure")
            self._end(job, JobState.FAILED, "exit code 1 (simulated failure)", 1)
            return
        if kind is JobKind.SIM:
            self._world.remaining_s.pop(job.key, None)
            simdir.write_status_in_place(job.key, kind, Outcome.DONE)
        elif kind is JobKind.ANALYSIS and simdir.is_done(job.key, JobKind.SIM):
            self.truth.counts(self._rng, self.rdf_edges).save(Path(job.key) / simdir.RDF_COUNTS, durable=False)
            simdir.write_status_in_place(job.key, kind, Outcome.DONE)
        elif kind is JobKind.CREATESIM:
            simdir.write_status_in_place(job.key, kind, Outcome.DONE)
        self._end(job, JobState.DONE, None, 0)

    def _stopped(self, job: _Job) -> tuple[JobState, str]:
        if job.stopping == "cancelled":
            return JobState.CANCELLED, "cancelled"
        return JobState.FAILED, f"walltime of {job.walltime_s / 60:.4g} min exceeded"

    def _end(self, job: _Job, state: JobState, reason: str | None, code: int | None) -> None:
        job.state, job.exit_code, job.reason = state, code, reason
        self._changed.add(job.id)
        self._log("end", job)
        job.version += 1
        if job.node is not None and job.started_at is not None:
            self._free_cores[job.node] += job.cores
            self._free_gpus[job.node] += job.gpus
            self._freed(job.node)
        if job.kind == JobKind.SIM.value and self._sim_of.get(job.key) == job.id:
            del self._sim_of[job.key]
            analysis = self._jobs.get(self._analysis_of.get(job.key, ""))
            if analysis is not None and analysis.state is JobState.RUNNING:
                lag = 0.0 if analysis.fails else 60.0 * self.settings.analysis_lag_min
                self._push(self._world.now + lag, "end", analysis.id, analysis.version)
        if job.kind == JobKind.ANALYSIS.value and self._analysis_of.get(job.key) == job.id:
            del self._analysis_of[job.key]

    # ---------------------------------------------------------------- nodes
    def _next_loss_in(self) -> float:
        assert self.settings.node_mtbf_h is not None
        return float(self._rng.exponential(3600.0 * self.settings.node_mtbf_h / len(self.names)))

    def _lose_node(self) -> None:
        up = [i for i, name in enumerate(self.names) if name not in self._world.down_until]
        if up:
            node = up[int(self._rng.integers(len(up)))]
            name = self.names[node]
            for job in [j for j in self._jobs.values() if j.node == node and j.state is JobState.RUNNING]:
                if job.kind == JobKind.SIM.value and job.started_at is not None:  # back to its last checkpoint
                    every = 60 * self.sim.checkpoint_interval_min
                    saved = every * math.floor((self._world.now - job.started_at) / every)
                    self._world.remaining_s[job.key] = max(0.0, job.work_s - saved)
                job.lost = True
                self._end(job, JobState.FAILED, f"node {name} lost", None)
            self._take_down(node)
            self._log("node_lost", node=name)
            until = self._world.now + 60 * self.settings.node_repair_min
            self._world.down_until[name] = until
            self._push(until, "node_back", name, 0)
        self._push(self._world.now + self._next_loss_in(), "node_loss", "", 0)

    def _take_down(self, node: int) -> None:
        self._free_cores[node] -= self.cores
        self._free_gpus[node] -= self.gpus
        self._update(node)

    def _bring_back(self, name: str) -> None:
        if self._world.down_until.pop(name, None) is not None:
            self._log("node_back", node=name)
            node = self._index[name]
            self._free_cores[node] += self.cores
            self._free_gpus[node] += self.gpus
            self._freed(node)

    # ---------------------------------------------------------------- state
    def _load_world(self) -> _World:
        path = self.state_dir / _STATE_FILE
        if not path.is_file():
            return _World()
        return _World(**json.loads(path.read_text()))

    def _adopt(self, job: _Job) -> None:
        """A job still active when the previous allocation ended ended with it (a sim from its last checkpoint)."""
        if job.state is JobState.RUNNING and job.kind == JobKind.SIM.value:
            self._world.remaining_s.setdefault(job.key, job.work_s)
        job.state, job.reason, job.node = JobState.CANCELLED, "ended with the previous allocation", None
