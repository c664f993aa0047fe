"""Candidate slots arranged in blocks of nearby points, each block bounded by a shell.

Each pick must be merged into every candidate it comes nearer to than the
candidate's k-th neighbour (:func:`~mummi.sampler.kernels.absorb`). With the
candidates in arrival order, a pick's partners are scattered over all of the pool:
every pick streams every candidate's latent, and each merge misses the cache. So
arriving candidates are put in spatial order (recursive splits along the principal
axis, :func:`spatial_order`) in fresh blocks of :data:`BLOCK` slots after the used
ones; when the slots run out, the live candidates close ranks in the order they are
in. Every block keeps its centre and the smallest and largest distance of its
members to it (:func:`block_shells`), widened by a relative margin of 1e-9, far
above their rounding error: a pick farther from the whole shell than every
member's k-th neighbour skips the block. On the benchmark stream a pick scans
about a quarter of the pool, and its merges fall into a few contiguous blocks.
"""

from __future__ import annotations

import numba as nb
import numpy as np

BLOCK = 128  # slots per block
_MARGIN = 1e-9
_SAMPLE = 64  # points per node that estimate its principal axis
_POWER_STEPS = 8
_STRAY = 2.0


@nb.njit(cache=True)
def spatial_order(x: np.ndarray, slots: np.ndarray, block: int, parallel: bool = True) -> np.ndarray:
    """``slots`` (rows of ``x``) reordered so that every run of ``block`` holds nearby points.

    Ranges are split along their principal axis (estimated by a few power steps on
    at most :data:`_SAMPLE` evenly spaced members) at the multiple of ``block``
    nearest the natural cut of the projections (:func:`_natural_cut`), until each
    is one block; then strays go last (:func:`_strays_last`). The ranges of one
    level of splits are split in parallel unless ``parallel`` is False (inside
    compiled parallel loops).
    """
    order = slots.copy()
    xs = np.empty((len(slots), x.shape[1]), dtype=x.dtype)  # the rows in their current order: scanned in sequence
    for j in range(len(slots)):
        for c in range(x.shape[1]):
            xs[j, c] = x[slots[j], c]
    n = xs.shape[0]
    key = np.empty(n)
    at = np.empty(n, dtype=np.int64)
    buf = np.empty_like(xs)
    order_buf = np.empty_like(order)
    # The ranges of the current level of splits: starts and ends, then each one's split point.
    starts, ends = np.zeros(1, dtype=np.int64), np.full(1, n, dtype=np.int64)
    while len(starts):
        if parallel:
            mids = _split_level(xs, order, key, at, buf, order_buf, starts, ends, block)
        else:
            mids = _split_level_serial(xs, order, key, at, buf, order_buf, starts, ends, block)
        split = mids >= 0
        starts = np.concatenate((starts[split], mids[split]))
        ends = np.concatenate((mids[split], ends[split]))
    return _strays_last(xs, order, block)


@nb.njit(cache=True, parallel=True)
def _split_level(
    xs: np.ndarray,
    order: np.ndarray,
    key: np.ndarray,
    at: np.ndarray,
    buf: np.ndarray,
    order_buf: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    block: int,
) -> np.ndarray:
    """Split every range longer than ``block`` (:func:`_split_range`), in parallel; returns the split points
    (-1: not split)."""
    mids = np.full(len(starts), -1, dtype=np.int64)
    for r in nb.prange(len(starts)):
        if ends[r] - starts[r] > block:
            mids[r] = _split_range(xs, order, key, at, buf, order_buf, starts[r], ends[r], block)
    return mids


@nb.njit(cache=True)
def _split_level_serial(
    xs: np.ndarray,
    order: np.ndarray,
    key: np.ndarray,
    at: np.ndarray,
    buf: np.ndarray,
    order_buf: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    block: int,
) -> np.ndarray:
    """:func:`_split_level` on one thread, for :func:`spatial_order` inside compiled parallel loops: a parallel
    function called there would nest parallel regions, which numba's workqueue threading layer (its fallback
    without OpenMP or TBB) refuses and the others run on more threads than the core share allows."""
    mids = np.full(len(starts), -1, dtype=np.int64)
    for r in range(len(starts)):
        if ends[r] - starts[r] > block:
            mids[r] = _split_range(xs, order, key, at, buf, order_buf, starts[r], ends[r], block)
    return mids


