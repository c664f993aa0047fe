"""Exact k-NN proposals for a large batch of queries, searched group by group.

The queries are clustered (k-means). A group with centre c and radius r (the
largest distance of a member to c) is searched only against the points p that can
be among some member's k nearest: every member q has k points within
``u = (k-th smallest d(c, p)) + r`` (as ``d(q, p) <= d(c, p) + r``), and
``d(q, p) >= d(c, p) - r``, so a point with ``d(c, p) - r > u`` is farther than
every member's k-th neighbour. Members far from their centre (beyond the group's
97th percentile) would widen the group for all the others; they are searched
against every point instead.

The centre distances come from a float32 GEMM widened by its proven error bound
(:func:`mummi.sampler.knn.slack`) and every other bound carries a relative margin
of 1e-9, far above its rounding error, so no true k-nearest neighbour is ever
left out. Within a group FAISS proposes ``kk`` neighbours from the points left
in, and the caller certifies them as for a search over all points.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mummi.sampler.knn import row_sq_dist, slack, sq_norms

_MIN_QUERIES = 2048 * 10**6
_MIN_POINTS = 256
_QUERIES_PER_GROUP = 512
_MAX_GROUPS = 64
_INNER_QUANTILE = 0.97
_MARGIN = 1e-9

Proposals = tuple[np.ndarray, np.ndarray]


def worth_grouping(n_queries: int, n_points: int) -> bool:
    """Whether a batch is large enough for grouping to pay."""
    return n_queries >= _MIN_QUERIES and n_points >= _MIN_POINTS


def grouped_proposals(q: np.ndarray, points: np.ndarray, k: int, kk: int, search_all: Callable[[np.ndarray], Proposals]) -> Proposals:
    """FAISS's float32 squared distances and positions (n, kk) of proposed neighbours (-1: none).

    Each query's true k nearest points are either proposed or provably no nearer
    than its k-th proposal (see the module docstring); ``search_all`` proposes
    for the queries left out of the groups.
    """
    import faiss

    n_groups = int(np.clip(len(q) // _QUERIES_PER_GROUP, 2, _MAX_GROUPS))
    kmeans = faiss.Kmeans(q.shape[1], n_groups, niter=5, seed=1, max_points_per_centroid=128)
    kmeans.train(q)
    label = kmeans.index.search(q, 1)[1][:, 0]
    centres = kmeans.centroids
    radius = np.sqrt(row_sq_dist(q, centres[label])) * (1 + _MARGIN)
    near_lo, near_hi = _distance_bounds(centres, points)

    approx = np.full((len(q), kk), np.inf, dtype=np.float32)
    cand = np.full((len(q), kk), -1, dtype=np.int64)
    order = np.argsort(label, kind="stable")
    bounds = np.searchsorted(label[order], np.arange(n_groups + 1))
    outside = []
    for g in range(n_groups):
        members = order[bounds[g] : bounds[g + 1]]
        if len(members) == 0:
            continue
        inner = radius[members] <= np.quantile(radius[members], _INNER_QUANTILE)
        outside.append(members[~inner])
        members = members[inner]
        r = radius[members].max()
        u = (np.partition(near_hi[g], k - 1)[k - 1] + r) * (1 + _MARGIN)
        reach = np.flatnonzero(near_lo[g] - r <= u)
        m = min(kk, len(reach))
        dist, pos = faiss.knn(q[members], points[reach], m)
        approx[members, :m], cand[members, :m] = dist, reach[pos]
    rest = np.concatenate(outside)
    if len(rest):
        approx[rest], cand[rest] = search_all(q[rest])
    return approx, cand


def _distance_bounds(centres: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds (float64) of the distance of every centre to every point."""
    c_norm, p_norm = sq_norms(centres).astype(np.float64), sq_norms(points).astype(np.float64)
    expanded = (c_norm[:, None] + p_norm[None, :]).astype(np.float32) - 2 * (centres @ points.T)
    error = slack(points.shape[1]) * (c_norm[:, None] + p_norm[None, :]) + 1e-30
    expanded = expanded.astype(np.float64)
    lo = np.sqrt(np.maximum(expanded - error, 0)) * (1 - _MARGIN)
    hi = np.sqrt(expanded + error) * (1 + _MARGIN)
    return lo, hi
