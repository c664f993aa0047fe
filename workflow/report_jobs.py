"""What ``mummi-report`` shows of a campaign's jobs: attempts, where they ran, occupancy, queues, idle causes, failures.

Every attempt of a job is read from the store's event log (its submission,
start and end). Where each ran comes from what the backend left in ``logs/``:
the local backend's job records (node and GPU indices) or the simulated
backend's history (node; its virtual clock also anchors the campaign clock).
Other backends record no placement; their jobs show on one unnamed node.
"""

from __future__ import annotations

import csv
import heapq
import json
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mummi.adapters.simulated import HISTORY_FILE
from mummi.core.exit_codes import EXIT_RESUMABLE
from mummi.core.layout import CampaignLayout
from mummi.core.states import JobKind, JobState
from mummi.workflow.report_data import CampaignClock

LOCAL_RECORDS = "local-backend"
"""The local backend's job records under ``logs/`` (:meth:`LocalBackend.from_spec`)."""
SIMULATED_RECORDS = "simulated-backend"
"""The simulated backend's state folder under ``logs/`` (:meth:`SimulatedBackend.from_spec`)."""
UNKNOWN_NODE = "(node not recorded)"
_ENDED = {s.value for s in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)}


@dataclass
class Attempts:
    """One row per attempt of a job that reached a backend; times in Unix seconds until :meth:`to_hours`."""

    job: np.ndarray
    kind: np.ndarray
    subject: list[str]
    backend_id: list[str]
    submitted: np.ndarray
    started: np.ndarray
    """NaN: never started (cancelled while queued, or still queued)."""
    ended: np.ndarray
    """NaN: not ended yet."""
    state: np.ndarray
    """How it ended (done, failed, cancelled); empty while it lives."""
    reason: list[str]
    exit_code: np.ndarray
    """-1 where none was recorded."""
    gpus: np.ndarray
    cores: np.ndarray
    log_path: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.job)

    @property
    def failed(self) -> np.ndarray:
        """Attempts that failed: a clean stop to be continued (exit 75: at its walltime, or cancelled at an
        allocation's end) is no failure."""
        return (self.state == JobState.FAILED.value) & (self.exit_code != EXIT_RESUMABLE)

    def to_hours(self, clock: CampaignClock) -> None:
        self.submitted, self.started, self.ended = (clock.hours(t) for t in (self.submitted, self.started, self.ended))


def read_attempts(db: sqlite3.Connection) -> Attempts:
    """Each submission of a job to a backend, with its start and its end, from the store's ``job.state`` events."""
    jobs = {
        r[0]: r[1:]
        for r in db.execute(
            "SELECT id, kind, COALESCE(subject, ''), log_path,"
            " json_extract(resources, '$.tasks') * json_extract(resources, '$.gpus_per_task'),"
            " json_extract(resources, '$.tasks') * json_extract(resources, '$.cores_per_task') FROM jobs"
        )
    }
    rows = db.execute(
        "SELECT time, CAST(subject AS INTEGER), json_extract(data, '$.to'), json_extract(data, '$.backend_id'),"
        " json_extract(data, '$.reason'), json_extract(data, '$.exit_code') FROM events WHERE kind = 'job.state'"
        " ORDER BY id"
    )
    job: list[int] = []
    backend: list[str] = []
    submitted: list[float] = []
    started: list[float] = []
    ended: list[float] = []
    state: list[str] = []
    reason: list[str] = []
    code: list[int] = []
    current: dict[int, int] = {}
    for time_s, job_id, to, backend_id, why, exit_code in rows:
        if to == JobState.SUBMITTED.value:
            current[job_id] = len(job)
            job.append(job_id)
            backend.append(backend_id or "")
            submitted.append(time_s)
            started.append(np.nan)
            ended.append(np.nan)
            state.append("")
            reason.append("")
            code.append(-1)
            continue
        k = current.get(job_id)
        if k is None:  # a job that ended or was requeued before it reached a backend
            continue
        if to == JobState.RUNNING.value:
            started[k] = time_s
        elif to in _ENDED:
            if np.isnan(started[k]) and to != JobState.CANCELLED.value:
                started[k] = submitted[k]  # it ran between two polls: started at most this early
            ended[k], state[k], reason[k] = time_s, to, why or ""
            code[k] = -1 if exit_code is None else int(exit_code)
            del current[job_id]
    info = [jobs.get(j, ("", "", None, 0, 0)) for j in job]
    return Attempts(
        job=np.array(job, dtype=np.int64),
        kind=np.array([i[0] for i in info], dtype=str),
        subject=[i[1] for i in info],
        backend_id=backend,
        submitted=np.array(submitted, dtype=np.float64),
        started=np.array(started, dtype=np.float64),
        ended=np.array(ended, dtype=np.float64),
        state=np.array(state, dtype=str),
        reason=reason,
        exit_code=np.array(code, dtype=np.int64),
        gpus=np.array([i[3] or 0 for i in info], dtype=np.int64),
        cores=np.array([i[4] or 0 for i in info], dtype=np.int64),
        log_path={j: v[2] for j, v in jobs.items() if v[2]},
    )


