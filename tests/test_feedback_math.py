"""Feedback by iterative Boltzmann inversion: weighting, rebinning, convergence."""

from __future__ import annotations

import numpy as np
import pytest

from mummi.analysis.feedback import (
    BOLTZMANN_KJ_PER_MOL_K,
    correction_on,
    gr_distance,
    gr_rms,
    ibi_update,
    rebin,
    weighted_gr,
)
from mummi.analysis.rdf import RDFCounts

KT = BOLTZMANN_KJ_PER_MOL_K * 310.0


def rdf_from_gr(g: np.ndarray, edges: np.ndarray, frames: int, density: float = 1.0) -> RDFCounts:
    area = np.pi * np.diff(edges**2)
    counts = np.rint(g * density * frames * area * 1e4).astype(np.int64)
    return RDFCounts(edges, counts, np.full(g.shape[0], density * frames * 1e4), frames)


def test_weighted_gr_weights_sims_per_frame():
    edges = np.linspace(0, 4, 201)
    ones, twos = np.ones((14, 200)), 2 * np.ones((14, 200))
    combined = weighted_gr([(rdf_from_gr(ones, edges, frames=10), 3.0), (rdf_from_gr(twos, edges, frames=1000), 1.0)])
    assert combined.n_sims == 2
    np.testing.assert_allclose(combined.gr[:, 50:], 1.25, rtol=2e-3)  # (3*1 + 1*2) / 4, frames do not matter


def test_weighted_gr_needs_frames():
    edges = np.linspace(0, 4, 11)
    with pytest.raises(ValueError, match="no sim has analysed frames"):
        weighted_gr([(RDFCounts(edges, np.zeros((14, 10), dtype=np.int64), np.zeros(14), 0), 1.0)])


def test_rebin_averages_fine_bins_onto_coarse_radii():
    edges = np.linspace(0, 6, 301)
    centres = 0.5 * (edges[1:] + edges[:-1])
    g = np.tile(1 + np.exp(-centres), (14, 1))
    r = np.arange(0.5, 5.0, 0.5)
    coarse = rebin(weighted_gr([(rdf_from_gr(g, edges, 5), 1.0)]), r)
    assert coarse.shape == (14, len(r))
    np.testing.assert_allclose(coarse[0], 1 + np.exp(-r), rtol=0.02)


def test_ibi_halves_the_error_each_round_in_the_dilute_limit():
    r = np.linspace(0.5, 6, 30)
    truth = -2 * KT * np.exp(-((r / 1.5) ** 2))
    v = 1 * KT * np.exp(-((r / 2.0) ** 2))
    g_md = np.exp(-truth / KT)
    errors = []
    for _ in range(5):
        g_macro = np.exp(-v / KT)
        errors.append(gr_distance(g_macro[None], g_md[None], r))
        v = ibi_update(v[None], g_macro[None], g_md[None], 310.0, damping=0.5, max_step_kT=10)[0]
    assert all(b < a for a, b in zip(errors, errors[1:]))
    assert errors[3] < errors[0] / 3  # the error in V shrinks by (1 - damping) per round: 1/8 after 3


def test_ibi_leaves_unmeasured_radii_alone_and_limits_the_step():
    v = np.zeros((1, 3))
    out = ibi_update(v, np.array([[1.0, np.nan, 1.0]]), np.array([[np.exp(-50), 1.0, 0.5]]), 310.0, damping=1.0)
    assert out[0, 1] == 0.0  # no data
    assert out[0, 0] == 0.0  # below the floor: no statistics there
    assert out[0, 2] == pytest.approx(KT * np.log(2))
    big = ibi_update(
        v, np.array([[1.0, 1.0, 1.0]]), np.array([[1e-2, 1e-2, 1e-2]]), 310.0, damping=1.0, max_step_kT=2.0
    )
    assert np.allclose(big, 2 * KT)


def test_distances_are_zero_for_equal_tables_and_ignore_gaps():
    r = np.linspace(0.5, 5, 10)
    g = np.ones((2, 10))
    h = g.copy()
    h[1, 3] = np.nan
    assert gr_distance(g, h, r) == 0.0 and gr_rms(g, h, r) == 0.0
    assert gr_rms(g, g + 0.1, r) == pytest.approx(0.1)
    assert gr_distance(g, np.e * g, r) == pytest.approx(1.0)  # PMFs 1 kT apart everywhere


def test_a_correction_carries_onto_a_finer_table_and_fades_beyond():
    r = np.array([1.0, 2.0, 3.0])
    fine = np.arange(0.0, 5.0, 0.5)
    out = correction_on(fine, r, np.array([[1.0, 2.0, 4.0]]))
    np.testing.assert_allclose(out[0], [1, 1, 1, 1.5, 2, 3, 4, 2, 0, 0])
