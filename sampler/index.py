"""Search structures over the selected set S, chosen by name (:func:`make_index`).

``flat`` is exact: FAISS's flat L2 search (on a GPU when FAISS sees one) proposes
``k + extra`` neighbours, they are recomputed canonically (:mod:`mummi.sampler.knn`),
and a row is accepted only when the float32 error bound proves that no unproposed
point can be nearer than its k-th neighbour; doubtful rows are recomputed by brute
force. ``ivf`` and ``hnsw`` are FAISS's approximate indexes for very large S: they
return FAISS's float32 distances, and a true neighbour may be missed. New points are
handed to FAISS in one batch before the next search (per-point adds are slow).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np

from mummi.sampler.buffers import Growing
from mummi.sampler.groups import grouped_knn, worth_grouping
from mummi.sampler.knn import cross_sq_dist, row_sq_dist, slack, sq_norms

log = logging.getLogger(__name__)

IndexKind = Literal["flat", "ivf", "hnsw"]
Device = Literal["auto", "cpu", "gpu"]


def use_gpu(device: Device) -> bool:
    """Whether FAISS should run on a GPU: ``auto`` uses one when present, ``gpu`` requires one."""
    import faiss

    n_gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if device == "gpu" and n_gpus == 0:
        msg = (
            "sampler device 'gpu' was asked for but FAISS sees no GPU; install faiss-gpu or use device 'auto' or 'cpu'"
        )
        raise RuntimeError(msg)
    return device != "cpu" and n_gpus > 0


class SelectedIndex:
    """The selected latents in order of selection, searchable for k nearest neighbours."""

    exact = True
    _index: Any  # the FAISS index, built by each subclass's __init__

    def __init__(self, dim: int, device: Device = "auto") -> None:
        self.dim = dim
        self._x = Growing(np.float32, (dim,))
        self._indexed = 0  # points handed to the backend; the rest wait for the next search
        self._max_sq_norm = 0.0
        self._gpu = use_gpu(device)
        self._gpu_res: Any = None

    def __len__(self) -> int:
        return len(self._x)

    @property
    def on_gpu(self) -> bool:
        return self._gpu

    @property
    def points(self) -> np.ndarray:
        """The selected latents in order of selection (a view)."""
        return self._x.view

    def add(self, x: np.ndarray) -> None:
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, self.dim)
        if len(x) == 0:
            return
        self._x.extend(x)
        self._max_sq_norm = max(self._max_sq_norm, float(sq_norms(x).max()))

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k nearest selected points of each query.

        Returns distances (n, k) float64, ascending, and positions in S (n, k)
        int64; missing neighbours (fewer than k selected, or not found by an
        approximate index) are ``inf`` at position -1. The exact index returns
        canonical distances, equal ones listing the older selected point first; an
        approximate index returns FAISS's float32 distances as they come.
        """
        q = np.ascontiguousarray(q, dtype=np.float32).reshape(-1, self.dim)
        n = len(self)
        kk = k + 2 if self.exact else k  # two spare proposals for the exactness certificate
        if n <= kk:
            cand = np.broadcast_to(np.arange(n, dtype=np.int64), (len(q), n))
            return _sorted_canonical(q, self.points, cand, k)
        approx, cand = self._propose(q, kk)
        cand = cand.astype(np.int64)
        if not self.exact:  # FAISS's float32 distances, already sorted
            dist = np.sqrt(np.maximum(approx, 0), dtype=np.float64)
            dist[cand < 0] = np.inf
            return dist, cand
        dist, pos = _sorted_canonical(q, self.points, cand, k)
        # Every unproposed point has approx >= approx[:, -1]; it cannot beat the
        # k-th neighbour if even its error-corrected distance is larger.
        bound = approx[:, -1].astype(np.float64) - slack(self.dim) * (sq_norms(q) + self._max_sq_norm) - 1e-30
        doubtful = np.flatnonzero(~(bound > dist[:, -1] ** 2 * (1 + 1e-12)))
        if len(doubtful):
            log.debug("flat search: %d of %d rows recomputed by brute force", len(doubtful), len(q))
            dist[doubtful], pos[doubtful] = brute_knn(q[doubtful], self.points, k)
        return dist, pos

    def _propose(self, q: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        """Approximate squared distances and positions (n, kk) of proposed neighbours (-1: none)."""
        if len(self._x) > self._indexed:
            self._add(_padded(self.points[self._indexed :]))
            self._indexed = len(self._x)
        return self._index.search(_padded(q), kk)

    def _to_gpu(self, index: Any) -> Any:
        if not self._gpu:
            return index
        import faiss

        self._gpu_res = self._gpu_res or faiss.StandardGpuResources()
        return faiss.index_cpu_to_gpu(self._gpu_res, 0, index)

    def _add(self, x: np.ndarray) -> None:
        """Hand new points to the FAISS index ``self._index`` (batched: called before a search)."""
        self._index.add(x)


class FlatIndex(SelectedIndex):
    """Exact search.

    Large query batches on the CPU are searched group by group
    (:mod:`mummi.sampler.groups`), each query only against the selected points
    that the triangle inequality cannot rule out.
    """

    def __init__(self, dim: int, device: Device = "auto") -> None:
        super().__init__(dim, device)
        import faiss

        self._index = self._to_gpu(faiss.IndexFlatL2(_padded_dim(dim)))

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._gpu or not worth_grouping(len(q), len(self)):
            return super().search(q, k)
        return grouped_knn(q, self.points, k)


class IVFIndex(SelectedIndex):
    """Inverted lists over k-means cells of S, retrained whenever S has doubled.

    About ``3 sqrt(|S|)`` lists (a power of two, 16 to 4096, at least 39 training
    points each), ``nprobe`` of them searched per query; exact flat search while S
    has fewer than 1024 points.
    """

    exact = False

    def __init__(self, dim: int, device: Device = "auto", nprobe: int = 8) -> None:
        super().__init__(dim, device)
        import faiss

        self.nprobe = nprobe
        self._index = faiss.IndexFlatL2(_padded_dim(dim))
        self._trained_at = 0

    def _add(self, x: np.ndarray) -> None:
        n = len(self)
        if n < max(1024, 2 * self._trained_at):
            self._index.add(x)
            return
        import faiss

        nlist = int(np.clip(2 ** round(np.log2(3 * np.sqrt(n))), 16, 4096))
        while 39 * nlist > n:
            nlist //= 2
        d, points = _padded_dim(self.dim), _padded(self.points)
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
        ivf.train(points)
        ivf.add(points)
        ivf.nprobe = self.nprobe
        self._index = self._to_gpu(ivf)
        self._trained_at = n
        log.debug("IVF index retrained on %d selected points (%d lists)", n, nlist)


class HNSWIndex(SelectedIndex):
    """Hierarchical navigable small-world graph (CPU only)."""

    exact = False

    def __init__(self, dim: int, device: Device = "auto", m: int = 32, ef_search: int = 64) -> None:
        super().__init__(dim, "cpu" if device == "auto" else device)
        import faiss

        self._index = faiss.IndexHNSWFlat(_padded_dim(dim), m)
        self._index.hnsw.efConstruction = 80
        self._index.hnsw.efSearch = ef_search


def make_index(kind: IndexKind, dim: int, device: Device = "auto", probe: int | None = None) -> SelectedIndex:
    """An empty index of ``kind``; ``probe`` is IVF's nprobe (default 8) or HNSW's efSearch (default 64)."""
    if kind == "flat":
        return FlatIndex(dim, device)
    if kind == "ivf":
        return IVFIndex(dim, device, probe or 8)
    if kind == "hnsw":
        return HNSWIndex(dim, device, ef_search=probe or 64)
    msg = f"unknown sampler index {kind!r}; allowed: 'flat' (exact), 'ivf', 'hnsw'"
    raise ValueError(msg)


def _padded_dim(dim: int) -> int:
    """FAISS scans vectors faster when their length is a multiple of 4 (zero padding changes no distance)."""
    return -(-dim // 4) * 4


def _padded(x: np.ndarray) -> np.ndarray:
    pad = _padded_dim(x.shape[1]) - x.shape[1]
    return np.ascontiguousarray(np.pad(x, ((0, 0), (0, pad))) if pad else x)


def _sorted_canonical(q: np.ndarray, points: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Canonical distances to the proposed positions (-1: none), sorted, cut or padded to k."""
    n, kk = cand.shape
    valid = cand >= 0
    d2 = row_sq_dist(np.repeat(q, kk, axis=0), points[np.where(valid, cand, 0).ravel()]).reshape(n, kk)
    d2[~valid] = np.inf
    return _k_smallest(d2, cand, k)


def brute_knn(q: np.ndarray, points: np.ndarray, k: int, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours by canonical distances to every point (ties: smaller position)."""
    dist = np.full((len(q), k), np.inf)
    pos = np.full((len(q), k), -1, dtype=np.int64)
    for start in range(0, len(q), chunk):
        d2 = cross_sq_dist(q[start : start + chunk], points)
        idx = np.broadcast_to(np.arange(len(points), dtype=np.int64), d2.shape)
        rows = slice(start, start + len(d2))
        dist[rows], pos[rows] = _k_smallest(d2, idx, k)
    return dist, pos


def _k_smallest(d2: np.ndarray, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k smallest squared distances (as distances) and their positions, by (distance, position)."""
    order = np.lexsort((idx, d2), axis=1)[:, :k]
    dist = np.full((len(d2), k), np.inf)
    pos = np.full((len(d2), k), -1, dtype=np.int64)
    m = order.shape[1]
    dist[:, :m] = np.sqrt(np.take_along_axis(d2, order, axis=1))
    pos[:, :m] = np.take_along_axis(idx, order, axis=1)
    pos[~np.isfinite(dist)] = -1
    return dist, pos
