"""Compiled inner loops of the DynIm sampler (numba, cached on disk after the first call).

:func:`greedy_picks` merges each selected point into the k-NN list of every live
candidate it comes nearer to than the candidate's k-th neighbour;
:func:`grouped_scan` searches new points' neighbours (:mod:`mummi.sampler.groups`),
:func:`cell_knn` and :func:`cell_refine` among the cells of S (:mod:`mummi.sampler.cells`).
All filter pairs with float32 sums of squares (vectorised across points, summed
in coordinate order), whose relative rounding error is below ``(dim + 3) u`` for
non-negative terms, so the filters allow twice that. Every pair that passes is recomputed
canonically (:func:`mummi.sampler.knn.row_sq_dist`: float64, the same pairwise
tree over coordinates), and scores are :func:`mummi.sampler.knn.knn_scores`, bit
for bit, so the sampler agrees exactly with the numpy brute-force reference.
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np

from mummi.sampler.layout import BLOCK, shell_gaps, spatial_order

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
def filter_limit(kth: Any, factor: float) -> Any:
    """The float32 filter's bound on squared distances for a k-th distance ``kth`` (a number or an array)."""
    return factor * kth * kth + 1e-30


@nb.njit(cache=True, parallel=True)
def absorb(
    xb: np.ndarray,
    x: np.ndarray,
    age: np.ndarray,
    score: np.ndarray,
    dist: np.ndarray,
    pos: np.ndarray,
    limit: np.ndarray,
    centre_t: np.ndarray,
    inner: np.ndarray,
    outer: np.ndarray,
    most: np.ndarray,
    src: int,
    s_pos: int,
    factor: float,
    block_best: np.ndarray,
    threads: int,
) -> None:
    """Merge candidate ``src`` (just selected, position ``s_pos`` in S) into the live candidates' lists.

    Candidate slots hold ``x`` (n, dim) and ``xb`` (the same by block: n / BLOCK, dim, BLOCK), float32, and their
    ``age`` (order of arrival); ``limit`` holds ``factor * kth^2 + 1e-30`` (``inf``
    for lists not full, negative for dead slots). The slots form blocks of
    :data:`~mummi.sampler.layout.BLOCK` with shells ``centre_t`` (their centres, a column
    each), ``inner``, ``outer`` and ``most``, an upper bound of their limits
    (:func:`~mummi.sampler.layout.block_shells`; the shells' gaps to ``src``: :func:`~mummi.sampler.layout.shell_gaps`):
    a block whose shell is farther from ``src`` than ``sqrt(most)`` is skipped, and
    ``most`` is tightened in every block whose lists change. Scores are updated to
    ``|S| = s_pos + 1``. ``block_best`` (the best slot of every block, see
    :func:`block_bests`) is kept up to date: scores only fall, so a block is
    searched again only when its best slot was hit or is ``src``. The blocks are shared
    out to ``threads`` tasks (the compiled loops' thread count).
    """
    dim = x.shape[1]
    k = dist.shape[1]
    m = min(k, s_pos + 1)
    s32 = x[src].copy()
    s64 = s32.astype(np.float64)
    active = np.empty(len(block_best), dtype=np.int64)
    n_active = 0
    gap = shell_gaps(s64, centre_t, inner, outer)
    for blk in range(len(block_best)):
        if block_best[blk] == src or (most[blk] >= 0 and gap[blk] ** 2 <= most[blk]):
            active[n_active] = blk
            n_active += 1
    accs = np.empty((threads, BLOCK), dtype=np.float32)
    hits = np.empty((threads, BLOCK), dtype=np.int64)
    works = np.empty((threads, max(dim, k), BLOCK))
    for t in nb.prange(threads):  # every thread takes every threads-th active block
        acc, hit, work = accs[t], hits[t], works[t]
        for a in range(t, n_active, threads):
            _absorb_block(xb[active[a]], age, score, dist, pos, limit, most, active[a], s32, s64, s_pos, m, factor,
                          block_best, src, acc, hit, work)  # fmt: skip


