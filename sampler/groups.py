"""Exact k-NN search of a large batch of queries, group by group.

The queries are clustered (a few k-means rounds). For each group the selected
points are ordered by a lower bound of their distance to the group's centre c,
and each query q scans them in that order until the bound minus ``d(q, c)``
exceeds its k-th neighbour distance: by the triangle inequality no later point
can be nearer (:func:`~mummi.sampler.kernels.grouped_scan`). Latent streams are
clustered, so a query typically stops after a few per cent of S (about 7% at
|S| = 40,000 on the benchmark stream). The centre distances come from a float32
GEMM widened by its proven error bound (:func:`mummi.sampler.knn.slack`), the
query-centre distances from float32 sums widened by
:func:`~mummi.sampler.kernels.filter_factor`, and every bound carries a relative
margin of 1e-9, far above its rounding error; distances that decide are canonical.
"""

from __future__ import annotations

import numpy as np

from mummi.sampler.kernels import centre_means, filter_factor, gather_transposed, grouped_scan, nearest_by_products
from mummi.sampler.knn import slack, sq_norms

_QUERIES_PER_GROUP = 512
_MAX_GROUPS = 16
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
    # A float32 sum of squares is within a factor filter_factor of the exact value.
    offset = q - centres[label]
    reach = np.sqrt(np.einsum("ij,ij->i", offset, offset).astype(np.float64) * filter_factor(q.shape[1]) + 1e-30) * (
        1 + _MARGIN
    )
    order, s_lo = _sorted_bounds(_lower_bounds(centres, points))
    s_t = gather_transposed(points, order)
    grouped_scan(
        q,
        np.argsort(label.astype(np.int16), kind="stable"),  # 16-bit keys: a radix sort
        label,
        reach,
        order,
        s_lo,
        s_t,
        start.astype(np.int64),
        dist,
        pos,
        filter_factor(q.shape[1]),
    )
    return dist, pos


def _sorted_bounds(lo: np.ndarray, buckets: int = 1 << 16) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the points in increasing order of their bound (by 16-bit buckets: a
    radix sort), and nondecreasing lower bounds in that order (each row's suffix
    minimum, so still a bound for its point and every later one)."""
    low, high = lo.min(axis=1, keepdims=True), lo.max(axis=1, keepdims=True)
    key = ((lo - low) * ((buckets - 1) / np.maximum(high - low, 1e-300))).astype(np.uint16)
    order = np.argsort(key, axis=1, kind="stable")
    s_lo = np.take_along_axis(lo, order, axis=1)
    return order, np.minimum.accumulate(s_lo[:, ::-1], axis=1)[:, ::-1]


def _cluster(q: np.ndarray, n_groups: int, rounds: int = 3, sample: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Centres (float32) and the nearest centre of every query: a few k-means rounds on
    evenly spaced queries (the clustering only affects speed)."""
    if n_groups == 1:
        return q.mean(axis=0, dtype=np.float64).astype(np.float32)[None, :], np.zeros(len(q), dtype=np.int64)
    x = q[:: max(1, len(q) // sample)]
    centres = x[np.linspace(0, len(x) - 1, n_groups).astype(np.int64)]
    for _ in range(rounds):
        centres = centre_means(x, nearest_centre(x, centres), centres)
    return centres, nearest_centre(q, centres)


def nearest_centre(q: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """The row of ``centres`` nearest to each row of ``q`` (float32 expanded distances: speed only)."""
    return nearest_by_products(centres @ q.T, sq_norms(centres))


def _lower_bounds(centres: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Lower bounds (float64) of the distance of every centre to every point."""
    c_norm, p_norm = sq_norms(centres).astype(np.float64), sq_norms(points).astype(np.float64)
    norms = c_norm[:, None] + p_norm[None, :]
    expanded = (norms.astype(np.float32) - 2 * (centres @ points.T)).astype(np.float64)
    error = slack(points.shape[1]) * norms + 1e-30
    return np.sqrt(np.maximum(expanded - error, 0)) * (1 - _MARGIN)
