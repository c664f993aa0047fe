"""Martini systems built with insane: lipid structures from insane's definitions, solvent and ions placed by insane.

insane (Wassenaar et al. 2015, the builder MuMMI used) fills a membrane with one
composition per leaflet; a MuMMI patch has one per coarse cell. So the lateral
sites and each site's lipid type come from :func:`~mummi.adapters.membrane.build_membrane`
(per-cell counts, unbiased rounding), and insane supplies the rest:

* each lipid's beads, names and order from insane's lipid table, or from the force
  field's insane lipid-definition file for lipids the table lacks (insane's
  ``@INSANE`` user-lipid mechanism), laid out as insane lays them: tails down,
  beads 0.3 nm apart along the normal, leaflets 1 nm apart at the midplane, a
  random rotation about the normal and a random kick;
* water, antifreeze and counter-ions around the finished bilayer and proteins,
  given to insane as its solute (``-pbc keep -center``; its salt option
  neutralises the given charge).

Proteins come as a structure in the membrane frame (midplane at z = 0) and are
placed at their lateral positions; inner-leaflet lipids too close to a protein's
membrane anchor are pushed aside laterally.
"""

from __future__ import annotations

import io
import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mummi.adapters.membrane import Membrane
from mummi.core.lipids import CHANNELS, N_INNER

BEAD_SPACING_NM = 0.3  # insane's -bd
LEAFLET_GAP_NM = 1.0  # insane's -di
KICK_NM = 0.1  # insane's -rand
ANCHOR_CLEARANCE_NM = 0.6
MIN_DISTANCE_NM = 0.25  # between beads of different lipids as built; minimisation resolves the rest
MAX_PLACEMENT_ROUNDS = 100


@dataclass(frozen=True)
class Placed:
    """Molecules with coordinates (nm), in order."""

    names: list[str]
    resnames: list[str]
    sizes: list[int]
    xyz: np.ndarray

    def __add__(self, other: Placed) -> Placed:
        return Placed(self.names + other.names, self.resnames + other.resnames, self.sizes + other.sizes,
                      np.vstack([self.xyz.reshape(-1, 3), other.xyz.reshape(-1, 3)]))  # fmt: skip


def _insane():
    with warnings.catch_warnings():  # insane imports pkg_resources, which warns that it is deprecated
        warnings.simplefilter("ignore")
        from insane import core, lipids
        from insane.options import OPTIONS
    return core, lipids, OPTIONS


def lipid_templates(
    names: Sequence[str], definitions: str, diameter_nm: float
) -> dict[str, tuple[list[str], np.ndarray]]:
    """Bead names and insane's pseudo-coordinates (x, y in nm; z in bead levels) of each lipid in ``names``."""
    _, lipids, _ = _insane()
    table = lipids.get_lipids()
    table.add_from_stream(io.StringIO(definitions))
    missing = sorted(set(names) - set(table))
    if missing:
        raise ValueError(f"insane knows no lipid {missing}; define it in the force field's insane lipid file")
    templates = {}
    for name in set(names):
        beads = table[name].build(diam=diameter_nm)
        templates[name] = ([b[0] for b in beads], np.array([b[1:] for b in beads], dtype=np.float64))
    return templates


def place_lipids(
    membrane: Membrane, templates: dict, spacing_nm: float, mid_z: float, rng: np.random.Generator
) -> Placed:
    """Every lipid of ``membrane`` at its site, as insane builds one: outer leaflet up, inner leaflet down.

    Sites are jittered (unlike insane's grid), so neighbours may clash; a clashing lipid is turned
    and kicked again, further off its site each time, until no two beads of different lipids are
    closer than ``MIN_DISTANCE_NM``.
    """
    names, resnames, sizes, shapes, sites = [], [], [], [], []
    for c, (_, lipid) in enumerate(CHANNELS):
        beads, pseudo = templates[lipid]
        side = -1.0 if c < N_INNER else 1.0
        z = side * (LEAFLET_GAP_NM / 2 + (pseudo[:, 2] - pseudo[:, 2].min()) * BEAD_SPACING_NM) + mid_z
        for x, y in membrane.xy_nm[membrane.channel == c]:
            shapes.append(np.column_stack([pseudo[:, :2] * (2 / 3 * spacing_nm), z]))
            sites.append((x, y))
            names += beads
            resnames.append(lipid)
            sizes.append(len(beads))
    if not shapes:
        return Placed([], [], [], np.empty((0, 3)))
    owner = np.repeat(np.arange(len(sizes)), sizes)
    start = np.concatenate([[0], np.cumsum(sizes)])
    xyz = np.empty((len(owner), 3))
    clashing = np.arange(len(sizes))
    for attempt in range(MAX_PLACEMENT_ROUNDS):
        for i in clashing:
            reach = KICK_NM * attempt / 10  # retries move the lipid off its site, further each time
            site = np.add(sites[i], rng.uniform(-reach, reach, 2))
            xyz[start[i] : start[i + 1]] = _turned_and_kicked(shapes[i], site, rng)
        clashing = _clashing_lipids(xyz, owner, membrane.box_nm)
        if len(clashing) == 0:
            return Placed(names, resnames, sizes, xyz)
    raise ValueError(
        f"{len(clashing)} lipids still clash with a neighbour after {MAX_PLACEMENT_ROUNDS} tries; the membrane is too "
        "dense for its lipids: lower createsim.lipids_per_cell or createsim.jitter"
    )


