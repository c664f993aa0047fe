"""Coverage of the latent space by a selection (seed 000, Figs. 4 and 6): 2-D marginal densities and KL divergences.

Densities are histograms of two latent dimensions over the box that all patches
span, normalised to probabilities. The KL divergences are those of seed 000's
Fig. 6, computed on these histograms: a sample's density against the uniform
density over the box (how evenly it covers the space; lower is flatter) and
against the density of all patches (how well it reproduces the true
distribution; lower is closer). Each is ``KL(sample || reference)``: the
reference is positive wherever the sample is (a selection is drawn from all
patches, which lie in the box), so every divergence is finite without smoothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_PAIRS = 5
"""Pairs of latent dimensions shown, as in seed 000's Fig. 4."""


def latent_pairs(dim: int, n_pairs: int = N_PAIRS) -> list[tuple[int, int]]:
    """Disjoint pairs of consecutive dimensions, (0, 1), (2, 3), ...; at most ``n_pairs``."""
    return [(2 * i, 2 * i + 1) for i in range(min(n_pairs, dim // 2))]


@dataclass(frozen=True)
class Box:
    """The range each latent dimension spans over all patches."""

    lo: np.ndarray
    hi: np.ndarray

    @classmethod
    def around(cls, x: np.ndarray) -> Box:
        lo, hi = x.min(axis=0).astype(np.float64), x.max(axis=0).astype(np.float64)
        flat = hi <= lo
        return cls(lo, np.where(flat, lo + 1.0, hi))  # a dimension without spread gets a unit range

    def normalise(self, x: np.ndarray) -> np.ndarray:
        """``x`` scaled to [0, 1] per dimension."""
        return (x - self.lo) / (self.hi - self.lo)


def density_2d(
    x: np.ndarray, pair: tuple[int, int], box: Box, bins: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """Probability of each of ``bins`` x ``bins`` cells of ``box`` in dimensions ``pair`` (sums to 1; zeros if empty).

    Cell ``[a, b]`` holds dimension ``pair[0]`` in its ``a``-th interval and ``pair[1]`` in its ``b``-th; a point
    on the box's upper edge counts in the last cell (as :func:`numpy.histogram2d` counts it).
    """
    cells = [
        np.clip(((x[:, d] - box.lo[d]) / (box.hi[d] - box.lo[d]) * bins).astype(np.int64), 0, bins - 1) for d in pair
    ]
    counts = np.bincount(cells[0] * bins + cells[1], weights=weights, minlength=bins * bins).reshape(bins, bins)
    total = counts.sum()
    return counts / total if total > 0 else counts.astype(np.float64)


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """``KL(p || q) = sum p ln(p / q)`` in nats over the cells where ``p > 0``; inf where q is 0 there."""
    p, q = np.ravel(p), np.ravel(q)
    where = p > 0
    if not where.any():
        return float("nan")
    if np.any(q[where] <= 0):
        return float("inf")
    return float(np.sum(p[where] * np.log(p[where] / q[where])))


#: The four comparisons of seed 000's Fig. 6: (name, sample, reference).
COMPARISONS: tuple[tuple[str, str, str], ...] = (
    ("random vs uniform", "random", "uniform"),
    ("random vs all", "random", "all"),
    ("DynIm vs uniform", "dynim", "uniform"),
    ("weighted DynIm vs all", "weighted", "all"),
)


def divergences(densities: dict[str, np.ndarray]) -> dict[str, float]:
    """The :data:`COMPARISONS` of one pair's densities (keys ``all``, ``random``, ``dynim``, ``weighted``)."""
    reference = dict(densities)
    reference["uniform"] = np.full_like(densities["all"], 1.0 / densities["all"].size)
    return {name: kl_divergence(densities[sample], reference[ref]) for name, sample, ref in COMPARISONS}
