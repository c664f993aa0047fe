"""What must hold of a campaign at any moment, checked from its folder alone (no coordinator running).

After any fault (a coordinator killed mid-turn, an allocation's end) and at the
end of a campaign:

- the state store passes ``PRAGMA integrity_check``;
- no patch was selected twice, and every selection has its sim folder;
- a sim in state ``done`` has done status records (createsim and sim), exactly
  one sim job that ended ``done``, a trajectory whose frames are unique and in
  order, and RDF counts over at most that many frames; no sim job ended ``done``
  for a sim in another state;
- feedback rounds are numbered 1, 2, … and each finished one wrote the next
  parameter version, with its round file;
- the sampler recovered from its checkpoint and the store's log (as a resumed
  coordinator recovers it) selected exactly the store's selections, in order;
- every npz, JSON and HDF5 file the campaign wrote reads back whole (temporary
  files of an interrupted atomic write, never read as good, are not counted), and
  no file is writable by any user.

:func:`check` reports violations instead of raising, so a benchmark can count them.
"""

from __future__ import annotations

import json
import sqlite3
import stat
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mummi.analysis.rdf import RDFCounts
from mummi.core import simdir
from mummi.core.layout import CampaignLayout
from mummi.core.spec_loader import load_spec
from mummi.core.states import JobKind
from mummi.workflow.ingest import recover_sampler
from mummi.workflow.micro import DONE_FROM_OUTPUTS
from mummi.workflow.store import StateStore

_TEMPORARY = ".tmp-"
"""In the name of an atomic write's temporary file (:func:`mummi.core.atomic.atomic_path`)."""


@dataclass
class Report:
    violations: list[str] = field(default_factory=list)
    files_checked: int = 0
    corrupted: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations and not self.corrupted


def check(workdir: str | Path) -> Report:
    """Every invariant of the campaign in ``workdir``."""
    cdir = CampaignLayout(Path(workdir))
    report = Report()
    if not cdir.db.is_file():
        return report  # killed before it made its store: nothing to hold yet
    _check_files(cdir.root, report)
    con = sqlite3.connect(f"file:{cdir.db}?mode=ro", uri=True)
    try:
        (integrity,) = con.execute("PRAGMA integrity_check").fetchone()
        if integrity != "ok":
            report.violations.append(f"{cdir.db}: integrity check: {integrity}")
            return report
        _check_sims(con, cdir, report)
        _check_feedback(con, cdir, report)
    finally:
        con.close()
    _check_sampler(cdir, report)
    return report


def _check_sims(con: sqlite3.Connection, cdir: CampaignLayout, report: Report) -> None:
    bad = report.violations.append
    selections = con.execute("SELECT patch_id, sim_id, state FROM selections ORDER BY seq").fetchall()
    if len({p for p, _, _ in selections}) != len(selections):
        bad("a patch was selected twice")
    done_jobs: dict[str, int] = {}
    for (subject,) in con.execute("SELECT subject FROM jobs WHERE kind = 'sim' AND state = 'done'"):
        done_jobs[subject] = done_jobs.get(subject, 0) + 1
    # A lost or forgotten sim job whose folder says done finished too (its status could not say so).
    for subject, data in con.execute("SELECT subject, data FROM events WHERE kind = ?", (DONE_FROM_OUTPUTS,)):
        if json.loads(data).get("stage") == JobKind.SIM.value:
            done_jobs[subject] = done_jobs.get(subject, 0) + 1
    for _, sim_id, state in selections:
        sim_dir = cdir.sim(sim_id)
        if state != "done":
            if done_jobs.get(sim_id):
                bad(f"{sim_id}: a sim job ended done but the sim is {state}")
            continue
        if done_jobs.get(sim_id, 0) != 1:
            bad(f"{sim_id}: simulated {done_jobs.get(sim_id, 0)} times")
        if not (simdir.is_done(sim_dir, JobKind.CREATESIM) and simdir.is_done(sim_dir, JobKind.SIM)):
            bad(f"{sim_id}: done without done createsim and sim records")
        frames = _frame_count(sim_dir, bad)
        counts = sim_dir / simdir.RDF_COUNTS
        if counts.is_file() and frames is not None and RDFCounts.load(counts).frames_done > frames:
            bad(f"{sim_id}: RDF counts cover more frames than its trajectory has ({frames})")
    folders = {p.name for p in cdir.sims.iterdir()} if cdir.sims.is_dir() else set()
    missing = {s for _, s, state in selections if state != "selected"} - folders
    if missing:
        bad(f"selections without a sim folder: {sorted(missing)[:5]}")