def _turned_and_kicked(shape: np.ndarray, site: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    xy = shape[:, :2] @ rot.T + site + rng.uniform(0, KICK_NM, (len(shape), 2))
    return np.column_stack([xy, shape[:, 2]])


def _clashing_lipids(xyz: np.ndarray, owner: np.ndarray, box_nm: float) -> np.ndarray:
    """Lipids with a bead closer than ``MIN_DISTANCE_NM`` to a bead of another lipid (laterally periodic)."""
    from scipy.spatial import cKDTree

    wrapped = xyz.copy()
    wrapped[:, :2] %= box_nm
    wrapped[:, 2] -= wrapped[:, 2].min()
    tree = cKDTree(wrapped, boxsize=[box_nm, box_nm, wrapped[:, 2].max() + 2 * MIN_DISTANCE_NM + 1.0])
    pairs = tree.query_pairs(MIN_DISTANCE_NM, output_type="ndarray")
    pairs = pairs[owner[pairs[:, 0]] != owner[pairs[:, 1]]]
    return np.unique(owner[pairs])


def place_proteins(
    membrane: Membrane, names: list[str], residues: list[tuple[str, int]], frame_xyz: np.ndarray, mid_z: float
) -> Placed:
    """One copy of a protein (coordinates in the membrane frame; ``residues`` its (name, atom count) in order) at
    each RAS position, laterally centred there."""
    centred = frame_xyz - [*frame_xyz[:, :2].mean(axis=0), -mid_z]
    copies = [centred + [x, y, 0.0] for x, y in membrane.ras_xy_nm]
    n = len(copies)
    resnames, sizes = [r for r, _ in residues], [k for _, k in residues]
    return Placed(names * n, resnames * n, sizes * n, np.vstack(copies) if copies else np.empty((0, 3)))


def clear_anchors(lipids: Placed, proteins: Placed, mid_z: float, box_nm: float) -> Placed:
    """Inner-leaflet lipids pushed laterally away from protein beads that sit inside the inner leaflet."""
    inside = proteins.xyz[(proteins.xyz[:, 2] < mid_z) & (proteins.xyz[:, 2] > mid_z - 2.4)]
    if len(inside) == 0:
        return lipids
    xyz = lipids.xyz.copy()
    start = np.concatenate([[0], np.cumsum(lipids.sizes)])
    for a, b in zip(start[:-1], start[1:]):
        if xyz[a:b, 2].mean() > mid_z:
            continue
        centre = xyz[a:b, :2].mean(axis=0)
        d = centre - inside[:, :2]
        d -= box_nm * np.round(d / box_nm)
        dist = np.linalg.norm(d, axis=1)
        k = int(np.argmin(dist))
        if dist[k] < ANCHOR_CLEARANCE_NM:
            direction = d[k] / dist[k] if dist[k] > 1e-6 else np.array([1.0, 0.0])
            xyz[a:b, :2] += direction * (ANCHOR_CLEARANCE_NM - dist[k])
    return Placed(lipids.names, lipids.resnames, lipids.sizes, xyz)


def solvate(
    solute_gro: Path, charge: int, solvent: Sequence[str], salt_molar: float, seed: int
) -> tuple[Placed, np.ndarray, list[tuple[str, int]]]:
    """insane's solvent and ions around ``solute_gro`` (its shape kept, centred in the box).

    Returns the solvent, the solute's coordinates as insane moved them, and the solvent's
    molecule counts in order.
    """
    core, _, options = _insane()
    args = [
        "-f",
        str(solute_gro),
        "-o",
        str(solute_gro.with_name("solvated.gro")),
        "-pbc",
        "keep",
        "-center",
        "-salt",
        str(salt_molar),
        "-charge",
        str(charge),
    ]
    for entry in solvent:
        args += ["-sol", entry]
    random.seed(seed)  # insane draws from the random module
    _, solute, _, water, _, _ = core.old_main(**options.parse(args))
    solute_xyz = np.asarray(solute.coord, dtype=np.float64).reshape(-1, 3)
    water_xyz = np.asarray(water.coord, dtype=np.float64).reshape(-1, 3)
    water_names = [a[0] for a in water.atoms]
    counts: list[tuple[str, int]] = []
    for atom in water.atoms:  # one bead per solvent molecule; runs of one name are one [ molecules ] line
        if counts and counts[-1][0] == atom[1]:
            counts[-1] = (atom[1], counts[-1][1] + 1)
        else:
            counts.append((atom[1], 1))
    placed = Placed(water_names, [a[1] for a in water.atoms], [1] * len(water_names), water_xyz)
    return placed, solute_xyz, counts
