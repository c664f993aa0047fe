"""``python -m mummi.jobs.createsim --spec SPEC --sim-dir DIR``: patch -> equilibrated membrane.

Reads ``patch_input.npz`` (a :class:`~mummi.core.patch_input.PatchInput` written
by the coordinator), builds the membrane (``membrane.npz``; reused on a
rerun, so a rerun finishes the same system) and has the createsim engine
minimise and equilibrate it. ``createsim.status.json`` is written last.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mummi.adapters.md_engine import DeterministicFailure, get_engine, seed_for
from mummi.adapters.membrane import Membrane, build_membrane
from mummi.core.patch_input import read_patch_input
from mummi.core.simdir import MEMBRANE, PATCH_INPUT, is_done, read_status, write_status
from mummi.core.spec import CampaignSpec
from mummi.core.states import JobKind, Outcome
from mummi.jobs.entry import sim_job_main

__all__ = ["run_createsim", "main"]

log = logging.getLogger(__name__)


def run_createsim(spec: CampaignSpec, sim_dir: Path) -> dict[str, Any]:
    """Set the sim up (idempotent); returns its status record."""
    sim_dir = Path(sim_dir)
    if is_done(sim_dir, "createsim"):
        return read_status(sim_dir, "createsim") or {}
    cs = spec.createsim
    if (sim_dir / MEMBRANE).exists():
        membrane = Membrane.load(sim_dir / MEMBRANE)
    else:
        patch = read_patch_input(sim_dir / PATCH_INPUT)
        rng = np.random.default_rng(seed_for(spec.campaign.seed, sim_dir.name, "membrane"))
        try:
            membrane = build_membrane(patch, cs.lipids_per_cell, cs.cell_nm, cs.jitter, rng)
        except ValueError as err:  # the patch itself cannot be built (a leaflet with no lipid): a retry fails the same
            raise DeterministicFailure(f"patch {patch.patch_id}: {err}") from err
        membrane.save(sim_dir / MEMBRANE)
    facts = get_engine(cs.engine).setup(
        sim_dir, membrane, spec, seed_for(spec.campaign.seed, sim_dir.name, "createsim")
    )
    write_status(
        sim_dir,
        "createsim",
        Outcome.DONE,
        engine=cs.engine,
        patch_id=membrane.patch_id,
        box_nm=membrane.box_nm,
        n_ras=len(membrane.ras_xy_nm),
        durable=True,
        **facts,
    )
    log.info("createsim %s done (%s engine, %d lipids)", sim_dir.name, cs.engine, membrane.n_lipids)
    return read_status(sim_dir, "createsim") or {}


def _run(spec: CampaignSpec, sim_dir: Path, args: argparse.Namespace) -> int:
    run_createsim(spec, sim_dir)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return sim_job_main(JobKind.CREATESIM, argv, _run)


if __name__ == "__main__":
    raise SystemExit(main())
