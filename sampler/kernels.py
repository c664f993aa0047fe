"""Compiled inner loops of the DynIm sampler (numba, cached on disk after the first call).

Each selected point is merged into the k-NN list of every live candidate it comes
nearer to than the candidate's k-th neighbour. A float32 sum of squares over all
candidates (vectorised across candidates, summed in coordinate order) filters the
pairs; its relative rounding error is below ``(dim + 3) u`` for non-negative
terms, so the filter allows twice that. Every pair that passes is recomputed
canonically (:func:`mummi.sampler.knn.row_sq_dist`: float64, the same pairwise
tree over coordinates), and scores are :func:`mummi.sampler.knn.knn_scores`, bit
for bit, so the sampler agrees exactly with the numpy brute-force reference.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_U32 = float(np.finfo(np.float32).eps) / 2


def filter_factor(dim: int) -> float:
    """Squared k-th distances are widened by this factor before the float32 filter."""
    return 1.0 + 2.0 * (dim + 3) * _U32


@nb.njit(cache=True, inline="always")
def _tree_sum(v: np.ndarray, width: int) -> float:
    """Sum of ``v[:width]`` in the order of :func:`mummi.sampler.knn.tree_sum` (overwrites ``v``)."""
    while width > 1:
        half = 1
        while half * 2 < width:
            half *= 2
        for i in range(width - half):
            v[i] += v[half + i]
        width = half
    return v[0]


@nb.njit(cache=True)
def absorb(xt: np.ndarray, x64: np.ndarray, score: np.ndarray, dist: np.ndarray, pos: np.ndarray, limit: np.ndarray, src: int, s_pos: int, factor: float) -> None:
    """Merge candidate ``src`` (just selected, position ``s_pos`` in S) into the live candidates' lists.

    ``xt`` (dim, n) float32 and ``x64`` (n, dim) are the candidates; ``limit`` holds
    ``factor * kth^2 + 1e-30`` (``inf`` for lists not full, negative for dead slots).
    Scores are updated to ``|S| = s_pos + 1``.
    """
    dim, n = xt.shape
    k = dist.shape[1]
    m = min(k, s_pos + 1)
    acc = np.zeros(n, dtype=np.float32)
    for c in range(dim):
        sc = xt[c, src]
        row = xt[c]
        for i in range(n):
            t = row[i] - sc
            acc[i] += t * t
    s64 = x64[src].copy()
    scratch = np.empty(max(dim, k))
    for i in range(n):
        if acc[i] > limit[i]:
            continue
        for c in range(dim):
            t = x64[i, c] - s64[c]
            scratch[c] = t * t
        d = np.sqrt(_tree_sum(scratch, dim))
        if not d < dist[i, k - 1]:
            continue
        p = k - 1
        while p > 0 and dist[i, p - 1] > d:
            dist[i, p] = dist[i, p - 1]
            pos[i, p] = pos[i, p - 1]
            p -= 1
        dist[i, p] = d
        pos[i, p] = s_pos
        for j in range(m):
            scratch[j] = dist[i, j]
        score[i] = _tree_sum(scratch, m) / m
        limit[i] = factor * dist[i, k - 1] * dist[i, k - 1] + 1e-30


@nb.njit(cache=True)
def greedy_picks(xt: np.ndarray, x64: np.ndarray, score: np.ndarray, dist: np.ndarray, pos: np.ndarray, limit: np.ndarray, n_picks: int, n_selected: int, factor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Up to ``n_picks`` exact greedy picks: slots, scores when picked, nearest-selected distances."""
    slots = np.empty(n_picks, dtype=np.int64)
    scores = np.empty(n_picks)
    nearest = np.empty(n_picks)
    made = 0
    for t in range(n_picks):
        best, b = -np.inf, -1
        for i in range(score.shape[0]):
            if score[i] > best:  # the first of equal scores: the oldest candidate
                best, b = score[i], i
        if b < 0:
            break
        slots[t], scores[t], nearest[t] = b, best, dist[b, 0]
        score[b], limit[b] = -np.inf, -1.0
        absorb(xt, x64, score, dist, pos, limit, b, n_selected + t, factor)
        made += 1
    return slots[:made], scores[:made], nearest[:made]
