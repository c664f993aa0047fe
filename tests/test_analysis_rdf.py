"""RDF counts: minimum-image lateral distances, binning, summing, g(r) normalisation, files."""

from __future__ import annotations

import numpy as np

from mummi.analysis.rdf import RDFCounts, frame_counts, gr_from_counts, lateral_distances, sum_counts
from mummi.core.lipids import N_CHANNELS


def test_lateral_distances_use_minimum_images() -> None:
    ref = np.array([[0.5, 0.5]])
    xy = np.array([[9.5, 0.5], [0.5, 9.0], [5.5, 5.5], [3.0, 4.5]])
    np.testing.assert_allclose(
        lateral_distances(ref, xy, np.array([10.0, 10.0])), [[1.0, 1.5, np.hypot(5, 5), np.hypot(2.5, 4)]]
    )


def test_frame_counts_bin_by_channel_and_drop_pairs_beyond_r_max() -> None:
    r = np.array([[0.01, 0.03, 0.05, 11.99, 12.0, 20.0]])
    channel = np.array([0, 0, 13, 5, 5, 2])
    counts = frame_counts(r, channel, 0.02, 600)
    assert counts.shape == (N_CHANNELS, 600) and counts.dtype == np.int64 and counts.sum() == 4
    assert counts[0, 0] == 1 and counts[0, 1] == 1 and counts[13, 2] == 1 and counts[5, 599] == 1


def _ideal_counts(rng: np.random.Generator, frames: int) -> RDFCounts:
    """Uniform random lipids around 2 RAS in a 30 nm box: g(r) = 1."""
    acc = RDFCounts.empty(0.1, 12.0)
    box = np.array([30.0, 30.0])
    channel = np.repeat(np.arange(N_CHANNELS), 40)
    for _ in range(frames):
        r = lateral_distances(rng.uniform(0, 30, (2, 2)), rng.uniform(0, 30, (len(channel), 2)), box)
        acc.counts += frame_counts(r, channel, 0.1, 120)
        acc.pair_density += 2 * np.bincount(channel, minlength=N_CHANNELS) / 900.0
        acc.frames_done += 1
    return acc


def test_gr_of_ideal_points_is_one_and_counts_sum_across_simulations() -> None:
    rng = np.random.default_rng(4)
    a, b = _ideal_counts(rng, 300), _ideal_counts(rng, 200)
    total = sum_counts([a, b])
    assert total.frames_done == 500
    np.testing.assert_array_equal(total.counts, a.counts + b.counts)
    g = total.gr()
    # 500 frames x 80 pairs per channel: about 1,900 counts per channel in the 11.9-12 nm bin
    assert abs(np.mean(g[:, 10:]) - 1.0) < 0.01
    coarse = gr_from_counts(
        total.counts.reshape(N_CHANNELS, 12, 10).sum(axis=2), total.edges_nm[::10], total.pair_density
    )
    # 1-nm bins beyond 1 nm: at least 400 counts per channel (5 standard errors: 0.25), 5,800 over channels
    np.testing.assert_allclose(coarse[:, 1:], 1.0, atol=0.25)
    np.testing.assert_allclose(coarse[:, 1:].mean(axis=0), 1.0, atol=0.07)


def test_gr_is_nan_for_channels_without_pairs() -> None:
    acc = RDFCounts.empty(0.5, 2.0)
    acc.pair_density[3] = 1.0
    g = acc.gr()
    assert np.all(np.isnan(g[0])) and np.all(g[3] == 0)


def test_counts_file_round_trip_is_atomic(tmp_path) -> None:
    acc = _ideal_counts(np.random.default_rng(5), 3)
    acc.channel_mask[8:] = False
    acc.save(tmp_path / "rdf_counts.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["rdf_counts.npz"]
    back = RDFCounts.load(tmp_path / "rdf_counts.npz")
    assert back.frames_done == 3 and back.names == acc.names and back.counts.dtype == np.int64
    np.testing.assert_array_equal(back.counts, acc.counts)
    np.testing.assert_array_equal(back.channel_mask, acc.channel_mask)
    np.testing.assert_allclose(back.edges_nm, np.arange(121) * 0.1)
