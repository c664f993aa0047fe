"""Bilayer health from a trajectory: area per lipid, thickness, lateral diffusion, lipids that left their leaflet.

The checks a Martini setup must pass before its RDFs mean anything: a fluid
bilayer (lipids diffuse), of the published area per lipid and thickness, with
every lipid still in the leaflet it was built in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mummi.adapters.md_engine import open_universe
from mummi.core.lipids import INNER_LIPIDS, OUTER_LIPIDS

LIPIDS = set(INNER_LIPIDS) | set(OUTER_LIPIDS)
PHOSPHATE = "PO4"
STEROL = "CHOL"


@dataclass(frozen=True)
class BilayerProperties:
    frames: int
    lipids_per_leaflet: tuple[int, int]  # (lower, upper)
    area_per_lipid_nm2: float  # box area over the lipids of the upper leaflet, mean over frames
    thickness_nm: float  # PO4-PO4 distance between the leaflets' mean heights
    diffusion_um2_s: float  # lateral, from the mean squared displacement of the lipids' head beads over the run
    msd_nm2: float  # that mean squared displacement at the last frame
    switched_leaflet: int  # phospholipids whose head ended on the other side of the midplane
    sterol_flips: int  # cholesterols on the other side at the end (they flip-flop within nanoseconds in Martini)
    left_bilayer: int  # lipids whose head ended more than 1.5 nm beyond their leaflet's head groups, in the water

    def as_dict(self) -> dict:
        return asdict(self)


def bilayer_properties(topology: str | Path, trajectory: str | Path, skip_ps: float = 0.0) -> BilayerProperties:
    """Properties of the bilayer in ``trajectory``, from frames after ``skip_ps``."""
    u = open_universe(topology, trajectory)
    lipids = [res for res in u.residues if res.resname in LIPIDS]
    heads = np.array([res.atoms.indices[0] for res in lipids])
    phosphates = u.select_atoms(f"name {PHOSPHATE}")
    areas, thickness, centres, head_z, mids = [], [], [], [], []
    for ts in u.trajectory:
        if ts.time < skip_ps:
            continue
        z = u.atoms.positions[heads, 2] / 10
        mid = z.mean()
        p = phosphates.positions[:, 2] / 10
        thickness.append(p[p > mid].mean() - p[p < mid].mean())
        areas.append(ts.dimensions[0] * ts.dimensions[1] / 100 / max(1, int(np.sum(z > mid))))
        centres.append(u.atoms.positions[heads, :2] / 10)  # one bead: whole whatever the periodic wrapping
        head_z.append(z)
        mids.append(mid)
    if len(centres) < 2:
        raise ValueError(f"{trajectory}: fewer than two frames after {skip_ps} ps")
    upper0 = head_z[0] > mids[0]
    upper1 = head_z[-1] > mids[-1]
    sterol = np.array([res.resname == STEROL for res in lipids])
    msd = _lateral_msd(np.array(centres), upper0, u.trajectory[-1].dimensions[:2] / 10)
    elapsed_ps = u.trajectory[-1].time - max(skip_ps, u.trajectory[0].time)
    return BilayerProperties(
        frames=len(centres),
        lipids_per_leaflet=(int(np.sum(~upper0)), int(np.sum(upper0))),
        area_per_lipid_nm2=float(np.mean(areas)),
        thickness_nm=float(np.mean(thickness)),
        diffusion_um2_s=float(msd / (4 * elapsed_ps * 1e-12) * 1e-6) if elapsed_ps > 0 else 0.0,
        msd_nm2=float(msd),
        switched_leaflet=int(np.sum((upper0 != upper1) & ~sterol)),
        sterol_flips=int(np.sum((upper0 != upper1) & sterol)),
        left_bilayer=int(np.sum(_beyond_leaflet(head_z[-1], upper0) > 1.5)),
    )


def _beyond_leaflet(z: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """How far each head lies beyond the mean head height of the leaflet it was built in, away from the midplane."""
    return np.where(upper, z - z[upper].mean(), z[~upper].mean() - z)


def _lateral_msd(centres: np.ndarray, upper: np.ndarray, box_xy: np.ndarray) -> float:
    """Mean squared lateral displacement from the first frame to the last, positions unwrapped step by step
    and each leaflet's own drift removed."""
    steps = np.diff(centres, axis=0)
    steps -= box_xy * np.round(steps / box_xy)
    moved = steps.sum(axis=0)
    for leaflet in (upper, ~upper):
        moved[leaflet] -= moved[leaflet].mean(axis=0)
    return float(np.mean(np.sum(moved**2, axis=1)))
