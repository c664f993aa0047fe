"""Lateral protein-lipid RDFs as raw counts that can be summed across simulations.

Per frame, every protein-lipid pair adds one count to the bin of its lateral
(x, y) minimum-image distance, in the row of the lipid's channel. Alongside the
counts, ``pair_density`` accumulates, per channel, sum over frames of
n_protein * n_lipid / area: the number of pairs per unit area an ideal (g = 1)
system would put in any annulus. Both are additive, so the counts and densities
of many simulations (weighted or not) are summed first and turned into
g(r) = counts / (pair_density * annulus area) once (:func:`gr_from_counts`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mummi.core.atomic import atomic_savez, atomic_savez_unsynced
from mummi.core.lipids import CHANNEL_NAMES, N_CHANNELS
from mummi.core.unreadable import reading


def bin_edges(bin_nm: float, r_max_nm: float) -> np.ndarray:
    n_bins = int(round(r_max_nm / bin_nm))
    return np.arange(n_bins + 1) * (r_max_nm / n_bins)


def lateral_distances(ref_xy: np.ndarray, xy: np.ndarray, box_xy: np.ndarray) -> np.ndarray:
    """(m, n) minimum-image distances in the plane between ``ref_xy`` (m, 2) and ``xy`` (n, 2)."""
    d = xy[None, :, :] - ref_xy[:, None, :]
    d -= box_xy * np.rint(d / box_xy)
    return np.sqrt(d[..., 0] ** 2 + d[..., 1] ** 2)


def frame_counts(r: np.ndarray, channel: np.ndarray, bin_nm: float, n_bins: int) -> np.ndarray:
    """(14, n_bins) counts of one frame from distances ``r`` (m, n) and lipid channels (n,)."""
    b = (r / bin_nm).astype(np.int64)
    inside = b < n_bins
    flat = (channel[None, :] * n_bins + b)[inside]
    return np.bincount(flat, minlength=N_CHANNELS * n_bins).reshape(N_CHANNELS, n_bins)


def gr_from_counts(counts: np.ndarray, edges_nm: np.ndarray, pair_density: np.ndarray) -> np.ndarray:
    """g(r) per channel: counts / (pair density * annulus area); NaN where a channel has no pairs."""
    area = np.pi * np.diff(edges_nm**2)
    expected = np.asarray(pair_density, dtype=np.float64)[:, None] * area[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(expected > 0, counts / expected, np.nan)


@dataclass
class RDFCounts:
    """Accumulated counts of one simulation (or a sum of several)."""

    edges_nm: np.ndarray
    counts: np.ndarray  # (14, n_bins) int64
    pair_density: np.ndarray  # (14,) float64, 1/nm^2 summed over frames
    frames_done: int = 0
    channel_mask: np.ndarray = field(default_factory=lambda: np.ones(N_CHANNELS, dtype=bool))
    names: tuple[str, ...] = CHANNEL_NAMES

    @classmethod
    def empty(cls, bin_nm: float, r_max_nm: float, channel_mask: np.ndarray | None = None) -> RDFCounts:
        edges = bin_edges(bin_nm, r_max_nm)
        mask = np.ones(N_CHANNELS, dtype=bool) if channel_mask is None else np.asarray(channel_mask, dtype=bool)
        return cls(edges, np.zeros((N_CHANNELS, len(edges) - 1), dtype=np.int64), np.zeros(N_CHANNELS), 0, mask)

    def __add__(self, other: RDFCounts) -> RDFCounts:
        if not np.array_equal(self.edges_nm, other.edges_nm):
            raise ValueError("cannot add RDF counts with different bins")
        return replace(
            self,
            counts=self.counts + other.counts,
            pair_density=self.pair_density + other.pair_density,
            frames_done=self.frames_done + other.frames_done,
            channel_mask=self.channel_mask | other.channel_mask,
        )

    def gr(self) -> np.ndarray:
        return gr_from_counts(self.counts, self.edges_nm, self.pair_density)

    def save(self, path: str | Path, *, durable: bool = True) -> Path:
        return (atomic_savez if durable else atomic_savez_unsynced)(
            path,
            counts=self.counts,
            pair_density=self.pair_density,
            frames_done=self.frames_done,
            edges_nm=self.edges_nm,
            channel_mask=self.channel_mask,
            names=np.array(self.names),
        )

    @classmethod
    def load(cls, path: str | Path) -> RDFCounts:
        with reading(path, "RDF counts file"), np.load(path, allow_pickle=False) as d:
            return cls(
                d["edges_nm"],
                d["counts"].astype(np.int64),
                d["pair_density"],
                int(d["frames_done"]),
                d["channel_mask"],
                tuple(str(n) for n in d["names"]),
            )


def sum_counts(items: Iterable[RDFCounts]) -> RDFCounts:
    """The sum of several simulations' counts (same bins)."""
    items = iter(items)
    total = next(items)
    for item in items:
        total = total + item
    return total
