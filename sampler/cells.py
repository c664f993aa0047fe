"""Exact k-NN search of new points among the selected points, cell by cell, giving up on points the cap will cut.

The selected set S is cut into k-means cells of about 256 points (trained again
whenever S has grown by half; points selected since join their nearest cell). Each cell
keeps its members in order of their distance to its centre, so a query scans only
the window of each cell that the triangle inequality leaves in reach, and skips
cells out of reach (:func:`~mummi.sampler.kernels.cell_knn`). Cells are visited
nearest first: the k nearest members of the first few bound the query's DynIm score
from above, and most arrivals of a long campaign are proven below the cap's cut
(:mod:`mummi.sampler.cap`) after a few hundred distances, where a full search needs
thousands. The cells only affect speed: every distance that decides is canonical.
"""

from __future__ import annotations

import numpy as np

from mummi.sampler.groups import nearest_centre
from mummi.sampler.kernels import cell_knn, cell_refine, filter_factor
from mummi.sampler.knn import row_sq_dist
from mummi.sampler.layout import BLOCK, spatial_order

VISITS = 6  # nearest cells visited before a query may give up
GROWTH = 1.5  # the cells are trained again whenever S has grown by this factor
_PER_CELL = 256


class Cells:
    """k-means cells of the selected points, each in order of distance to its centre."""

    MIN_POINTS = 8192  # fewer selected points: a search of S without cells is as fast

    def __init__(self, dim: int, seed: int = 0) -> None:
        self.dim, self.seed = dim, seed
        self._trained_at = 0
        self._centres_t = np.empty((dim, 0), dtype=np.float32)
        # The members cell by cell, each cell in order of distance to its centre: their positions
        # in S, those distances, their latents (transposed), and where each cell starts.
        self._order = np.empty(0, dtype=np.int64)
        self._ds = np.empty(0)
        self._members_t = np.empty((dim, 0), dtype=np.float32)
        self._cell_start = np.zeros(1, dtype=np.int64)

    def search(
        self, points: np.ndarray, q: np.ndarray, k: int, give_up: float = -np.inf
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Canonical k-NN lists of ``q`` among ``points`` (S in order of selection), except for the
        queries proven to score below ``give_up``: the lists and the mask of those dropped (their
        rows hold only a selected point near them, in the first column)."""
        self._update(points)
        n = len(q)
        dist, pos = np.full((n, k), np.inf), np.full((n, k), -1, dtype=np.int64)
        dropped = np.zeros(n, dtype=np.bool_)
        q = np.ascontiguousarray(q, dtype=np.float32)
        cell_knn(q, self._centres_t, self._cell_start, self._members_t, self._order, self._ds, VISITS,
                 filter_factor(self.dim), dist, pos, give_up, dropped)  # fmt: skip
        return dist, pos, dropped

    def refine(self, points: np.ndarray, q: np.ndarray, dist: np.ndarray, pos: np.ndarray, start: np.ndarray) -> None:
        """Bring the canonical k-NN lists ``dist``, ``pos`` of ``q`` among ``points[:start[i]]`` (full, so
        finite) up to date with all of ``points``, in place (:func:`~mummi.sampler.kernels.cell_refine`;
        queries go in order of their nearest known point in a spatial order of ``points``). A list with
        ``start`` 0 may hold any one point (a dropped arrival's): met again, it enters again, so k = 1."""
        self._update(points)
        rank = np.empty(len(points), dtype=np.int64)
        rank[spatial_order(points, np.arange(len(points)), BLOCK)] = np.arange(len(points))
        by_near = np.argsort(rank[pos[:, 0]], kind="stable")
        cell_refine(np.ascontiguousarray(q, dtype=np.float32), by_near, self._centres_t, self._cell_start,
                    self._members_t, self._order, self._ds, start.astype(np.int64), dist, pos,
                    filter_factor(self.dim))  # fmt: skip

    def _update(self, points: np.ndarray) -> None:
        """Train the cells again if S has grown by half, else put the points selected since into their cells."""
        n_old = len(self._order)
        if len(points) >= GROWTH * self._trained_at:
            import faiss

            kmeans = faiss.Kmeans(self.dim, max(1, len(points) // _PER_CELL), niter=8, seed=self.seed,
                                  max_points_per_centroid=64)  # fmt: skip
            kmeans.train(points)
            self._centres_t = np.ascontiguousarray(np.asarray(kmeans.centroids, dtype=np.float32).T)
            self._trained_at, n_old = len(points), 0
        if len(points) == n_old:
            return
        new = points[n_old:]
        centres = self._centres_t.T
        label = nearest_centre(new, centres)
        ds = np.sqrt(row_sq_dist(new, centres[label]))
        if n_old == 0:
            self._order = np.lexsort((ds, label))
            self._ds, self._members_t = ds[self._order], np.ascontiguousarray(points[self._order].T)
            self._cell_start = np.searchsorted(label[self._order], np.arange(centres.shape[0] + 1))
            return
        # Each new point goes after the members of its cell that are nearer to the centre
        # (and after the new ones of its cell that are nearer).
        by = np.lexsort((ds, label))
        label, ds, new, fresh = label[by], ds[by], new[by], n_old + by
        at = np.array([self._cell_start[c] + np.searchsorted(self._ds[self._cell_start[c] : self._cell_start[c + 1]], d)
                       for c, d in zip(label.tolist(), ds.tolist())], dtype=np.int64)  # fmt: skip
        self._order = np.insert(self._order, at, fresh)
        self._ds = np.insert(self._ds, at, ds)
        self._members_t = np.insert(self._members_t, at, new.T, axis=1)
        self._cell_start += np.searchsorted(label, np.arange(len(self._cell_start)))
