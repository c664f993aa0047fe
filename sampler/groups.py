"""Exact k-NN search of a large batch of queries, group by group.

The queries are clustered (k-means). For each group the selected points are sorted
by their distance to the group's centre c, and each query q scans them in that
order until ``d(c, p) - d(q, c)`` exceeds its k-th neighbour distance: by the
triangle inequality no later point can be nearer (:func:`~mummi.sampler.kernels.grouped_scan`).
Latent streams are clustered, so a query typically stops after a small fraction
of S. The centre distances come from a float32 GEMM widened by its proven error
bound (:func:`mummi.sampler.knn.slack`) and every other bound carries a relative
margin of 1e-9, far above its rounding error; distances that decide are canonical.
"""

from __future__ import annotations

import numpy as np

from mummi.sampler.kernels import filter_factor, grouped_scan
from mummi.sampler.knn import row_sq_dist, slack, sq_norms

_QUERIES_PER_GROUP = 512
_MAX_GROUPS = 64
_MAX_SORTED = 1 << 22  # groups x selected points held sorted at once
_MARGIN = 1e-9


def worth_grouping(n_queries: int, n_points: int) -> bool:
    """Whether a batch is large enough for grouping to pay."""
    return n_queries >= _QUERIES_PER_GROUP and n_points >= 64


def grouped_knn(
    q: np.ndarray,
    points: np.ndarray,
    k: int,
    dist: np.ndarray | None = None,
    pos: np.ndarray | None = None,
    start: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Canonical k-NN lists (distances ascending, then positions) of ``q`` among the rows of ``points``.

    With ``dist``/``pos`` (n, k) given, they are lists valid for ``points[:start[i]]``
    and are brought up to date in place with the later rows.
    """
    q = np.ascontiguousarray(q, dtype=np.float32)
    points = np.ascontiguousarray(points, dtype=np.float32)
    n, m = len(q), len(points)
    if dist is None or pos is None:
        dist, pos = np.full((n, k), np.inf), np.full((n, k), -1, dtype=np.int64)
    if start is None:
        start = np.zeros(n, dtype=np.int64)
    n_groups = int(np.clip(min(n // _QUERIES_PER_GROUP, _MAX_SORTED // max(m, 1)), 1, _MAX_GROUPS))
    centres, label = _cluster(q, n_groups)
    reach = np.sqrt(row_sq_dist(q, centres[label])) * (1 + _MARGIN)
    lo = _lower_bounds(centres, points)
    order = np.argsort(lo, axis=1)
    s_lo = np.take_along_axis(lo, order, axis=1)
    s_t = np.ascontiguousarray(points[order].transpose(0, 2, 1))
    args = (q, q.astype(np.float64), label, reach, order, s_lo, s_t, points.astype(np.float64), start.astype(np.int64))
    grouped_scan(*args, dist, pos, filter_factor(q.shape[1]))
    return dist, pos


def _cluster(q: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres (float32) and the nearest centre of every query."""
    if n_groups == 1:
        return q.mean(axis=0, keepdims=True), np.zeros(len(q), dtype=np.int64)
    import faiss

    kmeans = faiss.Kmeans(q.shape[1], n_groups, niter=5, seed=1, max_points_per_centroid=128)
    kmeans.train(q)
    return kmeans.centroids, kmeans.index.search(q, 1)[1][:, 0].astype(np.int64)


def _lower_bounds(centres: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Lower bounds (float64) of the distance of every centre to every point."""
    c_norm, p_norm = sq_norms(centres).astype(np.float64), sq_norms(points).astype(np.float64)
    norms = c_norm[:, None] + p_norm[None, :]
    expanded = (norms.astype(np.float32) - 2 * (centres @ points.T)).astype(np.float64)
    error = slack(points.shape[1]) * norms + 1e-30
    return np.sqrt(np.maximum(expanded - error, 0)) * (1 - _MARGIN)
