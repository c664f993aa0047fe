"""The table of per-sim RDF counts: one weighted sum gives what weighting, normalising and rebinning each sim gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mummi.analysis.feedback import rebin, weighted_gr
from mummi.analysis.rdf import RDFCounts, bin_edges
from mummi.analysis.rdf_table import RdfShells, RdfTable
from mummi.analysis.synthetic_rdf import HiddenProfiles
from mummi.core.lipids import N_CHANNELS

FINE = bin_edges(0.1, 8.0)
SHELLS = np.linspace(0.0, 20 / 3, 5)


def random_counts(rng: np.random.Generator) -> RDFCounts:
    frames = int(rng.integers(1, 200))
    density = rng.uniform(0.1, 2.0, N_CHANNELS) * frames
    density[3] = 0.0  # a channel with no lipid: NaN either way
    counts = rng.poisson(5.0, (N_CHANNELS, len(FINE) - 1)).astype(np.int64)
    return RDFCounts(FINE, counts, density, frames)


def test_one_weighted_sum_equals_weighting_normalising_and_rebinning_each_sim() -> None:
    rng = np.random.default_rng(0)
    sims = [random_counts(rng) for _ in range(30)]
    weights = rng.uniform(0.1, 5.0, len(sims))
    shells = RdfShells(FINE, SHELLS)
    rows = np.stack([shells.row(s) for s in sims])
    expected = rebin(weighted_gr(zip(sims, weights)), 0.5 * (SHELLS[1:] + SHELLS[:-1]))
    np.testing.assert_allclose(shells.gr(rows, weights), expected, rtol=1e-10)
    assert np.isnan(shells.gr(rows, weights)[3]).all()


def test_a_sim_without_frames_has_no_row_and_other_bins_are_refused() -> None:
    shells = RdfShells(FINE, SHELLS)
    assert shells.row(RDFCounts.empty(0.1, 8.0)) is None
    with pytest.raises(ValueError, match="other bins"):
        shells.row(RDFCounts(bin_edges(0.2, 8.0), np.ones((N_CHANNELS, 40), dtype=np.int64), np.ones(N_CHANNELS), 1))


def test_rows_persist_once_each_and_a_cut_short_append_is_dropped(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    shells = RdfShells(FINE, SHELLS)
    table = RdfTable(tmp_path, shells, N_CHANNELS)
    sims = {f"sim-{i:06d}": random_counts(rng) for i in range(1500)}  # past the first buffer's capacity
    for sim_id, counts in sims.items():
        assert table.add(sim_id, counts)
    assert not table.add("sim-000000", sims["sim-000000"])
    before = table.rows().copy()
    with open(tmp_path / "rows.f64", "ab") as fh:  # a row written, its id not: the writer died in between
        fh.write(before[0].tobytes()[:100])
    again = RdfTable(tmp_path, shells, N_CHANNELS)
    assert again.sim_ids == list(sims) and "sim-000042" in again
    np.testing.assert_array_equal(again.rows(), before)
    assert (tmp_path / "rows.f64").stat().st_size == before.nbytes


def test_synthetic_counts_measure_the_hidden_truth() -> None:
    truth = HiddenProfiles(seed=5)
    rng = np.random.default_rng(2)
    shells = RdfShells(FINE, SHELLS)
    rows = np.stack([shells.row(truth.counts(rng, FINE)) for _ in range(200)])
    centres = 0.5 * (FINE[1:] + FINE[:-1])
    area = np.pi * np.diff(FINE**2)
    inside = (centres >= SHELLS[1]) & (centres < SHELLS[2])
    true_shell = (truth.md_gr(centres)[:, inside] * area[inside]).sum(axis=1) / area[inside].sum()
    np.testing.assert_allclose(shells.gr(rows, np.ones(len(rows)))[:, 1], true_shell, rtol=0.02)
    assert not np.allclose(truth.md_gr(centres), truth.macro_start_gr(centres), rtol=0.05)  # a mismatch to heal