@nb.njit(cache=True, fastmath=True)
def _split_range(
    xs: np.ndarray,
    order: np.ndarray,
    key: np.ndarray,
    at: np.ndarray,
    buf: np.ndarray,
    order_buf: np.ndarray,
    lo: int,
    hi: int,
    block: int,
) -> int:
    """Split rows ``lo:hi`` of ``xs`` (and ``order`` alike) along their principal axis; returns where.
    Touches only ``lo:hi`` of every array."""
    dim = xs.shape[1]
    axis = np.empty(dim)
    mean = np.empty(dim)
    step = max(1, (hi - lo) // _SAMPLE)
    _principal_axis(xs[lo:hi:step], mean, axis)
    for j in range(lo, hi):
        t = 0.0
        for c in range(dim):
            t += (xs[j, c] - mean[c]) * axis[c]
        key[j] = t
        at[j] = j
    blocks = (hi - lo + block - 1) // block
    left = round(_count_below(key[lo:hi], _natural_cut(key[lo:hi])) / block)
    mid = lo + min(max(left, 1), blocks - 1) * block
    _split(key, at, lo, hi, mid)
    for j in range(lo, hi):
        for c in range(dim):
            buf[j, c] = xs[at[j], c]
        order_buf[j] = order[at[j]]
    for j in range(lo, hi):
        for c in range(dim):
            xs[j, c] = buf[j, c]
        order[j] = order_buf[j]
    return mid


@nb.njit(cache=True)
def _strays_last(xs: np.ndarray, order: np.ndarray, block: int) -> np.ndarray:
    """``order`` with every member farther than :data:`_STRAY` times its block's median
    distance from the block's mean moved to the end (``xs``: the rows in that order).

    Isolated points (the rare configurations a sampler is after) would otherwise widen
    the shell of every block they fall in.
    """
    n, dim = xs.shape
    stray = np.zeros(n, dtype=np.bool_)
    mean = np.empty(dim)
    d = np.empty(block)
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        mean[:] = 0.0
        for i in range(lo, hi):
            for c in range(dim):
                mean[c] += xs[i, c]
        mean /= hi - lo
        for i in range(lo, hi):
            d[i - lo] = _distance(xs[i], mean)
        far = _STRAY * np.median(d[: hi - lo])
        for i in range(lo, hi):
            stray[i] = d[i - lo] > far
    return np.concatenate((order[~stray], order[stray]))


@nb.njit(cache=True)
def _natural_cut(key: np.ndarray, bins: int = 64) -> float:
    """The threshold that best separates ``key`` into two groups (Otsu's rule on a histogram)."""
    low, high = key.min(), key.max()
    if not high > low:
        return high
    width = (high - low) / bins
    count = np.zeros(bins)
    total = np.zeros(bins)
    for v in key:
        b = min(int((v - low) / width), bins - 1)
        count[b] += 1
        total[b] += v
    n, s = count.sum(), total.sum()
    best, cut = -1.0, high
    n0 = s0 = 0.0
    for b in range(bins - 1):
        n0 += count[b]
        s0 += total[b]
        if 0 < n0 < n:
            gap = s0 / n0 - (s - s0) / (n - n0)
            between = n0 * (n - n0) * gap * gap
            if between > best:
                best, cut = between, low + (b + 1) * width
    return cut


@nb.njit(cache=True)
def _count_below(key: np.ndarray, cut: float) -> int:
    n = 0
    for v in key:
        n += v < cut
    return n


@nb.njit(cache=True, fastmath=True)
def _principal_axis(x: np.ndarray, mean: np.ndarray, axis: np.ndarray) -> None:
    """Mean and (approximate) principal axis of the rows of ``x``, into ``mean`` and ``axis``:
    power steps on their covariance, from the coordinate of largest spread."""
    n, dim = x.shape
    mean[:] = 0.0
    for r in range(n):
        for c in range(dim):
            mean[c] += x[r, c]
    mean /= n
    cov = np.zeros((dim, dim))
    row = np.empty(dim)
    for r in range(n):
        for c in range(dim):
            row[c] = x[r, c] - mean[c]
        for c in range(dim):
            for e in range(dim):
                cov[c, e] += row[c] * row[e]
    axis[:] = 0.0
    widest = 0
    for c in range(dim):
        if cov[c, c] > cov[widest, widest]:
            widest = c
    axis[widest] = 1.0
    nxt = np.empty(dim)
    for _ in range(_POWER_STEPS):
        norm = 0.0
        for c in range(dim):
            t = 0.0
            for e in range(dim):
                t += cov[c, e] * axis[e]
            nxt[c] = t
            norm += t * t
        if norm == 0.0:
            return
        norm = np.sqrt(norm)
        for c in range(dim):
            axis[c] = nxt[c] / norm


@nb.njit(cache=True)
def _split(key: np.ndarray, at: np.ndarray, lo: int, hi: int, mid: int) -> None:
    """Reorder ``key[lo:hi]`` and ``at[lo:hi]`` alike so that no key left of ``mid`` exceeds one right of it."""
    while hi - lo > 1:
        a, b, c = key[lo], key[(lo + hi) // 2], key[hi - 1]
        pivot = max(min(a, b), min(max(a, b), c))  # median of three
        i, j = lo, hi - 1
        while i <= j:
            while key[i] < pivot:
                i += 1
            while key[j] > pivot:
                j -= 1
            if i <= j:
                key[i], key[j] = key[j], key[i]
                at[i], at[j] = at[j], at[i]
                i += 1
                j -= 1
        if mid <= j:
            hi = j + 1
        elif mid >= i:
            lo = i
        else:
            return


@nb.njit(cache=True, parallel=True)
def block_shells(x: np.ndarray, limit: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per block of ``block`` slots: centre (a column each), shell radii (inner, outer) and the largest filter limit.

    Slots with a negative limit are free; a block without candidates gets limit -1,
    so every pick skips it.
    """
    n, dim = x.shape
    n_blocks = (n + block - 1) // block
    centre_t = np.zeros((dim, n_blocks))
    inner = np.zeros(n_blocks)
    outer = np.zeros(n_blocks)
    most = np.full(n_blocks, -1.0)
    for b in nb.prange(n_blocks):
        lo, hi = b * block, min(b * block + block, n)
        centre = np.zeros(dim)
        live = 0
        for i in range(lo, hi):
            if limit[i] >= 0:
                live += 1
                for c in range(dim):
                    centre[c] += x[i, c]
        if live == 0:
            continue
        centre /= live
        centre_t[:, b] = centre
        near, far = np.inf, 0.0
        for i in range(lo, hi):
            if limit[i] >= 0:
                d = _distance(x[i], centre)
                near, far = min(near, d), max(far, d)
                most[b] = max(most[b], limit[i])
        inner[b], outer[b] = near * (1 - _MARGIN), far * (1 + _MARGIN)
    return centre_t, inner, outer, most


@nb.njit(cache=True, inline="always")
def _distance(a: np.ndarray, centre: np.ndarray) -> float:
    t = 0.0
    for c in range(centre.shape[0]):
        t += (np.float64(a[c]) - centre[c]) ** 2
    return np.sqrt(t)


@nb.njit(cache=True)
def shell_gaps(a: np.ndarray, centre_t: np.ndarray, inner: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """Per block, a lower bound (with margin) of the distance from ``a`` (float64) to any point of its shell (0 if
    ``a`` may be inside); the sums of :func:`_distance`, term for term, a loop over blocks for each coordinate."""
    dim, n_blocks = centre_t.shape
    sq = np.zeros(n_blocks)
    for c in range(dim):
        ac, row = a[c], centre_t[c]
        for b in range(n_blocks):
            sq[b] += (ac - row[b]) ** 2
    gap = np.empty(n_blocks)
    for b in range(n_blocks):
        d = np.sqrt(sq[b])
        gap[b] = max(d - outer[b], inner[b] - d, 0.0) * (1 - _MARGIN)
    return gap


@nb.njit(cache=True)
def put_rows(
    start: int,
    rows: np.ndarray,
    age: np.ndarray,
    score: np.ndarray,
    dist: np.ndarray,
    pos: np.ndarray,
    x: np.ndarray,
    to_age: np.ndarray,
    to_score: np.ndarray,
    to_dist: np.ndarray,
    to_pos: np.ndarray,
    to_x: np.ndarray,
    to_xb: np.ndarray,
) -> None:
    """Row ``rows[j]`` of the candidate arrays into slot ``start + j`` of the pool's (``to_xb``: the latents by
    block, (blocks, dim, BLOCK)). The pool may be the source too if ``rows[j] >= start + j`` (candidates closing
    ranks)."""
    k, dim = dist.shape[1], x.shape[1]
    for j in range(len(rows)):
        i, s = rows[j], start + j
        to_age[s], to_score[s] = age[i], score[i]
        for r in range(k):
            to_dist[s, r], to_pos[s, r] = dist[i, r], pos[i, r]
        for c in range(dim):
            to_x[s, c] = to_xb[s // BLOCK, c, s % BLOCK] = x[i, c]
