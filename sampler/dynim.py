"""The DynIm sampler: exact greedy novelty selection, incremental, with importance weights.

Definitions (seed 000, "Sampling of macro configurations", "Reconstruction of the
true distribution"):

* The **score** of a candidate is the mean Euclidean distance to its ``k`` nearest
  selected points (fewer while ``|S| < k``; ``inf`` while S is empty), with distances
  computed canonically (:mod:`mummi.sampler.knn`).
* **Selection** is greedy and exact: each pick is the candidate with the highest
  current score, its score reflecting every earlier pick, including earlier picks of
  the same burst. **Ties** go to the older candidate (earlier ``add_candidates`` call,
  earlier row). The first ``warmup`` picks are uniformly random among the current
  candidates (in arrival order, drawn from the sampler's seeded generator).
* The candidate queue C is **capped**: after each ``add_candidates`` call only the
  ``candidate_cap`` best candidates (same order: score, then age) stay; the rest are
  *discarded*. Discarded candidates are never selected but count for the weights.
* The **weight** of a selected point q is ``1 + |{p seen, not selected: nn_S(p) = q}|``
  where ``nn_S(p)`` is p's nearest selected point (ties: the older selected point).

How it stays fast and exact. Every candidate keeps its sorted k-NN distances to S
(and their positions in S), always up to date: each pick is merged into the lists
of the candidates it comes near by a compiled loop (:mod:`~mummi.sampler.kernels`)
that skips the blocks of nearby candidates it cannot reach (:mod:`~mummi.sampler.layout`),
filters the rest with a float32 sum and recomputes canonically
(:mod:`mummi.sampler.knn`) only the pairs that can enter a list. So every score is
exact at every moment, a pick is an argmax, and the cap needs no rescoring. New
candidates are scored against S by the :mod:`~mummi.sampler.index` (exact ``flat``
by default); once S is large, the exact search goes cell by cell
(:mod:`~mummi.sampler.cells`) and stops as soon as an arrival is proven to score
below the cap's cut (:mod:`~mummi.sampler.cap`): most arrivals of a long campaign.
Discarded points keep their nearest selected point (or, if dropped that way, a
selected point near them) and are brought up to date only when weights are asked
for, by a search that skips the selected points the triangle inequality rules out
(through the cells once S is large, else :mod:`~mummi.sampler.groups`).

With an approximate index (``ivf``, ``hnsw``) new candidates get approximate k-NN
lists (true neighbours may be missing, so scores may be too high); every later
pick is still merged into them exactly and selection is greedy on them. Weights
then take, for each discarded point, the nearer of its stored nearest selected
point and a fresh approximate search.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from mummi.core.spec import SamplerSettings
from mummi.sampler import checkpoint as ckpt
from mummi.sampler.buffers import Growing
from mummi.sampler.cap import FLOOR, SAMPLE, cut_holds, likely_cut, sample_rows, sure_cut
from mummi.sampler.cells import Cells
from mummi.sampler.core_share import CoreShare
from mummi.sampler.groups import grouped_knn
from mummi.sampler.history import EventHistory
from mummi.sampler.id_view import IdView
from mummi.sampler.index import make_index
from mummi.sampler.kernels import absorb, block_bests, filter_factor, filter_limit, greedy_picks, list_scores
from mummi.sampler.layout import BLOCK, block_shells, put_rows, spatial_order

log = logging.getLogger(__name__)

CANDIDATE, SELECTED, DISCARDED = 0, 1, 2
# From this many selected points on, a pool whose slots run out is sorted into spatial order again
# (with fewer, the live candidates close ranks in the order they are in): k-th distances are then small
# and each pick reaches few blocks, if the blocks are tight.
SORT_POOL_FROM = 8192
SERIAL_WORK = 1 << 20  # pairs (candidates x picks, queries x selected points) below which a phase runs serially


def _pool_size(n: int) -> int:
    """Slots for ``n`` candidates: twice as many, in whole blocks."""
    return -(-2 * max(n, 1) // BLOCK) * BLOCK


def _best(score: np.ndarray, age: np.ndarray, m: int) -> np.ndarray:
    """Mask of the ``m`` best: highest score first, then the older (smaller age)."""
    v = np.partition(score, len(score) - m)[len(score) - m]
    best = score > v
    tied = np.flatnonzero(score == v)
    need = m - np.count_nonzero(best)
    if need < len(tied):  # ages are distinct: the need youngest-first cut is unique
        tied = tied[np.argpartition(age[tied], need - 1)[:need]] if need > 0 else tied[:0]
    best[tied] = True
    return best


class SamplerInputError(ValueError):
    """Input the sampler refuses; its state is unchanged."""


@dataclass(frozen=True)
class Selection:
    """One pick: the patch id, its score when picked, its position in S, and whether it was a random warm-up pick."""

    id: str
    score: float
    index: int
    random: bool = False


class DynimSampler:
    """DynIm sampling of latent vectors (see the module docstring for the exact rules).

    Parameters
    ----------
    dim
        Latent dimension.
    settings
        ``k``, ``candidate_cap``, ``warmup``, ``index`` (``flat`` is exact), ``device``,
        ``normalize_weights``.
    seed
        Seed of the warm-up draws.
    history
        CSV file the event history is appended to (see :mod:`mummi.sampler.history`);
        ``None`` keeps no history.
    """

    _used: int  # slots up to the last one filled since the pool was laid out

    def __init__(
        self, dim: int, settings: SamplerSettings | None = None, seed: int = 0, history: str | Path | None = None
    ) -> None:
        if dim < 1:
            raise ValueError(f"latent dimension must be positive, got {dim}")
        self.dim = dim
        self.settings = settings or SamplerSettings()
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._history = EventHistory(history) if history is not None else None
        self._cores = CoreShare()
        self._index = make_index(self.settings.index, dim, self.settings.device, self.settings.index_probe)
        self._cells = Cells(dim, seed)  # S again, in cells: exact searches of large S on the CPU
        self._last_cut = -np.inf  # the last guess of the cap's cut (cap.likely_cut)
        # Every point ever added, in arrival order, with the nearest selected point
        # of discarded points (valid for S[:epoch]).
        self._x = Growing(np.float32, (dim,))
        self._ids: list[str] = []
        self._known: set[str] = set()
        self._status = Growing(np.int8)
        self._nn_dist = Growing(np.float64)
        self._nn_pos = Growing(np.int64)
        self._nn_epoch = Growing(np.int64)
        # S, in order of selection (seen indices).
        self._sel = Growing(np.int64)
        # C in slots (see _empty_pool); a free slot has age -1, score -inf and a negative limit.
        self._factor = filter_factor(dim)
        self._empty_pool(_pool_size(0))

    # ------------------------------------------------------------------ sizes
    @property
    def n_candidates(self) -> int:
        return self._n_alive

    @property
    def n_selected(self) -> int:
        return len(self._sel)

    @property
    def n_seen(self) -> int:
        return len(self._ids)

    @property
    def n_discarded(self) -> int:
        return self.n_seen - self.n_selected - self.n_candidates

    @property
    def selected_ids(self) -> list[str]:
        return [self._ids[i] for i in self._sel.view.tolist()]

    @property
    def selected_latents(self) -> np.ndarray:
        return self._index.points.copy()

    @property
    def selected_indices(self) -> np.ndarray:
        """Positions in :attr:`seen_latents` of the selected points, in order of selection."""
        return self._sel.view.copy()

    @property
    def seen_latents(self) -> np.ndarray:
        """Every point ever added, in arrival order (a read-only view)."""
        view = self._x.view.view()
        view.flags.writeable = False
        return view

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"DynimSampler(dim={self.dim}, k={s.k}, cap={s.candidate_cap}, index={s.index!r}: "
            f"{self.n_candidates} candidates, {self.n_selected} selected, {self.n_discarded} discarded)"
        )

    # ------------------------------------------------------------------- adds
    def add_candidates(self, ids: Sequence[str], latents: np.ndarray) -> IdView:
        """Score new candidates and insert them into C; return the ids this call discarded (a sequence that looks
        them up when read, :mod:`~mummi.sampler.id_view`).

        Raises
        ------
        SamplerInputError
            For a wrong shape, non-finite coordinates, or an id that is repeated or
            was added before; nothing is changed then.
        """
        x = self._validate(ids, latents)
        self._claim(ids)
        n = len(x)
        if n == 0:
            return IdView(self._ids, np.empty(0, dtype=np.int64))
        first = self.n_seen
        self._x.extend(x)
        self._ids.extend(ids)
        self._status.extend(np.full(n, CANDIDATE, dtype=np.int8))
        self._nn_dist.extend(np.full(n, np.inf))
        self._nn_pos.extend(np.full(n, -1))
        self._nn_epoch.extend(np.zeros(n, dtype=np.int64))

        with self._threads(n * len(self._sel)):  # the spatial order of _insert runs in parallel too
            dist, pos, dropped = self._search_arrivals(x)
            kept = np.flatnonzero(~dropped)
            rows = slice(None) if len(kept) == n else kept  # no copies when none was dropped
            discarded = self._insert(first + kept, x[rows], dist[rows], pos[rows])
        if len(kept) < n:  # the nearest selected point is searched when weights are asked for (epoch 0)
            gone = np.flatnonzero(dropped)
            self._status[first + gone] = DISCARDED
            self._nn_dist[first + gone], self._nn_pos[first + gone] = dist[gone, 0], pos[gone, 0]
            discarded = np.union1d(discarded, first + gone)
        self._event("add", "", np.nan, n)
        if len(discarded):
            self._event("discard", "", np.nan, len(discarded))
        return IdView(self._ids, discarded)

    def _search_arrivals(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """k-NN lists of new candidates, except for those surely cut by the cap (:mod:`~mummi.sampler.cap`):
        the lists and the mask of those dropped (only their first column is set: a selected point near
        them). Arrivals are dropped only where the exact index searches on the CPU and S is large
        enough for cells (:mod:`~mummi.sampler.cells`)."""
        k, cap, n = self.settings.k, self.settings.candidate_cap, len(x)
        if not self._index.exact or self._index.on_gpu or len(self._sel) < Cells.MIN_POINTS:
            return (*self._index.search(x, k), np.zeros(n, dtype=np.bool_))
        s = self._index.points
        if n < 4 * SAMPLE:
            return self._cells.search(s, x, k)
        sample = sample_rows(n)
        rest = np.setdiff1d(np.arange(n), sample)
        dist, pos, dropped = np.empty((n, k)), np.empty((n, k), dtype=np.int64), np.zeros(n, dtype=np.bool_)
        alive = self._c_score[self._c >= 0]
        floor = FLOOR * self._last_cut
        for _ in range(2):  # a second time, in full, if the floor was above the cut
            dist[sample], pos[sample], dropped[sample] = self._cells.search(s, x[sample], k, floor)
            sampled = np.where(dropped[sample], -np.inf, list_scores(dist[sample], len(self._sel)))
            give_up = likely_cut(alive, sampled, len(rest), cap, floor)
            if give_up > -np.inf or floor == -np.inf:
                break
            log.debug("floor %.6g above the cut; the sample searched again in full", floor)
            floor = -np.inf
        dist[rest], pos[rest], dropped[rest] = self._cells.search(s, x[rest], k, give_up)
        searched = list_scores(dist[~dropped], len(self._sel))
        if dropped.any() and not cut_holds(alive, searched, cap, give_up):
            give_up = sure_cut(alive, searched, cap)
            log.debug("cut guess failed; %d dropped arrivals searched again, down to %.6g", dropped.sum(), give_up)
            again = np.flatnonzero(dropped)
            dist[again], pos[again], dropped[again] = self._cells.search(s, x[again], k, give_up)
        self._last_cut = give_up
        return dist, pos, dropped

    def _validate(self, ids: Sequence[str], latents: np.ndarray) -> np.ndarray:
        if isinstance(ids, str):
            raise SamplerInputError("ids must be a sequence of strings, got one string")
        ids = list(ids)
        try:
            with np.errstate(over="ignore"):  # too large for float32: inf, refused below
                x = np.asarray(latents, dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise SamplerInputError(f"latents must be a numeric array, got {type(latents).__name__}") from err
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise SamplerInputError(f"latents must have shape (n, {self.dim}), got {x.shape}")
        if len(ids) != len(x):
            raise SamplerInputError(f"got {len(ids)} ids for {len(x)} latent rows")
        if not np.isfinite(x).all():
            i = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
            row = np.asarray(latents)[i].tolist()
            raise SamplerInputError(f"latents must be finite float32 values; row {i} (id {ids[i]!r}) is {row}")
        try:
            "".join(ids)  # fails on the first id that is not a string (an order faster than checking each type)
        except TypeError:
            wrong = next(i for i in ids if not isinstance(i, str))
            raise SamplerInputError(f"ids must be strings, got {wrong!r}") from None
        return x

    def _claim(self, ids: Sequence[str]) -> None:
        """Add ``ids`` to the known ids; for one repeated within ``ids`` or added before, raise and leave them as
        they were (one set update in the common case)."""
        known = len(self._known)
        self._known.update(ids)
        if len(self._known) == known + len(ids):
            return
        self._known = set(self._ids)
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            dup = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
            raise SamplerInputError(f"id {dup!r} appears twice in one add_candidates call")
        again = [i for i in ids if i in self._known]
        raise SamplerInputError(f"id {again[0]!r} was added before ({len(again)} repeated ids in this call)")

    def _insert(self, seen: np.ndarray, x: np.ndarray, dist: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """Put new candidates (k-NN lists valid for all of S) into free slots and
        enforce the cap; return the discarded seen indices, ascending."""
        score = list_scores(dist, len(self._sel))
        new = np.arange(len(seen))
        discarded = np.empty(0, dtype=np.int64)
        alive = np.flatnonzero(self._c >= 0)
        if len(alive) + len(seen) > self.settings.candidate_cap:
            stay = _best(
                np.concatenate([self._c_score[alive], score]),
                np.concatenate([self._c[alive], seen]),
                self.settings.candidate_cap,
            )
            gone, gone_new = alive[~stay[: len(alive)]], new[~stay[len(alive) :]]
            discarded = np.concatenate([self._c[gone], seen[gone_new]])
            self._status[discarded] = DISCARDED
            self._nn_dist[discarded] = np.concatenate([self._c_dist[gone, 0], dist[gone_new, 0]])
            self._nn_pos[discarded] = np.concatenate([self._c_pos[gone, 0], pos[gone_new, 0]])
            self._nn_epoch[discarded] = len(self._sel)
            self._free(gone)
            new = new[stay[len(alive) :]]
        self._place(new, seen, score, dist, pos, x)
        return np.sort(discarded)

    def _place(
        self, rows: np.ndarray, age: np.ndarray, score: np.ndarray, dist: np.ndarray, pos: np.ndarray, x: np.ndarray
    ) -> None:
        """Put the new candidates ``rows`` (of the arrays given) into fresh blocks after the used slots, in spatial
        order (:mod:`~mummi.sampler.layout`); where they do not fit, the live candidates close ranks first (or,
        from :data:`SORT_POOL_FROM` selected points on, all are laid out again)."""
        if len(rows) == 0:
            return
        start = -(-self._used // BLOCK) * BLOCK
        if start + len(rows) > len(self._c):
            if len(self._sel) >= SORT_POOL_FROM:  # _set_pool puts all in spatial order
                live = np.flatnonzero(self._c >= 0)
                self._set_pool(
                    np.concatenate([self._c[live], age[rows]]),
                    np.concatenate([self._c_score[live], score[rows]]),
                    np.concatenate([self._c_dist[live], dist[rows]]),
                    np.concatenate([self._c_pos[live], pos[rows]]),
                    np.concatenate([self._c_x[live], x[rows]]),
                )
                return
            start = self._close_ranks(self._n_alive + len(rows))
        self._put(start, spatial_order(x, rows, BLOCK), age, score, dist, pos, x)

    def _set_pool(
        self,
        age: np.ndarray,
        score: np.ndarray,
        dist: np.ndarray,
        pos: np.ndarray,
        x: np.ndarray,
    ) -> None:
        """Lay out the candidates (all live) in spatial order in a fresh pool (:meth:`_empty_pool`)."""
        self._empty_pool(_pool_size(len(age)))
        self._put(0, spatial_order(x, np.arange(len(age)), BLOCK), age, score, dist, pos, x)

    def _close_ranks(self, n: int) -> int:
        """Move the live candidates, in the order they are in, to the first slots of a pool sized for ``n``
        candidates: the same arrays if their size is about right, else fresh ones. Returns the first free slot."""
        live = np.flatnonzero(self._c >= 0)
        size = _pool_size(n)
        pool = self._c, self._c_score, self._c_dist, self._c_pos, self._c_x
        if size <= len(self._c) <= 2 * size:
            self._n_alive = self._used = 0
            self._put(0, live, *pool)
            self._c[len(live) :], self._c_score[len(live) :], self._c_limit[len(live) :] = -1, -np.inf, -1.0
        else:
            self._empty_pool(size)
            self._put(0, live, *pool)
        return len(live)

    def _empty_pool(self, size: int) -> None:
        """Fresh slot arrays, all ``size`` slots free: the arrival index (age) of the candidate in each, its score,
        k-NN list and latent (row-major, and by block for the compiled filter: blocks, dim, BLOCK), and the
        filter's limit (negative in free slots)."""
        k, dim = self.settings.k, self.dim
        self._c, self._c_score, self._c_limit = np.full(size, -1), np.full(size, -np.inf), np.full(size, -1.0)
        self._c_dist, self._c_pos = np.full((size, k), np.inf), np.full((size, k), -1)
        self._c_x, self._c_xb = np.zeros((size, dim), np.float32), np.zeros((size // BLOCK, dim, BLOCK), np.float32)
        self._n_alive = self._used = 0

    def _put(
        self, start: int, rows: np.ndarray, age: np.ndarray, score: np.ndarray, dist: np.ndarray, pos: np.ndarray,
        x: np.ndarray,
    ) -> None:  # fmt: skip
        """Candidates ``rows`` of the arrays given into the slots from ``start`` on
        (:func:`~mummi.sampler.layout.put_rows`)."""
        end = start + len(rows)
        put_rows(start, rows, age, score, dist, pos, x, self._c, self._c_score, self._c_dist, self._c_pos, self._c_x,
                 self._c_xb)  # fmt: skip
        self._c_limit[start:end] = self._limits(slice(start, end))
        self._n_alive += len(rows)
        self._used = max(self._used, end)

    def _limits(self, slots: np.ndarray | slice) -> np.ndarray:
        kth = self._c_dist[slots, -1]
        return np.where(self._c[slots] >= 0, filter_limit(kth, self._factor), -1.0)

    def _free(self, slots: np.ndarray) -> None:
        self._c[slots], self._c_score[slots], self._c_limit[slots] = -1, -np.inf, -1.0
        self._n_alive -= len(slots)

    def _alive(self) -> np.ndarray:
        """Slots of the candidates, in arrival order."""
        alive = np.flatnonzero(self._c >= 0)
        return alive[np.argsort(self._c[alive])]

    # -------------------------------------------------------------- selection
    def select(self, n: int) -> list[Selection]:
        """Pick up to ``n`` candidates one after another (fewer if C runs out)."""
        if n < 0:
            raise ValueError(f"the number of selections must be >= 0, got {n}")
        with self._threads(n * self._n_alive):
            # Every block bounded by a shell (layout.block_shells); picks only empty slots, so the shells hold
            # for the whole call.
            return self._select(n, block_shells(self._c_x, self._c_limit, BLOCK))

    def _select(self, n: int, shells: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> list[Selection]:
        picks: list[Selection] = []
        threads = numba.get_num_threads()
        while len(picks) < n and self._n_alive > 0 and len(self._sel) < self.settings.warmup:
            slot = int(self._alive()[self._rng.integers(self._n_alive)])
            score = self._c_score[slot]
            self._c_score[slot], self._c_limit[slot] = -np.inf, -1.0
            best = block_bests(self._c_score, self._c)
            absorb(*self._pool(), *shells, slot, len(self._sel), self._factor, best, threads)
            picks += self._record(np.array([slot]), np.array([score]), random=True)
        if len(picks) < n and self._n_alive > 0:
            slots, scores = greedy_picks(*self._pool(), *shells, n - len(picks), len(self._sel), self._factor, threads)
            picks += self._record(slots, scores, random=False)
        if len(picks) < n:
            log.info("asked for %d selections, C had only %d candidates", n, len(picks))
        return picks

    def _pool(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The candidate slots as the compiled loops take them (then their blocks' shells)."""
        return self._c_xb, self._c_x, self._c, self._c_score, self._c_dist, self._c_pos, self._c_limit

    def _record(self, slots: np.ndarray, scores: np.ndarray, random: bool) -> list[Selection]:
        """Move the picked ``slots`` (in picking order, already merged into the other candidates' lists) to S."""
        first, n_alive = len(self._sel), self._n_alive
        seen = self._c[slots].copy()
        self._index.add(self._c_x[slots])
        self._sel.extend(seen)
        self._status[seen] = SELECTED
        self._free(slots)
        picks = []
        for i, (j, score) in enumerate(zip(seen.tolist(), scores.tolist())):
            if self._history is not None:
                self._history.append("select", self._ids[j], score, 1, n_alive - i - 1, first + i + 1, self.n_seen)
            picks.append(Selection(self._ids[j], score, first + i, random))
        return picks

    @contextlib.contextmanager
    def _threads(self, work: int) -> Iterator[None]:
        """Run a phase of ``work`` pairs on one thread if it is small, else on the cores free now
        (:mod:`~mummi.sampler.core_share`), at most the compiled loops' thread count."""
        limit = numba.get_num_threads()
        numba.set_num_threads(1 if work < SERIAL_WORK else self._cores.threads(limit))
        try:
            yield
        finally:
            numba.set_num_threads(limit)

    # ---------------------------------------------------------------- weights
    def weights(self, normalize: bool | None = None) -> dict[str, float]:
        """DynIm weight of every selected patch, by id (see :meth:`weight_array`)."""
        return dict(zip(self.selected_ids, self.weight_array(normalize).tolist()))

    def weight_array(self, normalize: bool | None = None) -> np.ndarray:
        """Weights of the selected points in order of selection.

        ``w(q) = 1 + number of seen, non-selected points whose nearest selected point
        is q``; scaled to mean 1 when ``normalize`` (default: the settings'). Exact
        with the ``flat`` index.
        """
        n_sel = len(self._sel)
        if n_sel == 0:
            return np.empty(0)
        alive = np.flatnonzero(self._c >= 0)
        self._update_discarded()
        discarded = self._status.view == DISCARDED
        nearest = np.concatenate([self._c_pos[alive, 0], self._nn_pos[discarded]])
        w = 1.0 + np.bincount(nearest[nearest >= 0], minlength=n_sel)
        if self.settings.normalize_weights if normalize is None else normalize:
            w *= n_sel / w.sum()
        return w

    def _update_discarded(self) -> None:
        """Bring the nearest selected point of every discarded point up to date.

        Exact whatever the index: each point is only compared with the points selected
        since its nearest one was last known, and those beyond that one's distance are
        ruled out by the triangle inequality (:meth:`Cells.refine <mummi.sampler.cells.Cells.refine>`
        once S is large, else :func:`grouped_knn`).
        """
        n_sel = len(self._sel)
        todo = np.flatnonzero((self._status.view == DISCARDED) & (self._nn_epoch.view < n_sel))
        if n_sel >= Cells.MIN_POINTS:  # each point with a known selected point: through the cells of S
            near, todo = todo[self._nn_pos[todo] >= 0], todo[self._nn_pos[todo] < 0]
            dist, pos = self._nn_dist[near][:, None], self._nn_pos[near][:, None]
            with self._threads(len(near) * n_sel):
                self._cells.refine(self._index.points, self._x[near], dist, pos, self._nn_epoch[near])
            self._nn_dist[near], self._nn_pos[near], self._nn_epoch[near] = dist[:, 0], pos[:, 0], n_sel
        if len(todo) == 0:
            return
        epoch = self._nn_epoch[todo]
        first = int(epoch.min())
        # Positions relative to S[first:]: the known neighbours become negative, so
        # they stay first among equal distances.
        dist, pos = self._nn_dist[todo][:, None], self._nn_pos[todo][:, None] - first
        with self._threads(len(todo) * (n_sel - first)):
            grouped_knn(self._x[todo], self._index.points[first:], 1, dist, pos, epoch - first)
        self._nn_dist[todo], self._nn_pos[todo] = dist[:, 0], pos[:, 0] + first
        self._nn_epoch[todo] = n_sel

    # ------------------------------------------------------------- inspection
    def candidate_scores(self) -> tuple[list[str], np.ndarray]:
        """Ids and exact current scores of the candidates, in arrival order."""
        alive = self._alive()
        return [self._ids[i] for i in self._c[alive].tolist()], self._c_score[alive].copy()

    # ------------------------------------------------------------ persistence
    def _event(self, event: str, patch_id: str, score: float, count: int) -> None:
        if self._history is not None:
            self._history.append(event, patch_id, score, count, self.n_candidates, self.n_selected, self.n_seen)

    def checkpoint(
        self, directory: str | Path, generation: int | None = None, base: int | None = None, prune: bool = True
    ) -> int:
        """Write the state to ``directory`` as a new generation (no pickle); flush the history first.

        Every point's latent and id is written once, by the first generation that holds it
        (:mod:`mummi.sampler.checkpoint`; ``base``: the generation whose rows are reused).
        ``prune`` removes the other generations; a caller that records the current one
        elsewhere prunes after moving its record. Returns the generation.
        """
        if self._history is not None:
            self._history.flush()
        arrays = {
            "status": self._status.view, "nn_dist": self._nn_dist.view, "nn_pos": self._nn_pos.view,
            "nn_epoch": self._nn_epoch.view, "sel": self._sel.view,
        }  # fmt: skip
        alive = self._alive()
        for name in ("c", "c_dist", "c_pos", "c_score"):
            arrays[name] = getattr(self, f"_{name}")[alive]
        meta = {
            "dim": self.dim,
            "seed": self.seed,
            "settings": self.settings.model_dump(mode="json"),
            "rng": self._rng.bit_generator.state,
            "history": None if self._history is None else {"path": str(self._history.path), "size": self._history.size},
        }
        saved = ckpt.save(directory, arrays, meta, rows={"x": self._x.view, "ids": self._ids}, generation=generation,
                          base=base)  # fmt: skip
        if prune:
            ckpt.prune(directory, saved)
        return saved

    @classmethod
    def restore(
        cls, directory: str | Path, history: str | Path | None = None, generation: int | None = None
    ) -> DynimSampler:
        """The sampler saved in ``directory`` by :meth:`checkpoint` (``generation``; default: the newest).

        The history continues in ``history`` (default: the file recorded in the
        checkpoint). The recorded file is cut back to its length at checkpoint time:
        later events belong to a run that is lost.
        """
        arrays, meta = ckpt.load(directory, generation)
        recorded = meta["history"]
        if recorded is not None:
            history = history or recorded["path"]
            if Path(history).resolve() == Path(recorded["path"]).resolve():
                EventHistory.truncate(history, recorded["size"])
        self = cls(meta["dim"], SamplerSettings.model_validate(meta["settings"]), meta["seed"], history)
        self._rng.bit_generator.state = meta["rng"]
        self._x = Growing.of(arrays["x"].astype(np.float32, copy=False).reshape(-1, self.dim))
        self._ids = arrays["ids"].tolist()
        self._known = set(self._ids)
        for name in ("status", "nn_dist", "nn_pos", "nn_epoch", "sel"):
            setattr(self, f"_{name}", Growing.of(arrays[name]))
        self._index.add(self._x[self._sel.view])
        alive = arrays["c_score"] > -np.inf
        c = arrays["c"][alive]
        with self._threads(len(c) * len(self._sel)):
            self._set_pool(c, arrays["c_score"][alive], arrays["c_dist"][alive], arrays["c_pos"][alive], self._x[c])
        return self
