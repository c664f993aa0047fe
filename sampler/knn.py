"""Canonical distances and k-nearest-neighbour lists: the one numeric definition.

Every distance that decides a DynIm score, a selection or a weight is computed here,
in float64 from the float32 latents, by the same sequence of IEEE operations for a
pair whatever array it sits in: squared differences summed by a fixed pairwise tree
over the coordinates. So the incremental sampler and the brute-force reference get
bit-identical scores, and exact ties (duplicate latents) are broken by the documented
rule, never by rounding noise.

Fast paths (BLAS, FAISS) only *filter* pairs: they use the expansion
``|a|^2 + |b|^2 - 2 a.b`` in float32, whose error is bounded by :func:`slack`, and
every pair they cannot rule out is recomputed canonically.
"""

from __future__ import annotations

import numpy as np

#: float32 unit round-off.
_U32 = float(np.finfo(np.float32).eps) / 2


def tree_sum(x: np.ndarray) -> np.ndarray:
    """Sum over the last axis by a fixed pairwise tree (deterministic for any shape)."""
    width = x.shape[-1]
    size = 1 << max(width - 1, 0).bit_length()
    if size != width:
        pad = np.zeros(x.shape[:-1] + (size - width,), dtype=x.dtype)
        x = np.concatenate([x, pad], axis=-1)
    while x.shape[-1] > 1:
        half = x.shape[-1] // 2
        x = x[..., :half] + x[..., half:]
    return x[..., 0]


def row_sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Canonical squared distances between rows ``a[i]`` and ``b[i]`` (float64)."""
    diff = a.astype(np.float64) - b.astype(np.float64)
    return tree_sum(diff * diff)


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
    dist: np.ndarray, pos: np.ndarray, rows: np.ndarray, new_dist: np.ndarray, new_pos: np.ndarray
) -> np.ndarray:
    """Merge new neighbours into sorted k-NN rows in place; return the rows that changed.

    ``dist``/``pos`` are (n, k) lists sorted by (distance, position in S); entry ``j``
    of ``rows``/``new_dist``/``new_pos`` offers neighbour ``new_pos[j]`` at distance
    ``new_dist[j]`` to row ``rows[j]``. Equal distances keep the older selected point
    (smaller position) first, which makes the nearest selected point of a weight
    unique.
    """
    if len(rows) == 0:
        return rows
    k = dist.shape[1]
    changed, inverse = np.unique(rows, return_inverse=True)
    n = len(changed)
    # All offers per changed row: its k current entries plus its new ones.
    all_rows = np.concatenate([np.repeat(np.arange(n), k), inverse])
    all_dist = np.concatenate([dist[changed].ravel(), new_dist])
    all_pos = np.concatenate([pos[changed].ravel(), new_pos])
    order = np.lexsort((all_pos, all_dist, all_rows))
    all_rows, all_dist, all_pos = all_rows[order], all_dist[order], all_pos[order]
    starts = np.searchsorted(all_rows, np.arange(n))
    take = (starts[:, None] + np.arange(k)[None, :]).ravel()
    dist[changed] = all_dist[take].reshape(n, k)
    pos[changed] = all_pos[take].reshape(n, k)
    return changed