@nb.njit(cache=True, inline="always")
def _absorb_block(
    rows: np.ndarray,
    age: np.ndarray,
    score: np.ndarray,
    dist: np.ndarray,
    pos: np.ndarray,
    limit: np.ndarray,
    most: np.ndarray,
    blk: int,
    s32: np.ndarray,
    s64: np.ndarray,
    s_pos: int,
    m: int,
    factor: float,
    block_best: np.ndarray,
    src: int,
    acc: np.ndarray,
    hit: np.ndarray,
    work: np.ndarray,
) -> None:
    """:func:`absorb` in block ``blk``, whose latents are ``rows`` (dim, BLOCK) (``acc``, ``hit``, ``work``: the
    thread's work space)."""
    dim = rows.shape[0]
    k = dist.shape[1]
    lo = blk * BLOCK
    hi = lo + BLOCK
    acc[:] = 0
    for c in range(dim):
        sc = s32[c]
        row = rows[c]
        for i in range(BLOCK):
            d = row[i] - sc
            acc[i] += d * d
    n_hit = 0
    for i in range(BLOCK):
        hit[n_hit] = i
        n_hit += acc[i] <= limit[lo + i]
    # Canonical squared distances of the slots that passed (knn.row_sq_dist), a column each.
    for c in range(dim):
        sc64 = s64[c]
        row = rows[c]
        for j in range(n_hit):
            d64 = np.float64(row[hit[j]]) - sc64
            work[c, j] = d64 * d64
    _tree_sum_columns(work, dim, n_hit)
    n_in = 0
    for j in range(n_hit):
        i = lo + hit[j]
        if _enter(dist, pos, i, np.sqrt(work[0, j]), s_pos):
            hit[n_in] = i
            n_in += 1
    # Scores of the lists that changed (knn.knn_scores).
    for r in range(m):
        for j in range(n_in):
            work[r, j] = dist[hit[j], r]
    _tree_sum_columns(work, m, n_in)
    stale = block_best[blk] == src
    for j in range(n_in):
        i = hit[j]
        score[i] = work[0, j] / m
        limit[i] = filter_limit(dist[i, k - 1], factor)
        stale = stale or i == block_best[blk]
    if n_in:  # limits only fall: otherwise most[blk] stays a bound
        highest = -1.0
        for i in range(lo, hi):
            if limit[i] > highest:
                highest = limit[i]
        most[blk] = highest
    if stale:
        block_best[blk] = _best_slot(score, age, lo, hi)


@nb.njit(cache=True, inline="always")
def _tree_sum_columns(v: np.ndarray, width: int, n: int) -> None:
    """``v[0, j]`` = sum of ``v[:width, j]`` for j < n, in the order of :func:`mummi.sampler.knn.tree_sum`."""
    while width > 1:
        half = 1
        while half * 2 < width:
            half *= 2
        for r in range(width - half):
            for j in range(n):
                v[r, j] += v[half + r, j]
        width = half


