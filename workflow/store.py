"""The campaign state store: SQLite in WAL mode, one transaction per transition.

Schema changes are migrations: ``MIGRATIONS[i]`` takes a database from schema
version ``i`` to ``i + 1`` and ``PRAGMA user_version`` records where a database
stands. Opening a database upgrades it; a database newer than this code is
refused rather than guessed at.

Every state change also appends to the event log in the same transaction, so the
log and the tables can never disagree.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mummi.core.states import (
    JOB_TRANSITIONS,
    PATCH_TRANSITIONS,
    SIM_TRANSITIONS,
    JobKind,
    JobState,
    PatchState,
    SimState,
)

MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1: the first schema.
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE events (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        time    REAL NOT NULL,
        kind    TEXT NOT NULL,
        subject TEXT,
        data    TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE jobs (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        kind        TEXT NOT NULL,
        subject     TEXT,
        state       TEXT NOT NULL,
        attempt     INTEGER NOT NULL DEFAULT 1,
        backend_id  TEXT,
        command     TEXT NOT NULL,
        resources   TEXT NOT NULL,
        workdir     TEXT,
        log_path    TEXT,
        exit_code   INTEGER,
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL
    );
    CREATE INDEX jobs_by_state ON jobs (state);
    CREATE INDEX jobs_by_subject ON jobs (kind, subject);
    CREATE TABLE patches (
        id            TEXT PRIMARY KEY,
        frame_time_ns REAL NOT NULL,
        ras_id        INTEGER NOT NULL,
        file          TEXT NOT NULL,
        state         TEXT NOT NULL,
        created_at    REAL NOT NULL
    );
    CREATE INDEX patches_by_state ON patches (state);
    CREATE TABLE selections (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        patch_id    TEXT NOT NULL UNIQUE REFERENCES patches (id),
        sim_id      TEXT NOT NULL UNIQUE,
        score       REAL,
        state       TEXT NOT NULL,
        selected_at REAL NOT NULL,
        updated_at  REAL NOT NULL
    );
    CREATE INDEX selections_by_state ON selections (state);
    CREATE TABLE feedback_rounds (
        round             INTEGER PRIMARY KEY,
        started_at        REAL NOT NULL,
        finished_at       REAL,
        n_sims            INTEGER NOT NULL,
        parameter_version INTEGER,
        distance          REAL,
        details           TEXT NOT NULL DEFAULT '{}'
    );
    """,
    # 1 -> 2: failures counted apart from attempts (a clean stop-and-continue is no failure).
    """
    ALTER TABLE jobs ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
    """,
    # 2 -> 3: the nodes a job must run on (an in situ analysis beside its sim); JSON list, NULL for anywhere.
    """
    ALTER TABLE jobs ADD COLUMN hosts TEXT;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(Exception):
    """The store cannot do what was asked: a bad transition, an unknown row, a too-new schema."""


@dataclass(frozen=True, order=True)
class JobRecord:
    id: int
    kind: JobKind
    subject: str | None
    state: JobState
    attempt: int
    failures: int
    backend_id: str | None
    command: list[str]
    resources: dict[str, Any]
    workdir: str | None
    log_path: str | None
    exit_code: int | None
    created_at: float
    updated_at: float
    hosts: tuple[str, ...] = ()
    """Nodes the job must run on; empty: anywhere."""


@dataclass(frozen=True)
class SelectionRecord:
    seq: int
    patch_id: str
    sim_id: str
    score: float | None
    state: SimState
    selected_at: float


@dataclass(frozen=True)
class Event:
    """One line of the event log."""

    id: int
    time: float
    kind: str
    subject: str | None
    data: dict[str, Any]


@dataclass(frozen=True)
class FeedbackRound:
    round: int
    started_at: float
    finished_at: float | None
    n_sims: int
    parameter_version: int | None
    distance: float | None
    details: dict[str, Any]

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


class StateStore:
    """One campaign's ``campaign.db``.

    Use as a context manager or call :meth:`close`. Reads may run while another
    process writes (WAL); writes wait up to ``timeout_s`` for the lock.
    """

    def __init__(self, path: str | Path, timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self._on_close: list[Callable[[], None]] = []
        self._db = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._refuse_foreign()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._in_transaction = False
        self._sim_counts: dict[str, int] | None = None
        """Selections per sim state, kept as this store changes them (this process is their only writer)."""
        self._migrate()

    # ------------------------------------------------------------ lifecycle
    @classmethod
    def open_readonly(cls, path: str | Path) -> sqlite3.Connection:
        """A read-only connection for viewers (``mummi-status``) that must not migrate or lock."""
        path = Path(path)
        if not path.is_file():
            raise StoreError(f"{path}: no campaign database here")
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)
        db.row_factory = sqlite3.Row
        return db

    def close(self) -> None:
        self._db.close()
        while self._on_close:
            self._on_close.pop()()

    def on_close(self, release: Callable[[], None]) -> None:
        """Call ``release`` once the store is closed (the campaign's run lock)."""
        self._on_close.append(release)

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _refuse_foreign(self) -> None:
        """Refuse, before changing a byte, a file that is not a database or a database that is not a campaign's."""
        try:
            version = self.schema_version
            tables = self._db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.DatabaseError as err:
            self._db.close()
            raise StoreError(f"{self.path}: not a campaign database ({err}); it is left as it is: move it away "
                             "or choose another campaign.workdir") from err  # fmt: skip
        if version == 0 and tables:
            self._db.close()
            raise StoreError(f"{self.path}: an SQLite database that is not a campaign's (it has tables but no "
                             "mummi schema version); it is left as it is: move it away or choose another "
                             "campaign.workdir")  # fmt: skip

    def _migrate(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: schema version {version} is newer than this mummi knows ({SCHEMA_VERSION}); "
                "upgrade mummi to open this campaign"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self.transaction():
                for statement in _statements(MIGRATIONS[target - 1]):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {target}")
                self._log("store.migrated", None, {"schema_version": target})

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of change; nested calls join the outer transaction."""
        if self._in_transaction:
            yield self._db
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._in_transaction = True
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            self._sim_counts = None  # counted again from the database, as it now is
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._in_transaction = False

    # ------------------------------------------------------------------ meta
    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    # ---------------------------------------------------------------- events
    def record_event(self, kind: str, subject: str | None = None, **data: Any) -> None:
        with self.transaction():
            self._log(kind, subject, data)

    def events(self, kind: str | Sequence[str] | None = None, since_id: int = 0) -> list[Event]:
        """Events after ``since_id``, oldest first, of one kind or several."""
        kinds = [kind] if isinstance(kind, str) else list(kind or [])
        sql = "SELECT * FROM events WHERE id > ?"
        if kinds:
            sql += f" AND kind IN ({','.join('?' * len(kinds))})"
        rows = self._db.execute(sql + " ORDER BY id", (since_id, *kinds))
        return [Event(r["id"], r["time"], r["kind"], r["subject"], json.loads(r["data"])) for r in rows]

    def last_event_id(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])

    def _log(self, kind: str, subject: str | None, data: Mapping[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO events (time, kind, subject, data) VALUES (?, ?, ?, ?)",
            (time.time(), kind, subject, json.dumps(dict(data), default=str)),
        )

    # ------------------------------------------------------------------ jobs
    def add_job(
        self,
        kind: JobKind | str,
        command: Sequence[str],
        resources: Mapping[str, Any],
        subject: str | None = None,
        workdir: str | Path | None = None,
        log_path: str | Path | None = None,
        hosts: Sequence[str] = (),
    ) -> int:
        """Record a new job in state PENDING; returns its id."""
        now = time.time()
        kind = JobKind(kind).value
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO jobs (kind, subject, state, command, resources, workdir, log_path, created_at, updated_at,"
                " hosts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    kind,
                    subject,
                    JobState.PENDING.value,
                    json.dumps(list(command)),
                    json.dumps(dict(resources)),
                    _str(workdir),
                    _str(log_path),
                    now,
                    now,
                    json.dumps(list(hosts)) if hosts else None,
                ),
            )
            job_id = int(cur.lastrowid or 0)
            self._log("job.added", str(job_id), {"kind": kind, "subject": subject})
        return job_id

    def set_job_state(
        self,
        job_id: int,
        state: JobState,
        *,
        backend_id: str | None = None,
        exit_code: int | None = None,
        reason: str | None = None,
        current: JobRecord | None = None,
    ) -> JobRecord:
        """Move a job to ``state``; a retry (FAILED/CANCELLED -> PENDING) starts a new attempt.

        ``current``: the job's record as this store last returned it, which spares reading it again.
        """
        with self.transaction() as db:
            job = current if current is not None and current.id == job_id else self.job(job_id)
            _check_move("job", job_id, job.state, state, JOB_TRANSITIONS)
            attempt = job.attempt + 1 if state is JobState.PENDING else job.attempt
            now = time.time()
            db.execute(
                "UPDATE jobs SET state = ?, attempt = ?, backend_id = COALESCE(?, backend_id),"
                " exit_code = ?, updated_at = ? WHERE id = ?",
                (state.value, attempt, backend_id, exit_code, now, job_id),
            )
            data = {"from": job.state.value, "to": state.value, "attempt": attempt}
            data.update(
                {
                    k: v
                    for k, v in (("backend_id", backend_id), ("exit_code", exit_code), ("reason", reason))
                    if v is not None
                }
            )
            self._log("job.state", str(job_id), data)
            return replace(job, state=state, attempt=attempt, backend_id=backend_id or job.backend_id,
                           exit_code=exit_code, updated_at=now)  # fmt: skip

    def requeue_job(self, job_id: int, *, failed: bool) -> JobRecord:
        """A new attempt of an ended job (FAILED/CANCELLED -> PENDING); ``failed`` counts it as a failure."""
        with self.transaction() as db:
            self.set_job_state(job_id, JobState.PENDING, reason="retry" if failed else "continue")
            if failed:
                db.execute("UPDATE jobs SET failures = failures + 1 WHERE id = ?", (job_id,))
            return self.job(job_id)

    def job(self, job_id: int) -> JobRecord:
        row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise StoreError(f"no job with id {job_id}")
        return _job_record(row)

    def jobs(self, *, states: Sequence[JobState] | None = None, kind: JobKind | str | None = None) -> list[JobRecord]:
        clauses: list[str] = []
        args: list[str] = []
        if states is not None:
            clauses.append(f"state IN ({','.join('?' * len(states))})")
            args.extend(s.value for s in states)
        if kind is not None:
            clauses.append("kind = ?")
            args.append(JobKind(kind).value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return [_job_record(r) for r in self._db.execute(f"SELECT * FROM jobs{where} ORDER BY id", args)]

    # --------------------------------------------------------------- patches
    def add_patches(self, rows: Sequence[tuple[str, float, int, str]]) -> int:
        """Record patches ``(id, frame_time_ns, ras_id, file)`` as SEEN; known ids are ignored.

        Returns the number of new patches, so re-reading a frame after a restart is harmless.
        """
        now = time.time()
        with self.transaction() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO patches (id, frame_time_ns, ras_id, "
                "file, state, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(pid, float(t), int(r), str(f), PatchState.SEEN.value, now) for pid, t, r, f in rows],
            )
            added = db.total_changes - before
            if added:
                self._log("patches.added", None, {"count": added})
        return added

    def set_patch_states(self, patch_ids: Sequence[str], state: PatchState) -> None:
        with self.transaction() as db:
            for pid in patch_ids:
                row = db.execute("SELECT state FROM patches WHERE id = ?", (pid,)).fetchone()
                if row is None:
                    raise StoreError(f"no patch with id {pid!r}")
                _check_move("patch", pid, PatchState(row[0]), state, PATCH_TRANSITIONS)
            db.executemany("UPDATE patches SET state = ? WHERE id = ?", [(state.value, pid) for pid in patch_ids])
            self._log("patches.state", None, {"to": state.value, "count": len(patch_ids)})

    def patch_file(self, patch_id: str) -> Path:
        row = self._db.execute("SELECT file FROM patches WHERE id = ?", (patch_id,)).fetchone()
        if row is None:
            raise StoreError(f"no patch with id {patch_id!r}")
        return Path(row[0])

    def patch_files(self) -> set[str]:
        """Every file that patches were recorded from."""
        return {r[0] for r in self._db.execute("SELECT DISTINCT file FROM patches")}

    def patch_counts(self) -> dict[str, int]:
        return count_by_state(self._db, "patches", PatchState)

    def sim_counts(self) -> dict[str, int]:
        """Selections per sim state: counted in the database once, then kept up to date as they change."""
        if self._sim_counts is None:
            self._sim_counts = count_by_state(self._db, "selections", SimState)
        return dict(self._sim_counts)

    def _count_move(self, old: SimState | None, new: SimState) -> None:
        if self._sim_counts is not None:
            if old is not None:
                self._sim_counts[old.value] -= 1
            self._sim_counts[new.value] += 1

    # ------------------------------------------------------------ selections
    def record_selection(self, patch_id: str, sim_id: str, score: float | None) -> SelectionRecord:
        """Record that the sampler picked ``patch_id``; done before its createsim is submitted."""
        now = time.time()
        with self.transaction() as db:
            row = db.execute("SELECT state FROM patches WHERE id = ?", (patch_id,)).fetchone()
            if row is None:
                raise StoreError(f"cannot select unknown patch {patch_id!r}")
            _check_move("patch", patch_id, PatchState(row[0]), PatchState.SELECTED, PATCH_TRANSITIONS)
            db.execute("UPDATE patches SET state = ? WHERE id = ?", (PatchState.SELECTED.value, patch_id))
            try:
                cur = db.execute(
                    "INSERT INTO selections (patch_id, sim_id, score, state, "
                    "selected_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (patch_id, sim_id, score, SimState.SELECTED.value, now, now),
                )
            except sqlite3.IntegrityError as err:
                raise StoreError(f"sim id {sim_id!r} is already taken") from err
            self._count_move(None, SimState.SELECTED)
            self._log("selection", patch_id, {"sim_id": sim_id, "score": score})
            return SelectionRecord(int(cur.lastrowid or 0), patch_id, sim_id, score, SimState.SELECTED, now)

    def set_sim_state(self, sim_id: str, state: SimState, reason: str | None = None) -> SelectionRecord:
        with self.transaction() as db:
            sel = self.selection(sim_id)
            _check_move("sim", sim_id, sel.state, state, SIM_TRANSITIONS)
            db.execute(
                "UPDATE selections SET state = ?, updated_at = ? WHERE sim_id = ?", (state.value, time.time(), sim_id)
            )
            self._count_move(sel.state, state)
            data = {"from": sel.state.value, "to": state.value}
            if reason:
                data["reason"] = reason
            self._log("sim.state", sim_id, data)
            return replace(sel, state=state)

    def selection(self, sim_id: str) -> SelectionRecord:
        row = self._db.execute("SELECT * FROM selections WHERE sim_id = ?", (sim_id,)).fetchone()
        if row is None:
            raise StoreError(f"no simulation with id {sim_id!r}")
        return _selection_record(row)

    def selections(self, states: Sequence[SimState] | None = None, limit: int = -1) -> list[SelectionRecord]:
        """Selections (in ``states``), oldest first; at most ``limit`` of them (-1: all)."""
        if states is None:
            rows = self._db.execute("SELECT * FROM selections ORDER BY seq LIMIT ?", (limit,))
        else:
            rows = self._db.execute(
                f"SELECT * FROM selections WHERE state IN ({','.join('?' * len(states))}) ORDER BY seq LIMIT ?",
                [*(s.value for s in states), limit],
            )
        return [_selection_record(r) for r in rows]

    # -------------------------------------------------------------- feedback
    def start_feedback_round(self, n_sims: int) -> int:
        with self.transaction() as db:
            last = db.execute("SELECT COALESCE(MAX(round), 0) FROM feedback_rounds").fetchone()[0]
            unfinished = db.execute("SELECT round FROM feedback_rounds WHERE finished_at IS NULL").fetchone()
            if unfinished is not None:
                raise StoreError(f"feedback round {unfinished[0]} is still open")
            round_no = int(last) + 1
            db.execute(
                "INSERT INTO feedback_rounds (round, started_at, n_sims) VALUES (?, ?, ?)",
                (round_no, time.time(), n_sims),
            )
            self._log("feedback.started", str(round_no), {"n_sims": n_sims})
        return round_no

    def abandon_open_feedback_round(self) -> int | None:
        """Drop a round that was started and never finished (its coordinator died); returns its number."""
        with self.transaction() as db:
            row = db.execute("SELECT round FROM feedback_rounds WHERE finished_at IS NULL").fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM feedback_rounds WHERE round = ?", (row[0],))
            self._log("feedback.abandoned", str(row[0]), {})
            return int(row[0])

    def finish_feedback_round(
        self, round_no: int, parameter_version: int, distance: float | None, **details: Any
    ) -> None:
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE feedback_rounds SET finished_at = ?, parameter_version = ?, distance = ?, details = ?"
                " WHERE round = ? AND finished_at IS NULL",
                (time.time(), parameter_version, distance, json.dumps(details, default=str), round_no),
            )
            if cur.rowcount != 1:
                raise StoreError(f"feedback round {round_no} is not open")
            self._log(
                "feedback.finished", str(round_no), {"parameter_version": parameter_version, "distance": distance}
            )

    def feedback_rounds(self) -> list[FeedbackRound]:
        rows = self._db.execute("SELECT * FROM feedback_rounds ORDER BY round")
        return [
            FeedbackRound(
                r["round"],
                r["started_at"],
                r["finished_at"],
                r["n_sims"],
                r["parameter_version"],
                r["distance"],
                json.loads(r["details"]),
            )
            for r in rows
        ]


# ---------------------------------------------------------------- helpers
def count_by_state(db: sqlite3.Connection, table: str, states: type[PatchState] | type[SimState]) -> dict[str, int]:
    """Rows of ``table`` ("patches" or "selections") per state, every state present (0 when none)."""
    counts = {s.value: 0 for s in states}
    counts.update(dict(db.execute(f"SELECT state, COUNT(*) FROM {table} GROUP BY state").fetchall()))
    return counts


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _check_move(what: str, key: object, old: Any, new: Any, table: Mapping[Any, frozenset[Any]]) -> None:
    if new not in table[old]:
        allowed = ", ".join(sorted(s.value for s in table[old])) or "none (final state)"
        raise StoreError(f"{what} {key}: cannot go from {old.value} to {new.value}; allowed: {allowed}")


def _str(value: str | Path | None) -> str | None:
    return None if value is None else str(value)


def _job_record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        kind=JobKind(row["kind"]),
        subject=row["subject"],
        state=JobState(row["state"]),
        attempt=row["attempt"],
        failures=row["failures"],
        backend_id=row["backend_id"],
        command=json.loads(row["command"]),
        resources=json.loads(row["resources"]),
        workdir=row["workdir"],
        log_path=row["log_path"],
        exit_code=row["exit_code"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        hosts=tuple(json.loads(row["hosts"])) if row["hosts"] else (),
    )


def _selection_record(row: sqlite3.Row) -> SelectionRecord:
    return SelectionRecord(
        seq=row["seq"],
        patch_id=row["patch_id"],
        sim_id=row["sim_id"],
        score=row["score"],
        state=SimState(row["state"]),
        selected_at=row["selected_at"],
    )
