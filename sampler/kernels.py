"""Compiled inner loops of the DynIm sampler (numba, cached on disk after the first call).

:func:`greedy_picks` merges each selected point into the k-NN list of every live
candidate it comes nearer to than the candidate's k-th neighbour;
:func:`grouped_scan` searches new points' neighbours (:mod:`mummi.sampler.groups`).
Both filter pairs with float32 sums of squares (vectorised across points, summed
in coordinate order), whose relative rounding error is below ``(dim + 3) u`` for
non-negative terms, so the filters allow twice that. Every pair that passes is recomputed
canonically (:func:`mummi.sampler.knn.row_sq_dist`: float64, the same pairwise
tree over coordinates), and scores are :func:`mummi.sampler.knn.knn_scores`, bit
for bit, so the sampler agrees exactly with the numpy brute-force reference.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_U32 = float(np.finfo(np.float32).eps) / 2


def sampler_threads(n: int | None = None) -> int:
    """Run the compiled loops on ``n`` threads (None: one per core numba found); returns the number in use."""
    most = nb.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
    nb.set_num_threads(min(n or most, most))
    return nb.get_num_threads()


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


@nb.njit(cache=True, inline="always")
def _canonical(a: np.ndarray, b64: np.ndarray, scratch: np.ndarray) -> float:
    """Canonical distance of float32 row ``a`` and float64 row ``b64``.

    :func:`mummi.sampler.knn.row_sq_dist`, then the root.
    """
    dim = b64.shape[0]
    for c in range(dim):
        t = np.float64(a[c]) - b64[c]
        scratch[c] = t * t
    return np.sqrt(_tree_sum(scratch, dim))


@nb.njit(cache=True, inline="always")
def _enter(dist: np.ndarray, pos: np.ndarray, i: int, d: float, p_new: int) -> bool:
    """Insert neighbour ``p_new`` at distance ``d`` into the sorted list i (by distance, then position).

    False if it does not enter.
    """
    k = dist.shape[1]
    if d > dist[i, k - 1] or (d == dist[i, k - 1] and p_new > pos[i, k - 1]):
        return False
    p = k - 1
    while p > 0 and (dist[i, p - 1] > d or (dist[i, p - 1] == d and pos[i, p - 1] > p_new)):
        dist[i, p] = dist[i, p - 1]
        pos[i, p] = pos[i, p - 1]
        p -= 1
    dist[i, p] = d
    pos[i, p] = p_new
    return True


@nb.njit(cache=True, inline="always")
def filter_limit(kth: float, factor: float) -> float:
    """The float32 filter's bound on squared distances for a k-th distance ``kth`` (a number or an array)."""
    return factor * kth * kth + 1e-30


_BLOCK = 2048  # candidates per parallel task


@nb.njit(cache=True, parallel=True)
def absorb(
    xt: np.ndarray,
    x: np.ndarray,
    age: np.ndarray,
    score: np.ndarray,
    dist: np.ndarray,
    pos: np.ndarray,
    limit: np.ndarray,
    src: int,
    s_pos: int,
    factor: float,
    block_best: np.ndarray,
) -> None:
    """Merge candidate ``src`` (just selected, position ``s_pos`` in S) into the live candidates' lists.

    Candidate slots hold ``xt`` (dim, n) and ``x`` (n, dim), float32, and their
    ``age`` (order of arrival); ``limit`` holds ``factor * kth^2 + 1e-30`` (``inf``
    for lists not full, negative for dead slots). Scores are updated to
    ``|S| = s_pos + 1``. ``block_best`` (one slot per block of ``_BLOCK``, see
    :func:`block_bests`) is kept up to date: scores only fall, so a block is
    searched again only when its best slot was hit or is ``src``.
    """
    dim, n = xt.shape
    k = dist.shape[1]
    m = min(k, s_pos + 1)
    s32 = x[src].copy()
    s64 = s32.astype(np.float64)
    for blk in nb.prange(len(block_best)):
        lo = blk * _BLOCK
        hi = min(lo + _BLOCK, n)
        acc = np.zeros(hi - lo, dtype=np.float32)
        for c in range(dim):
            sc = s32[c]
            row = xt[c, lo:hi]
            for i in range(hi - lo):
                t = row[i] - sc
                acc[i] += t * t
        scratch = np.empty(max(dim, k))
        stale = block_best[blk] == src
        for i in range(lo, hi):
            if acc[i - lo] > limit[i]:
                continue
            if not _enter(dist, pos, i, _canonical(x[i], s64, scratch), s_pos):
                continue
            for j in range(m):
                scratch[j] = dist[i, j]
            score[i] = _tree_sum(scratch, m) / m
            limit[i] = filter_limit(dist[i, k - 1], factor)
            stale = stale or i == block_best[blk]
        if stale:
            block_best[blk] = _best_slot(score, age, lo, hi)


@nb.njit(cache=True)
def _best_slot(score: np.ndarray, age: np.ndarray, lo: int, hi: int) -> int:
    """The slot in lo..hi with the highest score, the oldest of equal ones (-1 if all are -inf)."""
    best, slot = -np.inf, -1
    for i in range(lo, hi):
        if score[i] > best or (score[i] == best and slot >= 0 and age[i] < age[slot]):
            best, slot = score[i], i
    return slot