@nb.njit(cache=True)
def list_scores(dist: np.ndarray, n_selected: int) -> np.ndarray:
    """:func:`mummi.sampler.knn.knn_scores` of sorted k-NN rows, bit for bit (the same tree of sums), compiled."""
    n, k = dist.shape
    m = min(k, n_selected)
    out = np.full(n, np.inf)
    if m == 0:
        return out
    work = np.empty((m, n))
    for i in range(n):
        for r in range(m):
            work[r, i] = dist[i, r]
    _tree_sum_columns(work, m, n)
    for i in range(n):
        out[i] = work[0, i] / m
    return out


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
    """The best slot of every block of :data:`~mummi.sampler.layout.BLOCK` slots."""
    n = score.shape[0]
    out = np.empty((n + BLOCK - 1) // BLOCK, dtype=np.int64)
    for blk in range(out.shape[0]):
        out[blk] = _best_slot(score, age, blk * BLOCK, min(blk * BLOCK + BLOCK, n))
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
    xb: np.ndarray,
    x: np.ndarray,
    age: np.ndarray,
    score: np.ndarray,
    dist: np.ndarray,
    pos: np.ndarray,
    limit: np.ndarray,
    centre_t: np.ndarray,
    inner: np.ndarray,
    outer: np.ndarray,
    most: np.ndarray,
    n_picks: int,
    n_selected: int,
    factor: float,
    threads: int,
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
        shells = (centre_t, inner, outer, most)
        absorb(xb, x, age, score, dist, pos, limit, *shells, b, n_selected + made, factor, block_best, threads)
        made += 1
    return slots[:made], scores[:made]


_SCAN_KEPT = 128  # pairs a query of grouped_scan keeps for canonical distances before it sheds or settles them


@nb.njit(cache=True, parallel=True)
def grouped_scan(
    q: np.ndarray,
    by_group: np.ndarray,
    group: np.ndarray,
    reach: np.ndarray,
    s_pos: np.ndarray,
    s_lo: np.ndarray,
    s_t: np.ndarray,
    start: np.ndarray,
    dist: np.ndarray,
    pos: np.ndarray,
    factor: float,
) -> None:
    """Merge the selected points at positions >= ``start[i]`` into the sorted k-NN lists of query i.

    Query i (row of ``q``) belongs to ``group[i]`` and lies within ``reach[i]`` of
    its centre. For group g, ``s_pos[g]`` lists the selected points in an order of
    nondecreasing lower bounds ``s_lo[g]`` of their distance to the centre, and
    ``s_t[g]`` (dim, m) holds their coordinates (float32) in that order. A point with ``s_lo - reach`` above
    the k-th neighbour distance cannot enter, so each scan stops at the first such
    chunk. Equal distances list the smaller position first. Queries are taken in
    the order ``by_group`` (group by group), so that a group's points stay in cache.
    """
    n, dim = q.shape
    k = dist.shape[1]
    chunk, per_task = 64, 64
    for task in nb.prange((n + per_task - 1) // per_task):
        acc = np.empty(chunk, dtype=np.float32)
        top = np.empty(k, dtype=np.float32)
        kept = np.empty(_SCAN_KEPT, dtype=np.int64)
        kept_acc = np.empty(_SCAN_KEPT, dtype=np.float32)
        work = np.empty((dim, _SCAN_KEPT))
        q64 = np.empty(dim)
        for t in range(task * per_task, min(task * per_task + per_task, n)):
            i = by_group[t]
            for c in range(dim):
                q64[c] = q[i, c]
            _scan_one(i, q, q64, group[i], reach[i], s_pos, s_lo, s_t, start[i], dist, pos, factor,
                      acc, top, kept, kept_acc, work)  # fmt: skip


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
    start: int,
    dist: np.ndarray,
    pos: np.ndarray,
    factor: float,
    acc: np.ndarray,
    top: np.ndarray,
    kept: np.ndarray,
    kept_acc: np.ndarray,
    work: np.ndarray,
) -> None:
    """Query i of :func:`grouped_scan` (``q64``: its row in float64; the rest: work space).

    The scan itself is float32: ``top`` holds the k smallest float32 squared distances
    passed so far, and ``factor**2`` times the k-th of them bounds the final k-th
    squared distance and every float32 value that can still enter. Pairs under
    that bound are kept (:func:`_keep`); only those still under it at the end get
    canonical distances (:func:`_settle`), so a query computes about k of them
    instead of one for every improvement on the way.
    """
    k = dist.shape[1]
    m = s_t.shape[2]
    chunk = acc.shape[0]
    near = dist[i, k - 1]  # bounds the final k-th distance
    limit = filter_limit(near, factor)  # bounds the float32 squared distance of a pair that can enter
    top[:] = np.inf
    n_kept = 0
    for j0 in range(0, m, chunk):
        if s_lo[g, j0] - reach > near:
            break
        j1 = min(j0 + chunk, m)
        _float32_distances(q, i, s_t[g], j0, j1, acc)
        if n_kept > kept.shape[0] - chunk:
            n_kept, near, limit = _make_room(i, q64, s_pos[g], s_t[g], dist, pos, kept, kept_acc, n_kept, limit, near,
                                             factor, work)  # fmt: skip
        for j in range(j1 - j0):
            if acc[j] <= limit and s_pos[g, j0 + j] >= start:  # rarely true once top is full
                n_kept, limit = _keep(acc[j], j0 + j, top, kept, kept_acc, n_kept, limit, factor)
        near = min(near, np.sqrt(limit))
    _settle(i, q64, s_pos[g], s_t[g], dist, pos, kept, _shed(kept, kept_acc, n_kept, limit), work)


@nb.njit(cache=True, inline="always")
def _at_least(a: float, factor: float) -> float:
    """A lower bound of the true distance whose float32 squared value (from :func:`_float32_distances`) is ``a``."""
    return np.sqrt(np.float64(a) / factor) * (1 - 1e-9)


@nb.njit(cache=True, inline="always")
def _at_most(a: float, factor: float) -> float:
    """An upper bound of the true distance whose float32 squared value is ``a`` (1e-30: underflow)."""
    return np.sqrt(np.float64(a) * factor + 1e-30) * (1 + 1e-9)


@nb.njit(cache=True, inline="always")
def _float32_distances(q: np.ndarray, i: int, rows_t: np.ndarray, j0: int, j1: int, acc: np.ndarray) -> None:
    """``acc[j - j0]``: float32 squared distance of query i to column j of ``rows_t`` (dim, m), j0 <= j < j1."""
    acc[: j1 - j0] = 0
    for c in range(q.shape[1]):
        qc = q[i, c]
        row = rows_t[c, j0:j1]
        for j in range(j1 - j0):
            t = row[j] - qc
            acc[j] += t * t


@nb.njit(cache=True, inline="always")
def _keep(
    a: float, j: int, top: np.ndarray, kept: np.ndarray, kept_acc: np.ndarray, n_kept: int, limit: float, factor: float
) -> tuple[int, float]:
    """Keep pair j (float32 squared distance ``a``, within ``limit``; :func:`_make_room` left room before the
    chunk) and update ``top`` and the limit. Returns the number kept and the limit (the bound of the k-th
    distance follows once per chunk, ``min(near, sqrt(limit))``: no square root per pair)."""
    kept[n_kept], kept_acc[n_kept] = j, a
    k = top.shape[0]
    if a < top[k - 1]:
        p = k - 1
        while p > 0 and top[p - 1] > a:
            top[p] = top[p - 1]
            p -= 1
        top[p] = a
        if top[k - 1] < np.inf:
            limit = min(limit, factor * factor * np.float64(top[k - 1]) + 1e-30)
    return n_kept + 1, limit


@nb.njit(cache=True, inline="always")
def _make_room(
    i: int,
    q64: np.ndarray,
    positions: np.ndarray,
    rows_t: np.ndarray,
    dist: np.ndarray,
    pos: np.ndarray,
    kept: np.ndarray,
    kept_acc: np.ndarray,
    n_kept: int,
    limit: float,
    near: float,
    factor: float,
    work: np.ndarray,
) -> tuple[int, float, float]:
    """The kept pairs might not leave room for a chunk: drop those above the limit, and if many near-equal
    ones stay, settle them now. Returns the number kept, the bound of the k-th distance and the limit."""
    n_kept = _shed(kept, kept_acc, n_kept, limit)
    if n_kept > kept.shape[0] // 2:
        _settle(i, q64, positions, rows_t, dist, pos, kept, n_kept, work)
        near = min(near, dist[i, dist.shape[1] - 1])
        limit = min(limit, filter_limit(near, factor))
        n_kept = 0
    return n_kept, near, limit


@nb.njit(cache=True, inline="always")
def _shed(kept: np.ndarray, kept_acc: np.ndarray, n_kept: int, limit: float) -> int:
    """Drop the kept pairs above ``limit``; returns how many stay."""
    n = 0
    for h in range(n_kept):
        if kept_acc[h] <= limit:
            kept[n], kept_acc[n] = kept[h], kept_acc[h]
            n += 1
    return n


@nb.njit(cache=True, inline="always")
def _settle(
    i: int,
    q64: np.ndarray,
    positions: np.ndarray,
    rows_t: np.ndarray,
    dist: np.ndarray,
    pos: np.ndarray,
    kept: np.ndarray,
    n_kept: int,
    work: np.ndarray,
) -> None:
    """Canonical distances (as :func:`mummi.sampler.knn.row_sq_dist`, a column each) of query i to the
    ``n_kept`` kept columns of ``rows_t`` (at S positions ``positions``), merged into its list."""
    dim = q64.shape[0]
    for c in range(dim):
        qc64 = q64[c]
        row = rows_t[c]
        for h in range(n_kept):
            t64 = np.float64(row[kept[h]]) - qc64
            work[c, h] = t64 * t64
    _tree_sum_columns(work, dim, n_kept)
    for h in range(n_kept):
        _enter(dist, pos, i, np.sqrt(work[0, h]), positions[kept[h]])


@nb.njit(cache=True)
def nearest_by_products(products_t: np.ndarray, sq_norms: np.ndarray) -> np.ndarray:
    """Per column i, the first row j smallest in ``sq_norms[j] - 2 products_t[j, i]``: with ``products_t`` the dot
    products of centres (rows) with points (columns) and ``sq_norms`` the centres' squared norms, each point's
    nearest centre (vectorised across points: no branch per pair)."""
    m, n = products_t.shape
    out = np.zeros(n, dtype=np.int64)
    best = np.full(n, np.inf, dtype=products_t.dtype)
    for j in range(m):
        for i in range(n):
            v = sq_norms[j] - (products_t[j, i] + products_t[j, i])  # in the products' precision
            nearer = v < best[i]
            best[i] = v if nearer else best[i]
            out[i] = j if nearer else out[i]
    return out


@nb.njit(cache=True)
def centre_means(x: np.ndarray, label: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """The mean of the rows of ``x`` with each label (float32); a centre without rows stays as in ``centres``."""
    m, dim = centres.shape
    sums = np.zeros((m, dim))
    counts = np.zeros(m, dtype=np.int64)
    for i in range(x.shape[0]):
        counts[label[i]] += 1
        for c in range(dim):
            sums[label[i], c] += x[i, c]
    out = centres.copy()
    for b in range(m):
        if counts[b] > 0:
            for c in range(dim):
                out[b, c] = sums[b, c] / counts[b]
    return out


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


@nb.njit(cache=True, parallel=True)
def cell_knn(
    q: np.ndarray,
    centres_t: np.ndarray,
    cell_start: np.ndarray,
    members_t: np.ndarray,
    member_pos: np.ndarray,
    member_ds: np.ndarray,
    visits: int,
    factor: float,
    dist: np.ndarray,
    pos: np.ndarray,
    give_up: float,
    dropped: np.ndarray,
) -> None:
    """Exact k-NN lists (``dist``, ``pos``, empty on entry) of the queries among the members of cells.

    Cell c holds the columns ``cell_start[c]:cell_start[c + 1]`` of ``members_t`` (dim, m;
    float32), at positions ``member_pos`` in S, in increasing order of ``member_ds``, their
    distances to the centre ``centres_t[:, c]`` (float64, within 1e-15 relative). A member
    farther from the centre than the query by more than the k-th neighbour distance, or
    nearer by more, cannot enter (triangle inequality), so only a window of each cell is
    scanned, and a cell whose members are all out of reach not at all. The ``visits``
    nearest cells go first; then a query whose k nearest members found so far prove its
    DynIm score below ``give_up`` (:func:`_score_above`) stops: ``dropped[i]`` is set, and ``dist[i, 0]``, ``pos[i, 0]``
    hold the canonical distance to the member nearest in float32 (at least the nearest
    one's). Otherwise every other cell within reach follows.
    """
    n, dim = q.shape
    k = dist.shape[1]
    n_cells = centres_t.shape[1]
    per_task, chunk = 64, 64
    for task in nb.prange((n + per_task - 1) // per_task):
        cell_acc = np.empty(n_cells, dtype=np.float32)
        acc = np.empty(chunk, dtype=np.float32)
        top = np.empty(k, dtype=np.float32)
        kept = np.empty(_SCAN_KEPT, dtype=np.int64)
        kept_acc = np.empty(_SCAN_KEPT, dtype=np.float32)
        work = np.empty((dim, _SCAN_KEPT))
        nearest = np.empty(visits, dtype=np.int64)
        nearest_acc = np.empty(visits, dtype=np.float32)
        q64 = np.empty(dim)
        for i in range(task * per_task, min(task * per_task + per_task, n)):
            for c in range(dim):
                q64[c] = q[i, c]
            _float32_distances(q, i, centres_t, 0, n_cells, cell_acc)
            _nearest_cells(cell_acc, nearest, nearest_acc)
            top[:] = np.inf
            near, limit, n_kept = np.inf, np.inf, 0
            for v in range(visits + n_cells):
                cell = nearest[v] if v < visits else v - visits
                if cell < 0 or (v >= visits and _among(cell, nearest)):
                    continue
                c0, c1 = cell_start[cell], cell_start[cell + 1]
                reach = (near + member_ds[c1 - 1]) * (1 + 3e-9) if c1 > c0 else -1.0
                if cell_acc[cell] > factor * reach * reach:  # the whole cell is out of reach
                    continue
                # The query's distance to the centre lies within [dq_lo, dq_hi].
                dq_lo, dq_hi = _at_least(cell_acc[cell], factor), _at_most(cell_acc[cell], factor)
                j0 = c0 + np.searchsorted(member_ds[c0:c1], (dq_lo - near) * (1 - 1e-9) - 1e-300)
                while j0 < c1 and member_ds[j0] <= (dq_hi + near) * (1 + 1e-9):
                    j1 = min(j0 + chunk, c1)
                    _float32_distances(q, i, members_t, j0, j1, acc)
                    if n_kept > kept.shape[0] - chunk:
                        n_kept, near, limit = _make_room(i, q64, member_pos, members_t, dist, pos, kept, kept_acc,
                                                         n_kept, limit, near, factor, work)  # fmt: skip
                    for j in range(j1 - j0):
                        if acc[j] <= limit:
                            n_kept, limit = _keep(acc[j], j0 + j, top, kept, kept_acc, n_kept, limit, factor)
                    near = min(near, np.sqrt(limit))
                    j0 = j1
                if v < visits and top[k - 1] < np.inf and _score_above(top, factor) < give_up:
                    break
            else:
                _settle(i, q64, member_pos, members_t, dist, pos, kept, _shed(kept, kept_acc, n_kept, limit), work)
                continue
            dropped[i] = True
            _settle(i, q64, member_pos, members_t, dist, pos, kept, _float32_nearest(kept, kept_acc, n_kept), work)


_REGION, _GROUP = 4096, 256  # queries of cell_refine ordered together, and sharing a gathered list
_BUCKETS = 256  # levels of the lower bounds that order a group's gathered members


@nb.njit(cache=True, parallel=True)
def cell_refine(
    q: np.ndarray,
    by_near: np.ndarray,
    centres_t: np.ndarray,
    cell_start: np.ndarray,
    members_t: np.ndarray,
    member_pos: np.ndarray,
    member_ds: np.ndarray,
    start: np.ndarray,
    dist: np.ndarray,
    pos: np.ndarray,
    factor: float,
) -> None:
    """Merge the members at positions >= ``start[i]`` into the (full, finite) k-NN lists of the queries.

    The cells are laid out as for :func:`cell_knn`. ``by_near`` orders the queries so that
    neighbours come close together; each run of :data:`_REGION` is put in spatial order
    (:func:`~mummi.sampler.layout.spatial_order`) and cut into groups of :data:`_GROUP`,
    and each group is merged by :func:`_refine_group`.
    """
    n = by_near.shape[0]
    for region in nb.prange((n + _REGION - 1) // _REGION):
        r0, r1 = region * _REGION, min(region * _REGION + _REGION, n)
        local = spatial_order(q, by_near[r0:r1], _GROUP, False)
        for a in range(0, r1 - r0, _GROUP):
            group = local[a : min(a + _GROUP, r1 - r0)]
            _refine_group(q, group, centres_t, cell_start, members_t, member_pos, member_ds, start, dist, pos,
                          factor)  # fmt: skip


@nb.njit(cache=True)
def _refine_group(
    q: np.ndarray,
    group: np.ndarray,
    centres_t: np.ndarray,
    cell_start: np.ndarray,
    members_t: np.ndarray,
    member_pos: np.ndarray,
    member_ds: np.ndarray,
    start: np.ndarray,
    dist: np.ndarray,
    pos: np.ndarray,
    factor: float,
) -> None:
    """:func:`cell_refine` for the queries ``group``: a member farther from their centre than every
    query's distance to it plus its k-th distance cannot enter any list; the others, gathered from
    the windows of the cells in reach (as in :func:`cell_knn`) and ordered by a lower bound of that
    distance (:func:`_by_bound`), are scanned by each query as in :func:`grouped_scan`."""
    dim, k, n_cells = q.shape[1], dist.shape[1], centres_t.shape[1]
    centre = np.zeros((1, dim), dtype=np.float32)
    total = np.zeros(dim)
    for i in group:
        for c in range(dim):
            total[c] += q[i, c]
    for c in range(dim):
        centre[0, c] = total[c] / len(group)
    acc = np.empty(max(n_cells, 64), dtype=np.float32)
    reach = np.empty(len(group))
    cut = 0.0
    for t, i in enumerate(group):
        a = np.float32(0)
        for c in range(dim):
            d = q[i, c] - centre[0, c]
            a += d * d
        reach[t] = _at_most(a, factor)
        cut = max(cut, reach[t] + dist[i, k - 1])
    cut *= 1 + 1e-9
    _float32_distances(centre, 0, centres_t, 0, n_cells, acc)
    window = np.empty((n_cells, 2), dtype=np.int64)
    size = 0
    for cell in range(n_cells):
        c0, c1 = cell_start[cell], cell_start[cell + 1]
        d_lo, d_hi = _at_least(acc[cell], factor), _at_most(acc[cell], factor)
        window[cell, 0] = c0 + np.searchsorted(member_ds[c0:c1], (d_lo - cut) * (1 - 1e-9) - 1e-300)
        window[cell, 1] = max(window[cell, 0], c0 + np.searchsorted(member_ds[c0:c1], (d_hi + cut) * (1 + 1e-9)))
        size += window[cell, 1] - window[cell, 0]
    found = np.empty(size, dtype=np.int64)
    bound = np.empty(size)
    n_found = 0
    for cell in range(n_cells):
        for j0 in range(window[cell, 0], window[cell, 1], 64):
            j1 = min(j0 + 64, window[cell, 1])
            _float32_distances(centre, 0, members_t, j0, j1, acc)
            for j in range(j1 - j0):
                d = _at_least(acc[j], factor)
                if d <= cut:
                    found[n_found], bound[n_found] = j0 + j, d
                    n_found += 1
    s_pos, s_lo, s_t = _by_bound(found[:n_found], bound[:n_found], cut, member_pos, members_t)
    top = np.empty(k, dtype=np.float32)
    kept = np.empty(_SCAN_KEPT, dtype=np.int64)
    kept_acc = np.empty(_SCAN_KEPT, dtype=np.float32)
    work = np.empty((dim, _SCAN_KEPT))
    q64 = np.empty(dim)
    for t, i in enumerate(group):
        for c in range(dim):
            q64[c] = q[i, c]
        _scan_one(i, q, q64, 0, reach[t], s_pos, s_lo, s_t, start[i], dist, pos, factor, acc[:64], top, kept, kept_acc,
                  work)  # fmt: skip


@nb.njit(cache=True, inline="always")
def _by_bound(
    found: np.ndarray, bound: np.ndarray, cut: float, member_pos: np.ndarray, members_t: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``found`` columns of ``members_t`` in nondecreasing buckets of their lower ``bound`` (in [0, ``cut``]),
    as :func:`_scan_one` takes them for one group: their positions in S, their bucket's smallest bound
    (nondecreasing, so a bound for every later member too) and their coordinates, transposed."""
    n = found.shape[0]
    scale = (_BUCKETS - 1) / max(cut, 1e-300)
    key = np.empty(n, dtype=np.int64)
    at = np.zeros(_BUCKETS + 1, dtype=np.int64)
    least = np.full(_BUCKETS, np.inf)
    for j in range(n):
        key[j] = min(int(bound[j] * scale), _BUCKETS - 1)
        at[key[j] + 1] += 1
        least[key[j]] = min(least[key[j]], bound[j])
    for h in range(_BUCKETS):
        at[h + 1] += at[h]
    s_pos = np.empty((1, n), dtype=np.int64)
    s_lo = np.empty((1, n))
    s_t = np.empty((1, members_t.shape[0], n), dtype=members_t.dtype)
    for j in range(n):
        to = at[key[j]]
        at[key[j]] += 1
        s_pos[0, to], s_lo[0, to] = member_pos[found[j]], least[key[j]]
        for c in range(members_t.shape[0]):
            s_t[0, c, to] = members_t[c, found[j]]
    return s_pos, s_lo, s_t


@nb.njit(cache=True, inline="always")
def _nearest_cells(cell_acc: np.ndarray, nearest: np.ndarray, best: np.ndarray) -> None:
    """``nearest``: the cells of the smallest values of ``cell_acc``, ascending (-1: fewer cells);
    ``best``: those values."""
    m = nearest.shape[0]
    best[:] = np.inf
    nearest[:] = -1
    for j in range(cell_acc.shape[0]):
        a = cell_acc[j]
        if a < best[m - 1]:
            p = m - 1
            while p > 0 and best[p - 1] > a:
                best[p], nearest[p] = best[p - 1], nearest[p - 1]
                p -= 1
            best[p], nearest[p] = a, j


@nb.njit(cache=True, inline="always")
def _among(cell: int, nearest: np.ndarray) -> bool:
    for c in nearest:
        if c == cell:
            return True
    return False


@nb.njit(cache=True, inline="always")
def _float32_nearest(kept: np.ndarray, kept_acc: np.ndarray, n_kept: int) -> int:
    """Move the kept pair of smallest float32 distance first; returns 1 (0 if none is kept)."""
    if n_kept == 0:
        return 0
    b = 0
    for h in range(1, n_kept):
        if kept_acc[h] < kept_acc[b]:
            b = h
    kept[0], kept_acc[0] = kept[b], kept_acc[b]
    return 1


@nb.njit(cache=True, inline="always")
def _score_above(top: np.ndarray, factor: float) -> float:
    """An upper bound of the DynIm score of a query whose k smallest float32 squared distances to S are ``top``.

    The i-th smallest true distance is at most ``sqrt(factor * top[i])`` (1e-30: underflow),
    and the canonical score is within 1e-9 of the true mean.
    """
    total = 0.0
    for a in top:
        total += np.sqrt(factor * np.float64(a) + 1e-30)
    return total / len(top) * (1 + 1e-9)
