"""Canonical distances and k-nearest-neighbour lists: the one numeric definition.

With the exact index, every distance that decides a DynIm score, a selection or a
weight is computed here, in float64 from the float32 latents, by the same sequence of
IEEE operations for a pair whatever array it sits in: squared differences summed by
a fixed pairwise tree over the coordinates. So the incremental sampler and the
brute-force reference get bit-identical scores, and exact ties (duplicate latents)
are broken by the documented rule, never by rounding noise.

Fast paths (BLAS, FAISS) only *filter* pairs: they use the expansion
``|a|^2 + |b|^2 - 2 a.b`` in float32, whose error is bounded by :func:`slack`, and
every pair they cannot rule out is recomputed canonically.
"""

from __future__ import annotations

import numpy as np

#: float32 unit round-off.
_U32 = float(np.finfo(np.float32).eps) / 2


def tree_sum(x: np.ndarray) -> np.ndarray:
    """Sum over the last axis by a fixed pairwise tree (deterministic for any shape).

    Equivalent to zero-padding the axis to a power of two and adding halves.
    """
    while x.shape[-1] > 1:
        width = x.shape[-1]
        half = 1 << ((width - 1).bit_length() - 1)
        folded = x[..., :half].copy()
        folded[..., : width - half] += x[..., half:]
        x = folded
    return x[..., 0]


def row_sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Canonical squared distances between rows ``a[i]`` and ``b[i]`` (float64; ``b`` may broadcast)."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    diff *= diff
    return tree_sum(diff)


def cross_sq_dist(a: np.ndarray, b: np.ndarray, chunk: int = 1 << 21) -> np.ndarray:
    """Canonical squared distances between every row of ``a`` and every row of ``b``: (n, m) float64."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    out = np.empty((len(a), len(b)), dtype=np.float64)
    rows = max(1, chunk // max(1, len(b) * a.shape[1]))
    for start in range(0, len(a), rows):
        diff = a64[start : start + rows, None, :] - b64[None, :, :]
        out[start : start + rows] = tree_sum(diff * diff)
    return out


def slack(dim: int) -> float:
    """Relative error bound of a float32 expanded squared distance.

    ``|e - d^2| <= slack(dim) * (|a|^2 + |b|^2)`` for ``e = |a|^2 + |b|^2 - 2 a.b``
    with norms and dot product rounded in float32 in any summation order (first-order
    bound ``(2 dim + 4) u``), doubled for safety.
    """
    return 2.0 * (2 * dim + 4) * _U32


def sq_norms(x: np.ndarray) -> np.ndarray:
    """Squared norms in float32, as the filters use them."""
    x = np.asarray(x, dtype=np.float32)
    return np.einsum("ij,ij->i", x, x)


def augment_queries(x: np.ndarray) -> np.ndarray:
    """Rows ``[-2 x, 1]`` (float32) for :func:`close_pairs`."""
    x = np.asarray(x, dtype=np.float32)
    return np.hstack([-2 * x, np.ones((len(x), 1), dtype=np.float32)])  # -2x is exact


def augment_points(y: np.ndarray) -> np.ndarray:
    """Rows ``[y, (1 - slack) |y|^2]`` (float32) for :func:`close_pairs`."""
    y = np.asarray(y, dtype=np.float32)
    return np.hstack([y, ((1 - slack(y.shape[1])) * sq_norms(y))[:, None]])


def query_bounds(radius: np.ndarray, x_norm: np.ndarray, dim: int) -> np.ndarray:
    """``radius^2 - (1 - slack) |x|^2``, rounded up to float32, for :func:`close_pairs`.

    The relative error bound fails where float32 underflows, so 1e-30 is added.
    """
    bound = radius.astype(np.float64) ** 2 - (1 - slack(dim)) * x_norm.astype(np.float64) + 1e-30
    return np.nextafter(bound.astype(np.float32), np.float32(np.inf))


def close_pairs(
    xa: np.ndarray, ya: np.ndarray, bound: np.ndarray, skip: np.ndarray | None = None, block: int = 1 << 21
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i, j) whose canonical distance may be within query i's radius.

    ``xa`` = :func:`augment_queries` (n, d+1), ``ya`` = :func:`augment_points` (m, d+1),
    ``bound`` = :func:`query_bounds`. One GEMM gives ``-2 x.y + (1 - slack) |y|^2``,
    tested against ``r^2 - (1 - slack) |x|^2``: the float32 expansion of
    ``|x - y|^2 <= r^2`` with its rounding error (:func:`slack`, whose factor 2 also
    covers the extra roundings here) on the safe side. So no pair within the radius
    is ever missed; the pairs returned (rows ascending, then j ascending; ``j <
    skip[i]`` left out) are recomputed canonically by the caller.
    """
    yt = np.ascontiguousarray(ya.T)
    rows = max(1, block // max(1, len(ya)))
    out_r, out_j = [], []
    for start in range(0, len(xa), rows):
        g = xa[start : start + rows] @ yt
        b = bound[start : start + rows]
        hit = np.flatnonzero(g.min(axis=1) <= b) if len(ya) > 1 else np.flatnonzero(g[:, 0] <= b)
        if len(hit) == 0:
            continue
        keep = g[hit] <= b[hit, None]
        if skip is not None:
            keep &= np.arange(len(ya))[None, :] >= skip[start + hit, None]
        r, j = np.nonzero(keep)
        out_r.append(hit[r] + start)
        out_j.append(j)
    if not out_r:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    return np.concatenate(out_r), np.concatenate(out_j)


def knn_scores(knn: np.ndarray, n_selected: int) -> np.ndarray:
    """DynIm scores from sorted k-NN distance rows: the mean of the first ``min(k, |S|)``.

    Missing neighbours (while ``|S| < k``) are ``inf`` in ``knn``; with no selected
    point at all every score is ``inf``.
    """
    m = min(knn.shape[1], n_selected)
    if m == 0:
        return np.full(len(knn), np.inf)
    return tree_sum(knn[:, :m]) / m


def merge_knn(
    dist: np.ndarray, pos: np.ndarray, rows: np.ndarray, new_dist: np.ndarray, new_pos: np.ndarray, width: int = 32
) -> np.ndarray:
    """Merge new neighbours into sorted k-NN rows in place; return the rows offered any.

    ``dist``/``pos`` are (n, k) lists sorted by (distance, position in S); entry ``j``
    of ``rows``/``new_dist``/``new_pos`` offers neighbour ``new_pos[j]`` at distance
    ``new_dist[j]`` to row ``rows[j]``. Offers must come after the row's current
    entries in S and, per row, in increasing position (as ``np.nonzero`` yields
    them). Equal distances keep the older selected point first, which makes the
    nearest selected point of a weight unique.
    """
    if len(rows) == 0:
        return rows
    if np.any(rows[1:] < rows[:-1]):
        order = np.argsort(rows, kind="stable")
        rows, new_dist, new_pos = rows[order], new_dist[order], new_pos[order]
    offered, start, counts = _groups(rows)
    wide = np.repeat(counts > width, counts)
    if wide.any():  # rows with many offers (while S is small): one sort of all their entries
        _merge_sorted(dist, pos, rows[wide], new_dist[wide], new_pos[wide])
        keep = ~wide
        rows, new_dist, new_pos = rows[keep], new_dist[keep], new_pos[keep]
        if len(rows) == 0:
            return offered
        _, start, counts = _groups(rows)
    # Offer r of every row is inserted in round r; rows are distinct within a round.
    rank = np.arange(len(rows)) - np.repeat(start, counts)
    order = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[order], np.arange(int(counts.max()) + 1))
    for r in range(len(bounds) - 1):
        take = order[bounds[r] : bounds[r + 1]]
        _insert_one(dist, pos, rows[take], new_dist[take], new_pos[take])
    return offered


