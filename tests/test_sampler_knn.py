"""The canonical distance kernel, the float32 pair filter and the exact index."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mummi.sampler.index import brute_knn, make_index
from mummi.sampler.knn import (
    augment_points,
    augment_queries,
    close_pairs,
    cross_sq_dist,
    merge_knn,
    query_bounds,
    row_sq_dist,
    sq_norms,
    tree_sum,
)

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


@settings(max_examples=40, deadline=None)
@given(x=points(12, 15), y=points(30, 15), scale=st.sampled_from([1e-3, 1.0, 1e3]), shift=st.sampled_from([0.0, 1e4]))
def test_float32_filter_never_misses_a_pair_within_the_radius(x, y, scale, shift):
    x, y = (x * scale + shift).astype(np.float32), (y * scale + shift).astype(np.float32)
    d = np.sqrt(cross_sq_dist(x, y))
    radius = np.median(d, axis=1)  # many pairs exactly at or near the radius
    r, j = close_pairs(augment_queries(x), augment_points(y), query_bounds(radius, sq_norms(x), 15), block=64)
    found = np.zeros_like(d, dtype=bool)
    found[r, j] = True
    assert found[d <= radius[:, None]].all()


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


def test_merge_keeps_the_k_smallest_with_older_first_on_ties():
    rng = np.random.default_rng(1)
    k, n = 4, 50
    dist = np.sort(rng.integers(0, 6, (n, k)).astype(float), axis=1)
    pos = np.tile(np.arange(k), (n, 1))
    rows = np.sort(rng.integers(0, n, 400))  # some rows get more offers than the dense width
    new_dist = rng.integers(0, 6, len(rows)).astype(float)
    new_pos = k + np.arange(len(rows))
    want_d, want_p = dist.copy(), pos.copy()
    for i in range(n):
        d = np.concatenate([dist[i], new_dist[rows == i]])
        p = np.concatenate([pos[i], new_pos[rows == i]])
        order = np.lexsort((p, d))[:k]
        want_d[i], want_p[i] = d[order], p[order]
    changed = merge_knn(dist, pos, rows, new_dist, new_pos, width=3)
    np.testing.assert_array_equal(changed, np.unique(rows))
    np.testing.assert_array_equal(dist, want_d)
    np.testing.assert_array_equal(pos, want_p)


def test_float32_filter_near_underflow():
    """Tiny coordinates: float32 squares are subnormal, where only an absolute error bound holds."""
    x = np.zeros((1, 15), np.float32)
    y = np.full((3, 15), 1.9637418e-22, np.float32) * np.array([[1], [2], [3]], np.float32)
    d = np.sqrt(cross_sq_dist(x, y))[0]
    _, j = close_pairs(augment_queries(x), augment_points(y), query_bounds(d[1:2], sq_norms(x), 15))
    assert {0, 1} <= set(j.tolist())
