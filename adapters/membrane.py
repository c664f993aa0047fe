"""Patch to coarse-grained membrane: lipid counts per cell, lattice placement, RAS.

A patch (seed 000, Methods, "Patches") is a 5x5 grid of 14 lipid concentrations
plus the constellation of RAS around the central one. ``build_membrane`` turns it
into a list of lipids (channel and lateral position) and RAS positions that every
MD engine starts from:

* per cell and leaflet, ``lipids_per_cell`` lipids whose numbers follow the cell's
  composition (concentrations normalised by the leaflet's channel sum) by
  randomised rounding: each count is the floor or the ceiling of its expected
  value, the counts sum exactly to ``lipids_per_cell``, and their expectation is
  exactly the composition times ``lipids_per_cell``;
* lipids on a jittered square lattice inside their cell, types shuffled;
* the central RAS at the centre of the patch, the others at their offsets.

The patch comes as a :class:`~mummi.core.patch_input.PatchInput`, which the
coordinator writes into the sim folder before createsim runs.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mummi.core.atomic import atomic_savez
from mummi.core.lipids import N_CHANNELS, N_INNER
from mummi.core.patch_input import COARSE_CELLS, PatchInput

log = logging.getLogger(__name__)


# -------------------------------------------------------------------- membrane
@dataclass(frozen=True)
class Membrane:
    """A built membrane: lateral positions only; engines add the third dimension."""

    patch_id: str
    box_nm: float  # square edge
    channel: np.ndarray  # (n,) channel index of each lipid, in CHANNELS order
    xy_nm: np.ndarray  # (n, 2) lipid positions in [0, box)
    ras_xy_nm: np.ndarray  # (m, 2) RAS positions, the central one first
    ras_states: np.ndarray  # (m,)

    @property
    def n_lipids(self) -> int:
        return len(self.channel)

    def save(self, path: str | Path) -> Path:
        return atomic_savez(
            path,
            patch_id=np.array(self.patch_id),
            box_nm=self.box_nm,
            channel=self.channel,
            xy_nm=self.xy_nm,
            ras_xy_nm=self.ras_xy_nm,
            ras_states=self.ras_states,
        )

    @classmethod
    def load(cls, path: str | Path) -> Membrane:
        with np.load(path, allow_pickle=False) as d:
            return cls(
                str(d["patch_id"]), float(d["box_nm"]), d["channel"], d["xy_nm"], d["ras_xy_nm"], d["ras_states"]
            )


def compositions(coarse: np.ndarray) -> np.ndarray:
    """Per-cell composition: each leaflet's channels divided by their sum (5, 5, 14)."""
    comp = np.empty_like(coarse, dtype=np.float64)
    for sl in (slice(0, N_INNER), slice(N_INNER, N_CHANNELS)):
        part = coarse[..., sl]
        total = part.sum(axis=-1, keepdims=True)
        if np.any(total <= 0):
            raise ValueError("a coarse cell has no lipid in one leaflet (all concentrations zero)")
        comp[..., sl] = part / total
    return comp


def randomised_round(expected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Integers with the same sum as ``expected`` (which must be integral), each the
    floor or ceiling of its value, with expectation exactly ``expected``.

    Systematic sampling: one uniform offset u, count_i = #{k : k + u in (C_{i-1}, C_i]}
    over the cumulative sums C.
    """
    cum = np.concatenate([[0.0], np.cumsum(expected)])
    cum[-1] = round(cum[-1])  # exact total despite rounding in the sum
    u = rng.random()
    marks = np.floor(cum - u + 1.0)
    return np.diff(marks).astype(np.int64)


def lipid_counts(coarse: np.ndarray, lipids_per_cell: int, rng: np.random.Generator) -> np.ndarray:
    """Lipids of each channel in each cell (5, 5, 14); each leaflet sums to ``lipids_per_cell``."""
    comp = compositions(coarse)
    counts = np.empty(comp.shape, dtype=np.int64)
    for i in range(COARSE_CELLS):
        for j in range(COARSE_CELLS):
            for sl in (slice(0, N_INNER), slice(N_INNER, N_CHANNELS)):
                counts[i, j, sl] = randomised_round(lipids_per_cell * comp[i, j, sl], rng)
    return counts


def lattice(n: int, cell_nm: float, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` positions in a ``cell_nm`` square: random sites of the smallest square
    lattice with at least ``n`` sites, each displaced by up to ``jitter`` spacings."""
    side = max(1, math.ceil(math.sqrt(n)))
    spacing = cell_nm / side
    sites = rng.choice(side * side, size=n, replace=False)
    ij = np.stack([sites // side, sites % side], axis=1).astype(np.float64)
    return (ij + 0.5 + rng.uniform(-jitter, jitter, size=(n, 2))) * spacing


def build_membrane(
    patch: PatchInput, lipids_per_cell: int, cell_nm: float, jitter: float, rng: np.random.Generator
) -> Membrane:
    """The membrane of ``patch``: counts per cell, jittered lattice, RAS at the centre."""
    counts = lipid_counts(patch.coarse, lipids_per_cell, rng)
    box = COARSE_CELLS * cell_nm
    channels, positions = [], []
    for i in range(COARSE_CELLS):
        for j in range(COARSE_CELLS):
            origin = np.array([i, j], dtype=np.float64) * cell_nm
            for sl in (slice(0, N_INNER), slice(N_INNER, N_CHANNELS)):
                cell_channels = np.repeat(np.arange(N_CHANNELS)[sl], counts[i, j, sl])
                positions.append(origin + lattice(len(cell_channels), cell_nm, jitter, rng))
                channels.append(rng.permutation(cell_channels))
    channel = np.concatenate(channels)
    order = np.argsort(channel, kind="stable")  # engines want lipids grouped by channel
    xy = np.mod(np.concatenate(positions)[order], box)
    ras_xy, ras_states = _place_ras(patch, box)
    return Membrane(patch.patch_id, box, channel[order], xy, ras_xy, ras_states)


def _place_ras(patch: PatchInput, box: float) -> tuple[np.ndarray, np.ndarray]:
    centre = np.full(2, box / 2)
    inside = np.all(np.abs(patch.offsets_nm) < box / 2, axis=1)
    if not np.all(inside):
        log.warning(
            "patch %s: %d constellation RAS lie outside the %.1f nm membrane and are left out",
            patch.patch_id,
            int((~inside).sum()),
            box,
        )
    xy = np.vstack([centre, centre + patch.offsets_nm[inside]])
    states = np.concatenate([[patch.central_state], patch.states[inside]]).astype(np.int64)
    return xy, states
