"""Search structures over the selected set S, chosen by name (:func:`make_index`).

``flat`` is exact: FAISS's flat L2 search (on a GPU when FAISS sees one) proposes
``k + extra`` neighbours, they are recomputed canonically (:mod:`mummi.sampler.knn`),
and a row is accepted only when the float32 error bound proves that no unproposed
point can be nearer than its k-th neighbour; doubtful rows are recomputed by brute
force. ``ivf`` and ``hnsw`` are FAISS's approximate indexes for very large S: the
distances they return are canonical, but a true neighbour may be missed.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np

from mummi.sampler.knn import cross_sq_dist, row_sq_dist, slack, sq_norms

log = logging.getLogger(__name__)

IndexKind = Literal["flat", "ivf", "hnsw"]
Device = Literal["auto", "cpu", "gpu"]


def use_gpu(device: Device) -> bool:
    """Whether FAISS should run on a GPU: ``auto`` uses one when present, ``gpu`` requires one."""
    import faiss

    n_gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if device == "gpu" and n_gpus == 0:
        msg = "sampler device 'gpu' was asked for but FAISS sees no GPU; install faiss-gpu or use device 'auto' or 'cpu'"
        raise RuntimeError(msg)
    return device != "cpu" and n_gpus > 0


class SelectedIndex:
    """The selected latents in order of selection, searchable for k nearest neighbours."""

    exact = True

    def __init__(self, dim: int, device: Device = "auto") -> None:
        self.dim = dim
        self._x = np.empty((1024, dim), dtype=np.float32)
        self._n = 0
        self._max_sq_norm = 0.0
        self._gpu = use_gpu(device)
        self._gpu_res: Any = None

    def __len__(self) -> int:
        return self._n

    @property
    def points(self) -> np.ndarray:
        """The selected latents in order of selection (a view)."""
        return self._x[: self._n]

    def add(self, x: np.ndarray) -> None:
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, self.dim)
        if len(x) == 0:
            return
        if self._n + len(x) > len(self._x):
            grown = np.empty((max(2 * len(self._x), self._n + len(x)), self.dim), dtype=np.float32)
            grown[: self._n] = self.points
            self._x = grown
        self._x[self._n : self._n + len(x)] = x
        self._n += len(x)
        self._max_sq_norm = max(self._max_sq_norm, float(sq_norms(x).max()))
        self._add(x)

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k nearest selected points of each query.

        Returns canonical distances (n, k) float64, ascending, and positions in S
        (n, k) int64. Missing neighbours (fewer than k selected, or not found by an
        approximate index) are ``inf`` at position -1; equal distances list the older
        selected point first.
        """
        q = np.ascontiguousarray(q, dtype=np.float32).reshape(-1, self.dim)
        kk = k + max(k, 8)
        if self._n <= kk:
            cand = np.broadcast_to(np.arange(self._n, dtype=np.int64), (len(q), self._n))
            return _sorted_canonical(q, self.points, cand, k)
        approx, cand = self._propose(q, kk)
        dist, pos = _sorted_canonical(q, self.points, cand.astype(np.int64), k)
        if self.exact:
            # Every unproposed point has approx >= approx[:, -1]; it cannot beat the
            # k-th neighbour if even its error-corrected distance is larger.
            bound = approx[:, -1].astype(np.float64) - slack(self.dim) * (sq_norms(q) + self._max_sq_norm)
            doubtful = np.flatnonzero(~(bound > dist[:, -1] ** 2 * (1 + 1e-12)))
            if len(doubtful):
                log.debug("flat search: %d of %d rows recomputed by brute force", len(doubtful), len(q))
                dist[doubtful], pos[doubtful] = brute_knn(q[doubtful], self.points, k)
        return dist, pos

    def _to_gpu(self, index: Any) -> Any:
        if not self._gpu:
            return index
        import faiss

        self._gpu_res = self._gpu_res or faiss.StandardGpuResources()
        return faiss.index_cpu_to_gpu(self._gpu_res, 0, index)

    # -- backends ------------------------------------------------------------
    def _add(self, x: np.ndarray) -> None:
        raise NotImplementedError

    def _propose(self, q: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        """Approximate squared distances and positions (n, kk) of proposed neighbours (-1: none)."""
        raise NotImplementedError


class FlatIndex(SelectedIndex):
    """Exact search."""

    def __init__(self, dim: int, device: Device = "auto") -> None:
        super().__init__(dim, device)
        import faiss

        self._index = self._to_gpu(faiss.IndexFlatL2(dim))

    def _add(self, x: np.ndarray) -> None:
        self._index.add(x)

    def _propose(self, q: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        return self._index.search(q, kk)


class IVFIndex(SelectedIndex):
    """Inverted lists over k-means cells; exact flat search until S is large enough to train."""

    exact = False

    def __init__(self, dim: int, device: Device = "auto", nlist: int = 1024, nprobe: int = 16) -> None:
        super().__init__(dim, device)
        import faiss

        self.nlist, self.nprobe = nlist, nprobe
        self._flat = faiss.IndexFlatL2(dim)
        self._ivf: Any = None

    def _add(self, x: np.ndarray) -> None:
        if self._ivf is not None:
            self._ivf.add(x)
            return
        self._flat.add(x)
        if self._n >= 39 * self.nlist:
            import faiss

            quantizer = faiss.IndexFlatL2(self.dim)
            ivf = faiss.IndexIVFFlat(quantizer, self.dim, self.nlist)
            ivf.train(self.points)
            ivf.add(self.points)
            ivf.nprobe = self.nprobe
            self._ivf = self._to_gpu(ivf)
            self._flat = None
            log.info("IVF index trained on %d selected points (%d lists, nprobe %d)", self._n, self.nlist, self.nprobe)

    def _propose(self, q: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        return (self._ivf or self._flat).search(q, kk)


class HNSWIndex(SelectedIndex):
    """Hierarchical navigable small-world graph (CPU only)."""

    exact = False

    def __init__(self, dim: int, device: Device = "auto", m: int = 32, ef_search: int = 64) -> None:
        super().__init__(dim, "cpu" if device == "auto" else device)
        import faiss

        self._index = faiss.IndexHNSWFlat(dim, m)
        self._index.hnsw.efConstruction = 80
        self._index.hnsw.efSearch = ef_search

    def _add(self, x: np.ndarray) -> None:
        self._index.add(x)

    def _propose(self, q: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        return self._index.search(q, kk)


def make_index(kind: IndexKind, dim: int, device: Device = "auto", probe: int | None = None) -> SelectedIndex:
    """An empty index of ``kind``; ``probe`` is IVF's nprobe or HNSW's efSearch."""
    if kind == "flat":
        return FlatIndex(dim, device)
    if kind == "ivf":
        return IVFIndex(dim, device, nprobe=probe or 16)
    if kind == "hnsw":
        return HNSWIndex(dim, device, ef_search=probe or 64)
    msg = f"unknown sampler index {kind!r}; allowed: 'flat' (exact), 'ivf', 'hnsw'"
    raise ValueError(msg)


def _sorted_canonical(q: np.ndarray, points: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Canonical distances to the proposed positions, sorted by (distance, position), cut or padded to k."""
    n, kk = cand.shape
    valid = cand >= 0
    d2 = row_sq_dist(np.repeat(q, kk, axis=0), points[np.where(valid, cand, 0).ravel()]).reshape(n, kk)
    d2[~valid] = np.inf
    order = np.lexsort((cand, d2), axis=1)[:, :k]
    dist = np.full((n, k), np.inf)
    pos = np.full((n, k), -1, dtype=np.int64)
    m = order.shape[1]
    dist[:, :m] = np.sqrt(np.take_along_axis(d2, order, axis=1))
    pos[:, :m] = np.take_along_axis(cand, order, axis=1)
    pos[~np.isfinite(dist)] = -1
    return dist, pos


def brute_knn(q: np.ndarray, points: np.ndarray, k: int, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours by canonical distances to every point (ties: smaller position)."""
    dist = np.full((len(q), k), np.inf)
    pos = np.full((len(q), k), -1, dtype=np.int64)
    for start in range(0, len(q), chunk):
        d2 = cross_sq_dist(q[start : start + chunk], points)
        idx = np.broadcast_to(np.arange(len(points), dtype=np.int64), d2.shape)
        rows = slice(start, start + len(d2))
        dist[rows], pos[rows] = _sorted_from_sq(d2, idx, k)
    return dist, pos


def _sorted_from_sq(d2: np.ndarray, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((idx, d2), axis=1)[:, :k]
    dist = np.full((len(d2), k), np.inf)
    pos = np.full((len(d2), k), -1, dtype=np.int64)
    m = order.shape[1]
    dist[:, :m] = np.sqrt(np.take_along_axis(d2, order, axis=1))
    pos[:, :m] = np.take_along_axis(idx, order, axis=1)
    return dist, pos
