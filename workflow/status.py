"""Campaign progress read from the state store, without disturbing a running campaign."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from mummi.core.layout import DB_NAME
from mummi.core.states import JobState, PatchState, SimState
from mummi.workflow.store import StateStore, StoreError, count_by_state


class StatusError(Exception):
    """No readable campaign at the given place."""


def collect(workdir: str | Path) -> dict[str, Any]:
    """Every figure ``mummi-status`` shows, as plain JSON-able data."""
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise StatusError(f"{workdir}: not a directory; give a campaign's workdir")
    try:
        db = StateStore.open_readonly(workdir / DB_NAME)
    except StoreError as err:
        raise StatusError(f"{err}; is {workdir} a campaign workdir?") from err
    try:
        return _collect(db, workdir)
    except sqlite3.DatabaseError as err:
        raise StatusError(f"{workdir / DB_NAME}: cannot be read ({err})") from err
    finally:
        db.close()


def _collect(db: sqlite3.Connection, workdir: Path) -> dict[str, Any]:
    meta = {r["key"]: json.loads(r["value"]) for r in db.execute("SELECT key, value FROM meta")}
    patches = count_by_state(db, "patches", PatchState)
    sims = count_by_state(db, "selections", SimState)
    jobs: dict[str, dict[str, int]] = {}
    for kind, state, count in db.execute("SELECT kind, state, COUNT(*) FROM jobs GROUP BY kind, state"):
        jobs.setdefault(kind, {s.value: 0 for s in JobState})[state] = count
    rounds = [
        {
            "round": r["round"],
            "n_sims": r["n_sims"],
            "parameter_version": r["parameter_version"],
            "distance": r["distance"],
            "finished": r["finished_at"] is not None,
        }
        for r in db.execute("SELECT * FROM feedback_rounds ORDER BY round")
    ]
    last = db.execute("SELECT time, kind, subject FROM events ORDER BY id DESC LIMIT 1").fetchone()
    return {
        "workdir": str(workdir.resolve()),
        "campaign": meta.get("campaign"),
        "runs": meta.get("runs"),
        "created_at": meta.get("created_at"),
        "macro_time_ns": meta.get("macro_time_ns"),
        "patches": {**patches, "total": sum(patches.values())},
        "sims": {**sims, "total": sum(sims.values())},
        "jobs": jobs,
        "feedback_rounds": rounds,
        "last_event": None
        if last is None
        else {
            "time": last["time"],
            "kind": last["kind"],
            "subject": last["subject"],
            "age_s": round(time.time() - last["time"], 1),
        },
    }


def render(status: dict[str, Any]) -> None:
    """Print ``status`` as tables on the terminal."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{status['campaign']}[/bold] in {status['workdir']} (run {status['runs']})")
    overview = Table("what", "figures", title="Progress")
    macro_ns = status["macro_time_ns"]
    overview.add_row("macro time", "—" if macro_ns is None else f"{macro_ns / 1000:.3f} µs")
    overview.add_row("patches", _pairs(status["patches"]))
    overview.add_row("sims", _pairs(status["sims"]))
    for kind, states in sorted(status["jobs"].items()):
        overview.add_row(f"{kind} jobs", _pairs(states))
    console.print(overview)
    if status["feedback_rounds"]:
        rounds = Table("round", "sims", "parameter version", "g(r) distance", title="Feedback")
        for r in status["feedback_rounds"]:
            distance = "running" if not r["finished"] else ("—" if r["distance"] is None else f"{r['distance']:.4g}")
            rounds.add_row(str(r["round"]), str(r["n_sims"]), str(r["parameter_version"] or "—"), distance)
        console.print(rounds)
    if status["last_event"]:
        e = status["last_event"]
        console.print(f"last event: {e['kind']} {e['subject'] or ''} ({e['age_s']:.0f} s ago)")


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items() if v or k == "total")