def _insert_one(dist: np.ndarray, pos: np.ndarray, rows: np.ndarray, new_dist: np.ndarray, new_pos: np.ndarray) -> None:
    """Insert one offer into each of the distinct ``rows`` (after its equal entries: offers are newer)."""
    d, p = dist[rows], pos[rows]
    at = np.count_nonzero(d <= new_dist[:, None], axis=1)
    enters = at < d.shape[1]
    if not enters.all():
        rows, d, p, at, new_dist, new_pos = rows[enters], d[enters], p[enters], at[enters], new_dist[enters], new_pos[enters]
    col = np.arange(d.shape[1])[None, :]
    after, here = col > at[:, None], col == at[:, None]
    d[:, 1:] = np.where(after[:, 1:], d[:, :-1], d[:, 1:])
    p[:, 1:] = np.where(after[:, 1:], p[:, :-1], p[:, 1:])
    d[here], p[here] = new_dist, new_pos
    dist[rows], pos[rows] = d, p


def _groups(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values, start indices and lengths of the runs of equal values in sorted ``rows``."""
    start = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    return rows[start], start, np.diff(np.r_[start, len(rows)])


def _merge_sorted(dist: np.ndarray, pos: np.ndarray, rows: np.ndarray, new_dist: np.ndarray, new_pos: np.ndarray) -> None:
    """Many offers per row: one lexicographic sort of (row, distance, position) over all entries."""
    changed, inverse = np.unique(rows, return_inverse=True)
    n, k = len(changed), dist.shape[1]
    all_rows = np.concatenate([np.repeat(np.arange(n), k), inverse])
    all_dist = np.concatenate([dist[changed].ravel(), new_dist])
    all_pos = np.concatenate([pos[changed].ravel(), new_pos])
    order = np.lexsort((all_pos, all_dist, all_rows))
    take = order.reshape(-1)[(np.searchsorted(all_rows[order], np.arange(n))[:, None] + np.arange(k)).ravel()]
    dist[changed] = all_dist[take].reshape(n, k)
    pos[changed] = all_pos[take].reshape(n, k)
