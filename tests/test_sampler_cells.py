"""The cells' exact search of S, its early drops, and the guess of the cap's cut."""

from __future__ import annotations

import numpy as np
import pytest

from mummi.sampler.cap import cut_holds, likely_cut, sure_cut
from mummi.sampler.cells import Cells
from mummi.sampler.index import brute_knn
from mummi.sampler.knn import knn_scores, row_sq_dist
from mummi.sampler.streams import MixtureStream


@pytest.mark.parametrize(("decimals", "scale"), [(None, 1.0), (0, 1.0), (None, 1e-20), (1, 1e3)])
def test_cells_search_is_exact_as_selected_points_arrive(decimals, scale):
    """Exact against brute force while S grows (points join their cells, cells are trained again); ties, tiny
    and large coordinates."""
    stream = MixtureStream(seed=3)
    s, q = stream.draw(12_000), stream.draw(300)
    if decimals is not None:
        s, q = s.round(decimals), q.round(decimals)
    s, q = (s * scale).astype(np.float32), (q * scale).astype(np.float32)
    cells = Cells(15)
    for n in (3000, 3040, 4400, 4500, 7000, 12_000):
        dist, pos, dropped = cells.search(s[:n], q, 10)
        want_dist, want_pos = brute_knn(q, s[:n], 10)
        np.testing.assert_array_equal(dist, want_dist)
        np.testing.assert_array_equal(pos, want_pos)
        assert not dropped.any()
    start = cells._cell_start
    assert all((np.diff(cells._ds[a:b]) >= 0).all() for a, b in zip(start[:-1], start[1:]))
    np.testing.assert_array_equal(cells._members_t.T, s[cells._order])


def test_cells_drop_only_queries_whose_score_is_below_the_cut():
    stream = MixtureStream(seed=5)
    s, q = stream.draw(20_000), stream.draw(2000)
    want_dist, want_pos = brute_knn(q, s, 10)
    score = knn_scores(want_dist, len(s))
    give_up = float(np.quantile(score, 0.6))
    dist, pos, dropped = Cells(15).search(s, q, 10, give_up)
    assert 0.2 < dropped.mean() <= 0.6  # 60% score below the cut
    assert (score[dropped] < give_up).all()
    np.testing.assert_array_equal(dist[~dropped], want_dist[~dropped])
    np.testing.assert_array_equal(pos[~dropped], want_pos[~dropped])
    # A dropped query keeps a selected point near it: its canonical distance, at least the nearest one's.
    np.testing.assert_array_equal(dist[dropped, 0], np.sqrt(row_sq_dist(q[dropped], s[pos[dropped, 0]])))
    assert (dist[dropped, 0] >= want_dist[dropped, 0]).all()


@pytest.mark.parametrize(("decimals", "k"), [(None, 1), (0, 1), (None, 3), (1, 3)])
def test_cells_refine_brings_lists_up_to_date_with_the_later_points(decimals, k):
    """Lists valid for S[:start] (start 0: one point anywhere in S, as a dropped arrival keeps) become the
    lists of all of S; ties from rounded coordinates."""
    stream = MixtureStream(seed=7)
    s, q = stream.draw(3000), stream.draw(4500)  # queries in two regions of cell_refine
    if decimals is not None:
        s, q = s.round(decimals).astype(np.float32), q.round(decimals).astype(np.float32)
    rng = np.random.default_rng(0)
    start = rng.choice([0, 50, 1000, 2999] if k == 1 else [50, 1000, 2999], len(q))
    dist, pos = np.empty((len(q), k)), np.empty((len(q), k), dtype=np.int64)
    for n in np.unique(start):
        rows = start == n
        if n == 0:
            pos[rows] = rng.integers(0, len(s), (rows.sum(), 1))
            dist[rows] = np.sqrt(row_sq_dist(q[rows], s[pos[rows, 0]]))[:, None]
        else:
            dist[rows], pos[rows] = brute_knn(q[rows], s[:n], k)
    cells = Cells(15)
    cells.refine(s, q, dist, pos, start)
    want_dist, want_pos = brute_knn(q, s, k)
    np.testing.assert_array_equal(dist, want_dist)
    np.testing.assert_array_equal(pos, want_pos)


def test_likely_cut_is_the_highest_sample_score_that_still_fills_the_cap():
    alive = np.array([5.0, 4.0, 3.0, 2.0])
    sample = np.array([4.5, 3.5, 1.0])
    # 2 more arrivals per sample score: above 3.5, alive 2 + sample 2 * (1 + 0.8 * 2) = 7.2.
    assert likely_cut(alive, sample, 6, 7) == 3.5
    assert likely_cut(alive, sample, 6, 8) == 1.0
    assert likely_cut(alive, sample, 6, 100) == -np.inf
    assert cut_holds(alive, np.array([3.5, 1.0]), 3, 3.5)
    assert not cut_holds(alive, np.array([3.5, 1.0]), 4, 3.5)
    # The cut the exact scores prove: the cap-th highest of them.
    assert sure_cut(alive, np.array([3.5, 1.0]), 3) == 3.5
    assert sure_cut(alive, np.array([3.5, 1.0]), 4) == 3.0
    assert sure_cut(alive, np.array([3.5, 1.0]), 6) == 1.0
    assert sure_cut(alive, np.array([3.5, 1.0]), 7) == -np.inf