@nb.njit(cache=True)
def block_bests(score: np.ndarray, age: np.ndarray) -> np.ndarray:
    """The best slot of every block of ``_BLOCK`` slots."""
    n = score.shape[0]
    out = np.empty((n + _BLOCK - 1) // _BLOCK, dtype=np.int64)
    for blk in range(out.shape[0]):
        out[blk] = _best_slot(score, age, blk * _BLOCK, min(blk * _BLOCK + _BLOCK, n))
    return out


@nb.njit(cache=True)
def _overall_best(score: np.ndarray, age: np.ndarray, block_best: np.ndarray) -> int:
    best, slot = -np.inf, -1
    for b in block_best:
        if b >= 0 and (score[b] > best or (score[b] == best and slot >= 0 and age[b] < age[slot])):
            best, slot = score[b], b
    return slot


@nb.njit(cache=True)
def greedy_picks(
    xt: np.ndarray,
    x: np.ndarray,
    age: np.ndarray,
    score: np.ndarray,
    dist: np.ndarray,
    pos: np.ndarray,
    limit: np.ndarray,
    n_picks: int,
    n_selected: int,
    factor: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n_picks`` exact greedy picks: their slots and their scores when picked."""
    slots = np.empty(n_picks, dtype=np.int64)
    scores = np.empty(n_picks)
    block_best = block_bests(score, age)
    made = 0
    while made < n_picks:
        b = _overall_best(score, age, block_best)
        if b < 0:
            break
        slots[made], scores[made] = b, score[b]
        score[b], limit[b] = -np.inf, -1.0
        absorb(xt, x, age, score, dist, pos, limit, b, n_selected + made, factor, block_best)
        made += 1
    return slots[:made], scores[:made]


@nb.njit(cache=True, parallel=True)
def grouped_scan(
    q: np.ndarray,
    by_group: np.ndarray,
    group: np.ndarray,
    reach: np.ndarray,
    s_pos: np.ndarray,
    s_lo: np.ndarray,
    s_t: np.ndarray,
    s: np.ndarray,
    start: np.ndarray,
    dist: np.ndarray,
    pos: np.ndarray,
    factor: float,
) -> None:
    """Merge the selected points at positions >= ``start[i]`` into the sorted k-NN lists of query i.

    Query i (row of ``q``) belongs to ``group[i]`` and lies within ``reach[i]`` of
    its centre. For group g, ``s_pos[g]`` lists the selected points in an order of
    nondecreasing lower bounds ``s_lo[g]`` of their distance to the centre, and
    ``s_t[g]`` (dim, m) holds their coordinates in that order; ``s`` (m, dim) holds
    them by position; coordinates are float32. A point with ``s_lo - reach > kth``
    is farther than the k-th neighbour, so each scan stops at the first such
    chunk. Equal distances list the smaller position first. Queries are taken in
    the order ``by_group`` (group by group), so that a group's points stay in cache.
    """
    n, dim = q.shape
    chunk, per_task = 64, 64
    for task in nb.prange((n + per_task - 1) // per_task):
        acc = np.empty(chunk, dtype=np.float32)
        scratch = np.empty(dim)
        q64 = np.empty(dim)
        for t in range(task * per_task, min(task * per_task + per_task, n)):
            i = by_group[t]
            for c in range(dim):
                q64[c] = q[i, c]
            _scan_one(i, q, q64, group[i], reach[i], s_pos, s_lo, s_t, s, start[i], dist, pos, factor, acc, scratch)


@nb.njit(cache=True, inline="always")
def _scan_one(
    i: int,
    q: np.ndarray,
    q64: np.ndarray,
    g: int,
    reach: float,
    s_pos: np.ndarray,
    s_lo: np.ndarray,
    s_t: np.ndarray,
    s: np.ndarray,
    start: int,
    dist: np.ndarray,
    pos: np.ndarray,
    factor: float,
    acc: np.ndarray,
    scratch: np.ndarray,
) -> None:
    """Query i of :func:`grouped_scan` (``q64``: its row in float64; ``acc``, ``scratch``: work space)."""
    dim = q.shape[1]
    k = dist.shape[1]
    m = s.shape[0]
    chunk = acc.shape[0]
    kth = dist[i, k - 1]
    limit = filter_limit(kth, factor)
    for j0 in range(0, m, chunk):
        if s_lo[g, j0] - reach > kth:
            break
        j1 = min(j0 + chunk, m)
        acc[:] = 0
        for c in range(dim):
            qc = q[i, c]
            row = s_t[g, c, j0:j1]
            for j in range(j1 - j0):
                t = row[j] - qc
                acc[j] += t * t
        for j in range(j1 - j0):
            if acc[j] > limit:
                continue
            p_new = s_pos[g, j0 + j]
            if p_new < start:
                continue
            if _enter(dist, pos, i, _canonical(s[p_new], q64, scratch), p_new):
                kth = dist[i, k - 1]
                limit = filter_limit(kth, factor)


@nb.njit(cache=True, parallel=True)
def gather_transposed(s: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``out[g, c, j] = s[order[g, j], c]``: each group's points in its order, coordinates in rows."""
    n_groups, m = order.shape
    dim = s.shape[1]
    out = np.empty((n_groups, dim, m), dtype=s.dtype)
    for g in nb.prange(n_groups):
        for c in range(dim):
            for j in range(m):
                out[g, c, j] = s[order[g, j], c]
    return out
