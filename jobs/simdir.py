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
``createsim.status.json``        createsim     ``{"state": "done", ...}``
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

import json
import time
from pathlib import Path
from typing import Any

from mummi.workflow.atomic import atomic_write_text

PATCH_INPUT = "patch_input.npz"
MEMBRANE = "membrane.npz"
EQ_STRUCTURE = "eq.gro"
TRAJECTORY = "md.xtc"
RDF_COUNTS = "rdf_counts.npz"
FEATURES = "features.npz"
STAGES = ("createsim", "sim", "analysis")
DONE = "done"
INCOMPLETE = "incomplete"
#: Exit status of a job that stopped cleanly before its walltime and must be run again (EX_TEMPFAIL).
EXIT_INCOMPLETE = 75


def status_path(sim_dir: str | Path, stage: str) -> Path:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; allowed: {', '.join(STAGES)}")
    return Path(sim_dir) / f"{stage}.status.json"


def write_status(sim_dir: str | Path, stage: str, state: str, **info: Any) -> Path:
    """Record the outcome of ``stage`` (written last by the job)."""
    record = {"state": state, "stage": stage, "time": time.time(), **info}
    return atomic_write_text(status_path(sim_dir, stage), json.dumps(record, indent=1) + "\n")


def read_status(sim_dir: str | Path, stage: str) -> dict[str, Any] | None:
    """The status record of ``stage`` in ``sim_dir``, or None when it has none yet."""
    path = status_path(sim_dir, stage)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def is_done(sim_dir: str | Path, stage: str) -> bool:
    record = read_status(sim_dir, stage)
    return record is not None and record.get("state") == DONE