# ---------------------------------------------------------------- backend log
@dataclass
class BackendLog:
    """What the backend recorded beside the store: where each attempt ran, and for the simulated backend its clock."""

    node: dict[str, str] = field(default_factory=dict)
    """Backend job id -> node name."""
    gpu_indices: dict[str, list[int]] = field(default_factory=dict)
    """Backend job id -> the GPU indices it was given, where the backend says."""
    submitted_s: dict[str, float] = field(default_factory=dict)
    """Backend job id -> its submission on the backend's own clock (simulated backend only)."""
    nodes_down: list[tuple[float, int]] = field(default_factory=list)
    """(campaign seconds, +1 lost / -1 back) of the nodes the simulated backend lost."""

    @property
    def simulated(self) -> bool:
        return bool(self.submitted_s)


def read_backend_log(cdir: CampaignLayout) -> BackendLog:
    out = BackendLog()
    for record_path in sorted((cdir.logs / LOCAL_RECORDS).glob("*.json")):
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            continue  # an unreadable record only costs the placement of one job
        if record.get("node"):
            out.node[record_path.stem] = record["node"]
            out.gpu_indices[record_path.stem] = list(record.get("gpus") or [])
    history = cdir.logs / SIMULATED_RECORDS / HISTORY_FILE
    if history.is_file():
        _read_simulated_history(history, out)
    return out


def _read_simulated_history(path: Path, out: BackendLog) -> None:
    with open(path, newline="") as fh:
        rows = csv.reader(fh)
        next(rows, None)
        for row in rows:
            if len(row) < 6:
                continue  # a line cut short by a crash
            event = row[1]
            if event == "submit":
                out.submitted_s[row[2]] = float(row[0])
            elif event == "start":
                out.node[row[2]] = row[5]
            elif event in ("node_lost", "node_back"):
                out.nodes_down.append((float(row[0]), 1 if event == "node_lost" else -1))


def campaign_clock(origin_s: float, attempts: Attempts, log: BackendLog) -> CampaignClock:
    """Wall-clock hours; for the simulated backend its virtual clock, matched on the submissions both recorded."""
    if not log.simulated:
        return CampaignClock(origin_s)
    pairs = [
        (t, log.submitted_s[b])
        for t, b in zip(attempts.submitted.tolist(), attempts.backend_id)
        if b in log.submitted_s
    ]
    unix, virtual = (np.array(v, dtype=np.float64) for v in zip(*pairs)) if pairs else (np.empty(0), np.empty(0))
    return CampaignClock.matched(origin_s, unix, virtual)


