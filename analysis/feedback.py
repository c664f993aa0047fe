"""Micro-to-macro feedback (seed 000, "Self-healing through in situ feedback").

The RDF counts of the sims, each weighted by the DynIm weight of its patch,
estimate the protein–lipid g(r) of the true distribution of patches. Iterative
Boltzmann inversion moves the macro model's RAS–lipid potentials towards it::

    V_new(r) = V_old(r) + damping * kT * ln(g_macro(r) / g_md(r))

where g_macro is the macro model's own radially averaged concentration around
RAS divided by the mean concentration. With g = exp(-V/kT) in the dilute limit,
each round removes the fraction ``damping`` of the remaining error.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from mummi.analysis.rdf import RDFCounts, gr_from_counts

BOLTZMANN_KJ_PER_MOL_K = 0.0083144626


@dataclass(frozen=True)
class WeightedGr:
    """A g(r) per channel on the bins ``edges_nm``, with the number of sims behind it."""

    edges_nm: np.ndarray
    gr: np.ndarray  # (channels, bins); NaN where no pairs were seen
    n_sims: int

    @property
    def centres_nm(self) -> np.ndarray:
        return 0.5 * (self.edges_nm[1:] + self.edges_nm[:-1])


def weighted_gr(items: Iterable[tuple[RDFCounts, float]]) -> WeightedGr:
    """g(r) of many sims: each sim's per-frame counts weighted by its DynIm weight, summed, normalised once."""
    edges: np.ndarray | None = None
    counts: np.ndarray | None = None
    density: np.ndarray | None = None
    n = 0
    for rdf, weight in items:
        if rdf.frames_done == 0:
            continue
        scale = float(weight) / rdf.frames_done
        if edges is None:
            edges, counts, density = rdf.edges_nm, np.zeros(rdf.counts.shape), np.zeros(rdf.pair_density.shape)
        elif not np.array_equal(edges, rdf.edges_nm):
            raise ValueError("cannot combine RDF counts with different bins")
        assert counts is not None and density is not None  # set together with edges
        counts += scale * rdf.counts
        density += scale * rdf.pair_density
        n += 1
    if edges is None:
        raise ValueError("no sim has analysed frames yet")
    assert counts is not None and density is not None
    return WeightedGr(edges, gr_from_counts(counts, edges, density), n)


def rebin(gr: WeightedGr, r_nm: np.ndarray) -> np.ndarray:
    """g(r) averaged over shells of width ``r_nm[1] - r_nm[0]`` around each ``r_nm`` (area-weighted).

    A fine MD histogram (0.02 nm bins) is thus compared with the macro model's
    coarser table (its grid spacing) on the macro model's own radii.
    """
    r_nm = np.asarray(r_nm, dtype=np.float64)
    half = 0.5 * (r_nm[1] - r_nm[0])
    lo, hi = np.maximum(r_nm - half, 0.0), r_nm + half
    centres, area = gr.centres_nm, np.diff(gr.edges_nm**2)
    out = np.full((gr.gr.shape[0], len(r_nm)), np.nan)
    for j, (a, b) in enumerate(zip(lo, hi)):
        inside = (centres >= a) & (centres < b)
        if not inside.any():
            continue
        g = gr.gr[:, inside]
        w = np.where(np.isfinite(g), area[inside], 0.0)
        with np.errstate(invalid="ignore"):
            out[:, j] = np.where(w.sum(axis=1) > 0, np.nansum(g * w, axis=1) / w.sum(axis=1), np.nan)
    return out


def ibi_correction(
    g_macro: np.ndarray,
    g_md: np.ndarray,
    temperature_K: float,
    damping: float,
    floor: float = 1e-3,
    max_step_kT: float = 2.0,
) -> np.ndarray:
    """One damped iterative-Boltzmann-inversion step, ``damping * kT * ln(g_macro / g_md)`` in kJ/mol.

    Where either g is missing or below ``floor`` (no statistics) the step is 0; each
    step is limited to ``max_step_kT`` so one noisy round can never throw the macro
    model off.
    """
    kT = BOLTZMANN_KJ_PER_MOL_K * temperature_K
    ok = np.isfinite(g_macro) & np.isfinite(g_md) & (g_macro > floor) & (g_md > floor)
    with np.errstate(divide="ignore", invalid="ignore"):
        step = np.where(ok, damping * kT * np.log(np.where(ok, g_macro, 1.0) / np.where(ok, g_md, 1.0)), 0.0)
    return np.clip(step, -max_step_kT * kT, max_step_kT * kT)


def ibi_update(
    potentials: np.ndarray, g_macro: np.ndarray, g_md: np.ndarray, temperature_K: float, damping: float, **limits: float
) -> np.ndarray:
    """Potentials tabulated on the same radii as the g(r) tables, after one :func:`ibi_correction`."""
    return potentials + ibi_correction(g_macro, g_md, temperature_K, damping, **limits)


def correction_on(r_table_nm: np.ndarray, r_nm: np.ndarray, correction: np.ndarray) -> np.ndarray:
    """A correction known at radii ``r_nm`` carried onto a finer potential table at ``r_table_nm``.

    Linear in between, the first value inside the first radius, and fading to 0
    over one shell beyond the last, so the table stays continuous.
    """
    r_nm = np.asarray(r_nm, dtype=np.float64)
    step = r_nm[1] - r_nm[0] if len(r_nm) > 1 else 1.0
    xs = np.concatenate([r_nm, [r_nm[-1] + step]])
    return np.stack(
        [np.interp(r_table_nm, xs, np.concatenate([row, [0.0]]), right=0.0) for row in np.atleast_2d(correction)]
    )


def gr_distance(
    g_macro: np.ndarray, g_md: np.ndarray, r_nm: np.ndarray, channels: Sequence[int] | None = None, floor: float = 1e-3
) -> float:
    """Distance between two g(r) tables: the area-weighted RMS of ln(g_macro / g_md).

    That is the RMS difference of the two potentials of mean force in units of kT,
    the quantity each Boltzmann-inversion round corrects; radii and channels where
    either g is missing or below ``floor`` are left out.
    """
    a, b, w = _rows(g_macro, g_md, r_nm, channels)
    ok = np.isfinite(a) & np.isfinite(b) & (a > floor) & (b > floor)
    if not ok.any():
        return float("nan")
    return float(np.sqrt(np.sum(w[ok] * np.log(a[ok] / b[ok]) ** 2) / np.sum(w[ok])))


def gr_rms(g_macro: np.ndarray, g_md: np.ndarray, r_nm: np.ndarray, channels: Sequence[int] | None = None) -> float:
    """Area-weighted RMS difference of the g(r) values themselves."""
    a, b, w = _rows(g_macro, g_md, r_nm, channels)
    ok = np.isfinite(a) & np.isfinite(b)
    if not ok.any():
        return float("nan")
    return float(np.sqrt(np.sum(w[ok] * (a[ok] - b[ok]) ** 2) / np.sum(w[ok])))


def _rows(g_macro, g_md, r_nm, channels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g_macro, g_md = np.asarray(g_macro), np.asarray(g_md)
    rows = list(range(g_macro.shape[0])) if channels is None else list(channels)
    a, b = g_macro[rows], g_md[rows]
    return a, b, np.broadcast_to(np.maximum(np.asarray(r_nm, dtype=np.float64), 1e-9), a.shape)
