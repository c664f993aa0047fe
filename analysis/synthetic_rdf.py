"""A replay's hidden truth: the protein–lipid g(r) its simulated sims measure, and where its macro model starts.

On the simulated backend nothing is simulated, yet feedback rounds must run on the
real feedback code at full size and must be able to fail. So each channel ``c``
has a hidden true g(r) = exp(-a_c exp(-(r/w_c)²)) (a shell of lipids drawn to
or pushed from RAS), and the replay's macro model starts from another such
profile (b_c, v_c): the initial mismatch. An analysis that finishes writes RDF
counts drawn (Poisson) from the truth, its deviation from 1 spread from sim to sim; the macro
model's g(r) under potentials V is its starting g(r) times exp(-(V - V_start)/kT),
the dilute limit the feedback's Boltzmann inversion assumes. Everything is a pure
function of the campaign's seed.
"""

from __future__ import annotations

import numpy as np

from mummi.analysis.rdf import RDFCounts
from mummi.core.lipids import N_CHANNELS

_FRAMES = 100
"""Frames one simulated analysis covers."""
_PAIR_DENSITY = 0.5
"""Lipids per nm² of each channel around each RAS, per frame."""
_SIM_SPREAD = 0.1
"""Relative spread of a sim's deviation from g = 1 around the truth's (patches differ)."""


class HiddenProfiles:
    """The true and the starting g(r) of every channel, for one seed."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng([seed, 7])
        self._true = (rng.normal(0.0, 0.6, N_CHANNELS), rng.uniform(0.8, 2.5, N_CHANNELS))
        self._start = (rng.normal(0.0, 0.6, N_CHANNELS), rng.uniform(0.8, 2.5, N_CHANNELS))

    def md_gr(self, r_nm: np.ndarray) -> np.ndarray:
        """The truth (channels × radii)."""
        return _profile(*self._true, r_nm)

    def macro_start_gr(self, r_nm: np.ndarray) -> np.ndarray:
        """The macro model's g(r) before any feedback (channels × radii)."""
        return _profile(*self._start, r_nm)

    def counts(self, rng: np.random.Generator, edges_nm: np.ndarray) -> RDFCounts:
        """One sim's counts over ``_FRAMES`` frames, on the analysis bins ``edges_nm``."""
        edges = np.asarray(edges_nm, dtype=np.float64)
        centres, area = 0.5 * (edges[1:] + edges[:-1]), np.pi * np.diff(edges**2)
        density = np.full(N_CHANNELS, _PAIR_DENSITY * _FRAMES)
        amplitude = 1.0 + _SIM_SPREAD * rng.standard_normal((N_CHANNELS, 1))
        g = np.clip(1.0 + amplitude * (self.md_gr(centres) - 1.0), 0.0, None)
        expected = g * density[:, None] * area[None, :]
        return RDFCounts(edges, rng.poisson(expected).astype(np.int64), density, _FRAMES)


def _profile(depth: np.ndarray, width_nm: np.ndarray, r_nm: np.ndarray) -> np.ndarray:
    r = np.asarray(r_nm, dtype=np.float64)[None, :]
    return np.exp(-depth[:, None] * np.exp(-((r / width_nm[:, None]) ** 2)))
