"""``mummi-bench createsim``: wall time of the whole Martini setup of one patch, for each patch size asked for.

For each size (``--sizes 10,30``, nm; 30 nm is the paper's patch, about 3,070
lipids, which MuMMI set up in about 90 minutes on 24 cores): a patch of the
MuMMI mixture (the macro model's mean composition) with the RAS proxy at its
centre is built with insane and minimised, equilibrated restrained and pulled,
then freely (createsim's stages, with the spec's lengths below), timed stage by
stage from the times its files were written. Cells are 6 nm wide at the paper's 64 lipids
per cell and leaflet when the size is a multiple of 6, else the membrane is cut
into 5 cells of size/5 at the same density.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mummi.adapters.gromacs import GromacsEngine
from mummi.adapters.membrane import build_membrane
from mummi.core.patch_input import PatchInput
from mummi.core.spec import CampaignSpec
from mummi.core.spec_loader import SHIPPED_FORCEFIELDS
from mummi.macro.params import default_parameters

LIPIDS_PER_NM2 = 64 / 36  # the paper's 64 lipids per 6 x 6 nm cell and leaflet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="10,30", help="patch edges in nm, comma-separated (default: 10,30)")
    parser.add_argument("--cores", type=int, default=2, help="GROMACS threads (default: 2)")
    parser.add_argument("--em-steps", type=int, default=2000)
    parser.add_argument("--pull-ns", type=float, default=0.1)
    parser.add_argument("--equilibration-ns", type=float, default=0.2)
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep the systems here (default: a temporary folder)"
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    results = []
    with tempfile.TemporaryDirectory(prefix="mummi-bench-createsim-") as tmp:
        root = args.workdir or Path(tmp)
        for size in (float(s) for s in args.sizes.split(",")):
            results.append(_one(root / f"patch-{size:g}nm", size, args))
    return {"patches": results}


def _one(sim_dir: Path, size_nm: float, args: argparse.Namespace) -> dict[str, Any]:
    cell_nm = size_nm / 5
    per_cell = round(LIPIDS_PER_NM2 * cell_nm**2)
    spec = CampaignSpec.model_validate(
        {
            "campaign": {"name": "bench", "workdir": str(sim_dir.parent / "w")},
            "resources": {"cores_per_node": args.cores + 4, "wfm_cores": 1},  # room for the macro model and a sim
            "createsim": {"engine": "gromacs", "lipids_per_cell": per_cell, "cell_nm": cell_nm,
                          "em_steps": args.em_steps, "pull_ns": args.pull_ns,
                          "equilibration_ns": args.equilibration_ns, "resources": {"cores_per_task": args.cores}},
            "sim": {"engine": "gromacs", "gromacs": {"forcefield": str(SHIPPED_FORCEFIELDS / "martini22")}},
        }
    )  # fmt: skip
    sim_dir.mkdir(parents=True, exist_ok=True)
    coarse = np.broadcast_to(default_parameters().mean_concentration_per_nm2, (5, 5, 14)).copy()
    patch = PatchInput(sim_dir.name, coarse, np.zeros((0, 2)), np.zeros(0, dtype=np.int64))
    membrane = build_membrane(patch, per_cell, cell_nm, 0.2, np.random.default_rng(1))
    started = time.perf_counter()
    facts = GromacsEngine().setup(sim_dir, membrane, spec, seed=1)
    wall = time.perf_counter() - started
    stages = list(facts["stages"])  # type: ignore[call-overload]
    return {
        "size_nm": size_nm,
        "lipids": membrane.n_lipids,
        "particles": facts["atoms"],
        "stages": stages,
        "wall_s": round(wall, 1),
        "stage_wall_s": _stage_walls(sim_dir, stages),
        "cores": args.cores,
        "lengths": {"em_steps": args.em_steps, "pull_ns": args.pull_ns, "equilibration_ns": args.equilibration_ns},
    }


def _stage_walls(sim_dir: Path, stages: list[str]) -> dict[str, float]:
    """Seconds from each stage's input structure to its output (file times: grompp and mdrun together)."""
    walls, previous = {}, sim_dir / "system.gro"
    for stage in stages:
        done = sim_dir / f"{stage}.gro"
        walls[stage] = round(done.stat().st_mtime - previous.stat().st_mtime, 1)
        previous = done
    return walls
