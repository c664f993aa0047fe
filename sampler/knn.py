"""Canonical distances and k-nearest-neighbour lists: the one numeric definition.

With the exact index, every distance that decides a DynIm score, a selection or a
weight is computed here, in float64 from the float32 latents, by the same sequence of
IEEE operations for a pair whatever array it sits in: squared differences summed by
a fixed pairwise tree over the coordinates. So the incremental sampler and the
brute-force reference get bit-identical scores, and exact ties (duplicate latents)
are broken by the documented rule, never by rounding noise.

Fast paths only *filter* pairs: BLAS and FAISS use the expansion
``|a|^2 + |b|^2 - 2 a.b`` in float32, whose error is bounded by :func:`slack`; the
compiled loops (:mod:`mummi.sampler.kernels`) sum float32 squares, whose error is
bounded by :func:`mummi.sampler.kernels.filter_factor`. Every pair a filter cannot
rule out is recomputed canonically.
"""

from __future__ import annotations

import numpy as np

#: float32 unit round-off.
_U32 = float(np.finfo(np.float32).eps) / 2


def tree_sum(x: np.ndarray) -> np.ndarray:
    """Sum over the last axis by a fixed pairwise tree (deterministic for any shape).

    Equivalent to zero-padding the axis to a power of two and adding halves.
    """
    while x.shape[-1] > 1:
        width = x.shape[-1]
        half = 1 << ((width - 1).bit_length() - 1)
        folded = x[..., :half].copy()
        folded[..., : width - half] += x[..., half:]
        x = folded
    return x[..., 0]


def row_sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Canonical squared distances between rows ``a[i]`` and ``b[i]`` (float64; ``b`` may broadcast)."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    diff *= diff
    return tree_sum(diff)


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
