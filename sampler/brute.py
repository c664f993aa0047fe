"""A plain numpy reference of DynIm: every score recomputed from scratch before each pick.

It follows the rules of :mod:`mummi.sampler.dynim` literally and slowly (every
candidate against every selected point, every time), with the same canonical
distances and the same warm-up draws, so the fast sampler must reproduce its
selections and weights exactly. For tests and small benchmarks only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mummi.sampler.knn import cross_sq_dist, knn_scores


class BruteForceSampler:
    def __init__(self, dim: int, k: int = 10, candidate_cap: int = 35_000, warmup: int = 0, seed: int = 0) -> None:
        self.dim, self.k, self.cap, self.warmup = dim, k, candidate_cap, warmup
        self._rng = np.random.default_rng(seed)
        self._x = np.empty((0, dim), dtype=np.float32)
        self.ids: list[str] = []
        self.candidates: list[int] = []  # arrival order
        self.selected: list[int] = []  # selection order
        self.discarded: list[int] = []

    def scores(self, rows: Sequence[int]) -> np.ndarray:
        """Scores of seen points ``rows`` against all selected points."""
        s = self._x[self.selected]
        if len(s) == 0:
            return np.full(len(rows), np.inf)
        d = np.sort(np.sqrt(cross_sq_dist(self._x[list(rows)], s)), axis=1)[:, : self.k]
        knn = np.full((len(rows), self.k), np.inf)
        knn[:, : d.shape[1]] = d
        return knn_scores(knn, len(s))

    def add_candidates(self, ids: Sequence[str], latents: np.ndarray) -> list[str]:
        first = len(self.ids)
        self._x = np.concatenate([self._x, np.asarray(latents, dtype=np.float32)])
        self.ids.extend(ids)
        self.candidates.extend(range(first, first + len(ids)))
        if len(self.candidates) <= self.cap:
            return []
        scores = self.scores(self.candidates)
        order = np.lexsort((np.array(self.candidates), -scores))  # score down, then age
        drop = sorted(self.candidates[i] for i in order[self.cap :])
        self.candidates = sorted(self.candidates[i] for i in order[: self.cap])
        self.discarded.extend(drop)
        return [self.ids[i] for i in drop]

    def select(self, n: int) -> list[tuple[str, float]]:
        picks = []
        for _ in range(n):
            if not self.candidates:
                break
            scores = self.scores(self.candidates)
            if len(self.selected) < self.warmup:
                i = int(self._rng.integers(len(self.candidates)))
            else:
                i = int(np.argmax(scores))  # first maximum: the oldest
            picks.append((self.ids[self.candidates[i]], float(scores[i])))
            self.selected.append(self.candidates.pop(i))
        return picks

    def weights(self) -> np.ndarray:
        """1 + the number of non-selected seen points whose nearest selected point is each q."""
        s = self._x[self.selected]
        others = self.candidates + self.discarded
        w = np.ones(len(s))
        if len(s) and others:
            nearest = np.argmin(np.sqrt(cross_sq_dist(self._x[others], s)), axis=1)  # first minimum: the oldest
            w += np.bincount(nearest, minlength=len(s))
        return w