# ------------------------------------------------------------- step series
def integral_at(t: np.ndarray, level: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Integral from ``t[0]`` to each ``x`` of the step function equal to ``level[k]`` on ``[t[k], t[k+1])``
    (0 before ``t[0]``); ``t`` sorted."""
    if len(t) == 0:
        return np.zeros(len(x))
    cum = np.concatenate([[0.0], np.cumsum(np.diff(t) * level[:-1])])
    k = np.searchsorted(t, x, side="right") - 1
    at = np.maximum(k, 0)
    return np.where(k >= 0, cum[at] + level[at] * (x - t[at]), 0.0)


def level_at(t: np.ndarray, level: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The step function's value at each ``x`` (0 before ``t[0]``)."""
    k = np.searchsorted(t, x, side="right") - 1
    return np.where(k >= 0, level[np.maximum(k, 0)], 0) if len(t) else np.zeros(len(x))


def steps(*changes: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Merge series of (times, deltas) into one: sorted times, and each series' level after each time (columns)."""
    times = np.concatenate([t for t, _ in changes]) if changes else np.empty(0)
    deltas = np.zeros((len(times), len(changes)))
    start = 0
    for column, (t, d) in enumerate(changes):
        deltas[start : start + len(t), column] = d
        start += len(t)
    order = np.argsort(times, kind="stable")
    return times[order], np.cumsum(deltas[order], axis=0)


@dataclass(frozen=True)
class Usage:
    """GPU and core occupancy, idle GPU time by cause, and queue depths, on a grid of campaign hours."""

    edges_h: np.ndarray
    gpus_busy: np.ndarray
    """Mean GPUs in use over each bin."""
    cores_busy: np.ndarray
    idle: dict[str, np.ndarray]
    """Mean idle GPUs over each bin, per cause."""
    idle_gpu_h: dict[str, float]
    busy_gpu_h: float
    gpu_capacity: int
    core_capacity: int
    queues: dict[str, np.ndarray]
    """Queue depths at each bin's end: candidates, sims selected, setting up, ready."""

    @property
    def centres_h(self) -> np.ndarray:
        return 0.5 * (self.edges_h[1:] + self.edges_h[:-1])


IDLE_CAUSES = {
    "before the first sim": "before the first sim started (pre-campaign, encoder training, first set-ups)",
    "nodes down": "on nodes the backend had lost",
    "queued in the backend": "sims were submitted but waiting for room on a node (placement, an analysis finishing)",
    "no sim ready": "no set-up sim to start (set-ups or selection behind, or the campaign winding down)",
}


def usage(
    attempts: Attempts,
    log: BackendLog,
    sim_states: tuple[np.ndarray, np.ndarray, np.ndarray],
    candidates: tuple[np.ndarray, np.ndarray],
    capacity: tuple[int, int],
    gpus_per_node: int,
    end_h: float,
    n_bins: int = 600,
) -> Usage:
    """Occupancy and queues over ``[0, end_h]``; ``attempts`` in campaign hours.

    ``sim_states``: :func:`read_sim_states`, and ``capacity``: (GPUs, cores) of the
    allocation (0: the most ever in use).
    """
    edges = np.linspace(0.0, max(end_h, 1e-6), n_bins + 1)
    ran = ~np.isnan(attempts.started)
    start = attempts.started[ran]
    stop = np.where(np.isnan(attempts.ended[ran]), end_h, attempts.ended[ran])
    gpus, cores = attempts.gpus[ran], attempts.cores[ran]
    gpu_jobs = attempts.gpus > 0
    queued_until = np.where(np.isnan(attempts.started), attempts.ended, attempts.started)[gpu_jobs]
    queued_until = np.where(np.isnan(queued_until), end_h, queued_until)
    down = np.array(log.nodes_down, dtype=np.float64).reshape(-1, 2)
    t, levels = steps(
        (np.concatenate([start, stop]), np.concatenate([gpus, -gpus])),
        (np.concatenate([start, stop]), np.concatenate([cores, -cores])),
        (
            np.concatenate([attempts.submitted[gpu_jobs], queued_until]),
            np.concatenate([attempts.gpus[gpu_jobs], -attempts.gpus[gpu_jobs]]),
        ),
        (down[:, 0] / 3600.0, down[:, 1] * gpus_per_node),
    )
    busy, busy_cores, queued, down_gpus = levels.T if len(t) else np.zeros((4, 0))
    gpu_capacity = capacity[0] or int(busy.max(initial=0))
    core_capacity = capacity[1] or int(busy_cores.max(initial=0))
    sims = attempts.kind == JobKind.SIM.value
    first_sim_h = float(np.nanmin(attempts.started[sims], initial=np.inf)) if sims.any() else np.inf
    idle = np.maximum(gpu_capacity - busy, 0.0)
    before = np.where(t < first_sim_h, idle, 0.0)
    on_down = np.minimum(idle - before, down_gpus)
    waiting = np.minimum(idle - before - on_down, queued)
    idle_levels = {
        "before the first sim": before,
        "nodes down": on_down,
        "queued in the backend": waiting,
        "no sim ready": idle - before - on_down - waiting,
    }
    t0 = np.concatenate([[0.0], t])  # idle from the campaign's start until the first change

    def means(level: np.ndarray, first: float) -> np.ndarray:
        return np.diff(integral_at(t0, np.concatenate([[first], level]), edges)) / np.diff(edges)

    def total(level: np.ndarray, first: float) -> float:
        return float(np.diff(integral_at(t0, np.concatenate([[first], level]), np.array([0.0, end_h])))[0])

    first_idle = {"before the first sim": float(gpu_capacity)}
    return Usage(
        edges_h=edges,
        gpus_busy=means(busy, 0.0),
        cores_busy=means(busy_cores, 0.0),
        idle={k: means(v, first_idle.get(k, 0.0)) for k, v in idle_levels.items()},
        idle_gpu_h={k: total(v, first_idle.get(k, 0.0)) for k, v in idle_levels.items()},
        busy_gpu_h=total(busy, 0.0),
        gpu_capacity=gpu_capacity,
        core_capacity=core_capacity,
        queues=_queues(sim_states, candidates, edges[1:]),
    )


QUEUED_SIM_STATES = ("selected", "setting_up", "ready")
"""The states a sim waits in before it runs, each a queue."""


def _queues(
    sim_states: tuple[np.ndarray, np.ndarray, np.ndarray], candidates: tuple[np.ndarray, np.ndarray], at: np.ndarray
) -> dict[str, np.ndarray]:
    """Depth of each queue at the times ``at``: candidates, and sims waiting in each state before they run."""
    hours, left, entered = sim_states
    out = {"candidates": level_at(*candidates, at) if len(candidates[0]) else np.full(len(at), np.nan)}
    for state in QUEUED_SIM_STATES:
        into, out_of = entered == state, left == state
        moves = into | out_of
        t, level = steps((hours[moves], np.where(into[moves], 1.0, 0.0) - np.where(out_of[moves], 1.0, 0.0)))
        out[state] = level_at(t, level[:, 0], at) if len(t) else np.zeros(len(at))
    return out


def read_sim_states(db: sqlite3.Connection, clock: CampaignClock) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(campaign hours, state left, state entered) of every sim's moves, its selection first ('' left)."""
    rows = db.execute(
        "SELECT selected_at, '', 'selected' FROM selections UNION ALL SELECT time, json_extract(data, '$.from'),"
        " json_extract(data, '$.to') FROM events WHERE kind = 'sim.state'"
    ).fetchall()
    times = np.array([r[0] for r in rows], dtype=np.float64)
    return clock.hours(times), np.array([r[1] for r in rows], dtype=str), np.array([r[2] for r in rows], dtype=str)


# ---------------------------------------------------------------- timeline
@dataclass(frozen=True)
class Lane:
    node: str
    label: str
    """``GPU n`` or ``CPU``."""


def timeline_lanes(
    attempts: Attempts, log: BackendLog, gpus_per_node: int, max_nodes: int
) -> tuple[list[Lane], dict[int, list[int]], int]:
    """Gantt lanes of the first ``max_nodes`` nodes (by name): one per GPU, then as many for CPU-only jobs as ran
    at once.

    Returns the lanes, the lanes of each attempt shown (by row in ``attempts``) and the number of nodes in all.
    A GPU job goes to the GPUs the backend gave it, or else to the lowest GPU lanes free when it started; a
    CPU-only job to the lowest CPU lane free.
    """
    node_of = [log.node.get(b, UNKNOWN_NODE) for b in attempts.backend_id]
    ran = np.flatnonzero(~np.isnan(attempts.started))
    by_node: dict[str, list[int]] = defaultdict(list)
    for i in ran.tolist():
        by_node[node_of[i]].append(i)
    lanes: list[Lane] = []
    placed: dict[int, list[int]] = {}
    for node in sorted(by_node)[:max_nodes]:
        rows = sorted(by_node[node], key=lambda i: (attempts.started[i], i))
        gpu_jobs = [i for i in rows if attempts.gpus[i] > 0]
        given = {
            i: log.gpu_indices[attempts.backend_id[i]] for i in gpu_jobs if log.gpu_indices.get(attempts.backend_id[i])
        }
        on_gpus = _pack(attempts, gpu_jobs, attempts.gpus, given)
        on_cpus = _pack(
            attempts, [i for i in rows if attempts.gpus[i] == 0], np.ones(len(attempts), dtype=np.int64), {}
        )
        n_gpu = max([gpus_per_node, *(g + 1 for used in on_gpus.values() for g in used)])
        n_cpu = max([1, *(c + 1 for used in on_cpus.values() for c in used)])
        first = len(lanes)
        lanes += [Lane(node, f"GPU {g}") for g in range(n_gpu)] + [Lane(node, f"CPU {c}") for c in range(n_cpu)]
        for i, used in on_gpus.items():
            placed[i] = [first + g for g in used]
        for i, used in on_cpus.items():
            placed[i] = [first + n_gpu + c for c in used]
    return lanes, placed, len(by_node)


def _pack(attempts: Attempts, rows: list[int], need: np.ndarray, given: dict[int, list[int]]) -> dict[int, list[int]]:
    """Lanes of each attempt in ``rows`` (in start order): ``given`` ones, else the lowest ``need[i]`` free."""
    busy: list[tuple[float, int]] = []  # (end, lane) of the lanes in use
    free: list[int] = []
    opened = 0
    out: dict[int, list[int]] = {}
    for i in rows:
        if i in given:
            out[i] = list(given[i])
            continue
        while busy and busy[0][0] <= attempts.started[i]:
            heapq.heappush(free, heapq.heappop(busy)[1])
        while len(free) < need[i]:
            heapq.heappush(free, opened)
            opened += 1
        taken = [heapq.heappop(free) for _ in range(int(need[i]))]
        end = attempts.ended[i] if not np.isnan(attempts.ended[i]) else np.inf
        for lane in taken:
            heapq.heappush(busy, (end, lane))
        out[i] = taken
    return out


# ---------------------------------------------------------------- failures
@dataclass(frozen=True)
class Failure:
    job: int
    kind: str
    subject: str
    state: str
    attempts: int
    failures: int
    """Failed attempts (a clean stop to be continued, exit 75, is none)."""
    reason: str
    exit_code: int | None
    log_path: str


def failures(db: sqlite3.Connection, attempts: Attempts) -> list[Failure]:
    """Every job with a failed attempt (:attr:`Attempts.failed`), or that failed before it reached a backend."""
    last: dict[int, int] = {}
    count: dict[int, int] = defaultdict(int)
    for i in np.flatnonzero(attempts.failed).tolist():
        job_id = int(attempts.job[i])
        last[job_id] = i
        count[job_id] += 1
    rows = db.execute(
        "SELECT id, kind, COALESCE(subject, ''), state, attempt, COALESCE(log_path, ''),"
        f" state = 'failed' AND COALESCE(exit_code, -1) != {EXIT_RESUMABLE} FROM jobs ORDER BY id"
    )
    out = []
    for job_id, kind, subject, state, attempt, log_path, ended_failed in rows:
        if job_id not in count and not ended_failed:
            continue
        i = last.get(job_id)
        reason = attempts.reason[i] if i is not None else ""
        code = int(attempts.exit_code[i]) if i is not None and attempts.exit_code[i] >= 0 else None
        out.append(Failure(job_id, kind, subject, state, attempt, count.get(job_id, 0), reason, code, log_path))
    return out
