"""The canonical distance, the exact index and the grouped exact search."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mummi.sampler.groups import grouped_knn
from mummi.sampler.index import brute_knn, make_index
from mummi.sampler.knn import cross_sq_dist, row_sq_dist, tree_sum

coords = st.floats(-1e3, 1e3, width=32)


def points(n: int, dim: int):
    return hnp.arrays(np.float32, (n, dim), elements=coords)


@settings(max_examples=40, deadline=None)
@given(x=points(9, 5), y=points(7, 5))
def test_canonical_distance_is_the_same_in_every_layout(x, y):
    cross = cross_sq_dist(x, y)
    rows = row_sq_dist(np.repeat(x, len(y), axis=0), np.tile(y, (len(x), 1))).reshape(len(x), len(y))
    broadcast = np.stack([row_sq_dist(x, yi[None, :]) for yi in y], axis=1)
    np.testing.assert_array_equal(cross, rows)
    np.testing.assert_array_equal(cross, broadcast)
    np.testing.assert_allclose(cross, ((x[:, None, :].astype(float) - y[None].astype(float)) ** 2).sum(-1), rtol=1e-12)


def test_tree_sum_equals_zero_padding_to_a_power_of_two():
    x = np.random.default_rng(0).random((4, 13))
    padded = np.hstack([x, np.zeros((4, 3))])
    expected = padded[:, :8] + padded[:, 8:]
    expected = expected[:, :4] + expected[:, 4:]
    expected = expected[:, :2] + expected[:, 2:]
    np.testing.assert_array_equal(tree_sum(x), expected[:, 0] + expected[:, 1])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 300), decimals=st.sampled_from([None, 0, 1]))
def test_flat_index_is_exact_including_ties(seed, n, decimals):
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(n, 6)).astype(np.float32)
    q = rng.normal(size=(40, 6)).astype(np.float32)
    if decimals is not None:
        s, q = s.round(decimals), q.round(decimals)
    index = make_index("flat", 6)
    index.add(s)
    for k in (1, 10):
        dist, pos = index.search(q, k)
        want_dist, want_pos = brute_knn(q, s, k)
        np.testing.assert_array_equal(dist, want_dist)
        np.testing.assert_array_equal(pos, want_pos)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10**6),
    n=st.integers(1, 400),
    decimals=st.sampled_from([None, 0, 1]),
    spread=st.sampled_from([1.0, 1e-20, 1e3]),
)
def test_grouped_search_is_exact_including_ties(seed, n, decimals, spread):
    """Many queries (so the index groups them), clustered; duplicates, ties, tiny and large coordinates."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, 15)) * 4
    q = (centres[rng.integers(5, size=700)] + rng.normal(size=(700, 15))) * spread
    s = rng.normal(size=(n, 15)) * 4 * spread
    if decimals is not None:
        q, s = (q / spread).round(decimals) * spread, (s / spread).round(decimals) * spread
    q, s = q.astype(np.float32), s.astype(np.float32)
    for k in (1, 10):
        dist, pos = grouped_knn(q, s, k)
        want_dist, want_pos = brute_knn(q, s, k)
        np.testing.assert_array_equal(dist, want_dist)
        np.testing.assert_array_equal(pos, want_pos)


def test_grouped_search_brings_lists_up_to_date():
    """Lists valid for a prefix of the points take in the rest, each from its own start."""
    rng = np.random.default_rng(7)
    q = rng.normal(size=(900, 15)).round(0).astype(np.float32)
    s = rng.normal(size=(300, 15)).round(0).astype(np.float32)
    start = rng.integers(0, 301, size=len(q))
    dist, pos = np.full((len(q), 3), np.inf), np.full((len(q), 3), -1)
    for i in range(len(q)):
        if start[i]:
            dist[i], pos[i] = brute_knn(q[i : i + 1], s[: start[i]], 3)
    grouped_knn(q, s, 3, dist, pos, start)
    want_dist, want_pos = brute_knn(q, s, 3)
    np.testing.assert_array_equal(dist, want_dist)
    np.testing.assert_array_equal(pos, want_pos)


def test_grouped_search_is_exact_among_many_equal_distances():
    """Hundreds of selected points at the same distance: the scan settles them before its work space runs out."""
    rng = np.random.default_rng(3)
    s = np.repeat(rng.normal(size=(4, 15)), 200, axis=0).astype(np.float32)[rng.permutation(800)]
    q = (s[rng.integers(800, size=600)] + rng.normal(size=(600, 15)) * 0.1).astype(np.float32)
    for k in (1, 10):
        dist, pos = grouped_knn(q, s, k)
        want_dist, want_pos = brute_knn(q, s, k)
        np.testing.assert_array_equal(dist, want_dist)
        np.testing.assert_array_equal(pos, want_pos)


def test_query_groups_go_to_their_nearest_centre_and_centres_are_group_means():
    """The clustering only affects speed, but a wrong assignment would slow every search silently."""
    from mummi.sampler.groups import _cluster, nearest_centre

    rng = np.random.default_rng(4)
    modes = rng.uniform(-20, 20, (6, 15)).astype(np.float32)
    q = (modes[rng.integers(6, size=3000)] + rng.normal(size=(3000, 15))).astype(np.float32)
    centres = q[rng.choice(len(q), 16, replace=False)]
    d2 = cross_sq_dist(q, centres)
    label = nearest_centre(q, centres)
    clear = np.sort(d2, axis=1)[:, 1] - d2.min(axis=1) > 1e-2 * d2.min(axis=1)  # no near tie
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(label[clear], d2.argmin(axis=1)[clear])
    found, label = _cluster(q, 6)
    for g in np.unique(label):  # after three rounds: near a fixed point, each centre its group's mean
        np.testing.assert_allclose(found[g], q[label == g].mean(axis=0), atol=0.5)
    assert np.all(_cluster(q, 1)[1] == 0)
