"""The folder of one micro simulation, ``W/sims/<sim-id>/``: file names and status records.

Who writes what (every write is atomic; a status record is each job's last write):

===============================  ============  =========================================
file                             written by    holds
===============================  ============  =========================================
``patch_input.npz``              WFM           the patch (``write_patch_input``)
``membrane.npz``                 createsim     the built membrane (lipid channels, x, y)
``eq.gro``                       createsim     the equilibrated system: coordinates,
                                               residue names per lipid type
engine setup files               createsim     GROMACS: ``topol.top``, ``em.*``, ``eq.*``;
                                               mock: ``eq_state.npz``
``createsim.status.json``        createsim     ``{"state": "done", ...}`` (a status record,
                                               :mod:`mummi.core.status_record`)
``md.xtc``                       sim           the production trajectory (GROMACS, mock)
engine checkpoints               sim           GROMACS ``md.cpt``; mock ``md_state.npz``;
                                               ddcMD ``ddcmd/snapshot.*``
``sim.status.json``              sim           ``done``, or ``incomplete`` after a clean
                                               stop before the walltime (run it again)
``rdf_counts.npz``               analysis      RDF counts, ``frames_done`` (commit point)
``features.npz``                 analysis      per-frame features
``analysis.status.json``         analysis      ``{"state": "done", "frames": n}``
===============================  ============  =========================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mummi.core.states import SIM_STAGES, JobKind, Outcome
from mummi.core.status_record import outcome_of, read_status_record, status_text, write_status_record

PATCH_INPUT = "patch_input.npz"
MEMBRANE = "membrane.npz"
EQ_STRUCTURE = "eq.gro"
TRAJECTORY = "md.xtc"
RDF_COUNTS = "rdf_counts.npz"
FEATURES = "features.npz"


_STATUS_FILES = {s.value: f"{s.value}.status.json" for s in SIM_STAGES}


def status_path(sim_dir: str | Path, stage: JobKind | str) -> Path:
    name = _STATUS_FILES.get(stage.value if isinstance(stage, JobKind) else stage)
    if name is None:
        raise ValueError(f"unknown stage {stage!r}; allowed: {', '.join(_STATUS_FILES)}")
    return Path(sim_dir, name)


def write_status(sim_dir: str | Path, stage: JobKind | str, outcome: Outcome, *, durable: bool = True,
                 **info: Any) -> Path:  # fmt: skip
    """Record the outcome of ``stage`` (written last by the job)."""
    return write_status_record(status_path(sim_dir, stage), JobKind(stage).value, outcome, durable=durable, **info)


def write_status_in_place(sim_dir: str | Path, stage: JobKind | str, outcome: Outcome, **info: Any) -> Path:
    """:func:`write_status`, not atomic: for a writer whose readers cannot run meanwhile (the simulated
    backend's jobs, which run in the coordinator's own process)."""
    path, text = status_path(sim_dir, stage), status_text(JobKind(stage).value, outcome, **info)
    try:
        path.write_text(text, encoding="utf-8")
    except FileNotFoundError:
        path.parent.mkdir(parents=True)
        path.write_text(text, encoding="utf-8")
    return path


def read_status(sim_dir: str | Path, stage: JobKind | str) -> dict[str, Any] | None:
    """The status record of ``stage`` in ``sim_dir``, or None when it has none yet."""
    return read_status_record(status_path(sim_dir, stage))


def outcome(sim_dir: str | Path, stage: JobKind | str) -> Outcome | None:
    return outcome_of(status_path(sim_dir, stage))


def is_done(sim_dir: str | Path, stage: JobKind | str) -> bool:
    return outcome(sim_dir, stage) is Outcome.DONE