def _frame_count(sim_dir: Path, bad: Callable[[str], None]) -> int | None:
    """Frames of a sim's trajectory, after checking they are unique and in order; None without one."""
    trajectory, structure = sim_dir / simdir.TRAJECTORY, sim_dir / simdir.EQ_STRUCTURE
    if not (trajectory.is_file() and structure.is_file()):
        return None
    import MDAnalysis as mda

    times = [ts.time for ts in mda.Universe(str(structure), str(trajectory)).trajectory]
    if len(times) != len(set(times)) or not np.all(np.diff(times) > 0):
        bad(f"{sim_dir.name}: duplicate or unordered trajectory frames")
    return len(times)


def _check_feedback(con: sqlite3.Connection, cdir: CampaignLayout, report: Report) -> None:
    rounds = con.execute("SELECT round, parameter_version, finished_at FROM feedback_rounds ORDER BY round").fetchall()
    if [r[0] for r in rounds] != list(range(1, len(rounds) + 1)):
        report.violations.append(f"feedback rounds not numbered 1, 2, …: {[r[0] for r in rounds]}")
    finished = [r for r in rounds if r[2] is not None]
    versions = [r[1] for r in finished]
    if versions and versions != list(range(versions[0], versions[0] + len(versions))):
        report.violations.append(f"feedback rounds wrote parameter versions {versions}: not contiguous")
    for round_no, _, _ in finished:
        if not cdir.feedback_round(round_no).is_file():
            report.violations.append(f"feedback round {round_no} finished without {cdir.feedback_round(round_no)}")


def _check_sampler(cdir: CampaignLayout, report: Report) -> None:
    if not cdir.spec_copy.is_file():
        return
    spec = load_spec(cdir.spec_copy)
    with StateStore(cdir.db) as store, tempfile.TemporaryDirectory() as scratch:
        recorded = [sel.patch_id for sel in store.selections()]
        if not recorded and store.get_meta("sampler_checkpoint") is None:
            return
        try:
            sampler = recover_sampler(spec, cdir, store, history=Path(scratch) / "history.csv")
        except Exception as err:  # any failure to recover is the violation being looked for
            report.violations.append(f"the sampler cannot be recovered from its checkpoint and log: {err}")
            return
    if list(sampler.selected_ids) != recorded:
        report.violations.append(
            f"the recovered sampler selected {len(sampler.selected_ids)} patches, the store records {len(recorded)}"
            " (or in another order)"
        )


def _check_files(root: Path, report: Report) -> None:
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        if path.stat().st_mode & stat.S_IWOTH:
            report.violations.append(f"{path}: writable by any user")
        if _TEMPORARY in path.name or path.suffix not in (".npz", ".json", ".h5") or _is_offsets_cache(path):
            continue
        report.files_checked += 1
        try:
            _read_whole(path)
        except Exception as err:  # a file that does not read back whole, whatever the reader raises
            report.corrupted.append(f"{path}: {type(err).__name__}: {err}")


def _is_offsets_cache(path: Path) -> bool:
    """MDAnalysis' frame-offsets cache of a trajectory: not campaign state (readers drop and rebuild a bad one)."""
    return path.name.startswith(".") and path.name.endswith("_offsets.npz")


def _read_whole(path: Path) -> None:
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            for name in data.files:
                data[name]
    elif path.suffix == ".json":
        json.loads(path.read_text(encoding="utf-8"))
    else:
        import h5py

        with h5py.File(path, "r") as fh:
            fh.visititems(lambda _, item: item[()] if isinstance(item, h5py.Dataset) else None)
    if path.suffix == ".npz" and not zipfile.is_zipfile(path):
        raise ValueError("not a zip archive")
