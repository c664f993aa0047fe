"""The evaluation of seed 002's Table 1 for any patch space: overlap %, MARE and the AUC of precision–recall.

A *space* is a function from raw native patches (n, P, P, 14) to vectors (n, k);
distances are Euclidean. On a held-out set of labelled patches:

* **overlap %**: the share of pairs of distinct patches whose distance is at most
  the largest distance between any patch and one of its five transformations
  (:data:`mummi.sampler.metric.TRANSFORMS`); 0 for a space that maps transformations
  together and everything else apart;
* **MARE**: the median over pairs of ``|d − λ d_Υ|`` (units of d) with λ the
  metric's λ_rad; ``mare_fit`` uses instead the space's own least-squares λ and is
  given in units of d_Υ (the paper's MARE*), so spaces of any scale compare;
* **PR AUC**: every patch queries its neighbours by increasing distance; after k
  neighbours, precision is the share of them in its class and recall the share of
  its class found; both are averaged over queries at each k and the area under the
  averaged curve is the AUC. ``auc_chance`` is the AUC of a space that ranks at
  random (the mean class share).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mummi.sampler.metric import TRANSFORMS, transform

Space = Callable[[np.ndarray], np.ndarray]


def pairwise(z: np.ndarray) -> np.ndarray:
    """The (n, n) Euclidean distances between the rows of ``z``, in float64."""
    z = np.asarray(z, dtype=np.float64).reshape(len(z), -1)
    sq = (z * z).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (z @ z.T)
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(np.maximum(d2, 0.0))


def upper(d: np.ndarray) -> np.ndarray:
    """The entries above the diagonal of a square matrix: one per pair of distinct patches."""
    return d[np.triu_indices(len(d), 1)]


def transformation_reach(space: Space, native: np.ndarray, z: np.ndarray | None = None) -> float:
    """The largest distance between a patch and one of its transformations in ``space``."""
    z = np.asarray(space(native) if z is None else z, dtype=np.float64).reshape(len(native), -1)
    reach = 0.0
    for name in TRANSFORMS:
        zt = np.asarray(space(np.ascontiguousarray(transform(native, name))), dtype=np.float64)
        reach = max(reach, float(np.linalg.norm(zt.reshape(len(z), -1) - z, axis=1).max()))
    return reach


def overlap_percent(pair_distances: np.ndarray, reach: float) -> float:
    """Percent of pairs no farther apart than ``reach``."""
    return 100.0 * float(np.mean(pair_distances <= reach)) if pair_distances.size else 0.0


def mare(pair_distances: np.ndarray, pair_upsilon: np.ndarray, lambda_rad: float) -> float:
    """The median over pairs of ``|d − λ d_Υ|``."""
    return float(np.median(np.abs(pair_distances - lambda_rad * pair_upsilon)))


def fitted_lambda(pair_distances: np.ndarray, pair_upsilon: np.ndarray) -> float:
    """The least-squares λ of ``d ≈ λ d_Υ``."""
    denominator = float(np.dot(pair_upsilon, pair_upsilon))
    return float(np.dot(pair_distances, pair_upsilon)) / denominator if denominator > 0 else 0.0


def pr_curve(distances: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) averaged over queries after k = 1 … n−1 neighbours (queries alone in their class skip)."""
    d = np.array(distances, dtype=np.float64)
    n = len(d)
    np.fill_diagonal(d, np.inf)
    order = np.argsort(d, axis=1, kind="stable")[:, : n - 1]
    hits = np.cumsum(labels[order] == labels[:, None], axis=1)
    total = hits[:, -1]
    use = total > 0
    if not use.any():
        return np.zeros(0), np.zeros(0)
    k = np.arange(1, n)
    precision = (hits[use] / k).mean(axis=0)
    recall = (hits[use] / total[use, None]).mean(axis=0)
    return recall, precision


def pr_auc(distances: np.ndarray, labels: np.ndarray) -> float:
    """The area under :func:`pr_curve`, from recall 0 (at the first neighbour's precision) to 1."""
    recall, precision = pr_curve(distances, np.asarray(labels))
    if recall.size == 0:
        return float("nan")
    r = np.concatenate([[0.0], recall])
    p = np.concatenate([[precision[0]], precision])
    return float(np.sum(np.diff(r) * (p[1:] + p[:-1]) / 2))


def chance_auc(labels: np.ndarray) -> float:
    """The expected AUC of a random ranking: the mean over queries of their class's share of the others."""
    labels = np.asarray(labels)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    share = (counts[inverse] - 1) / max(len(labels) - 1, 1)
    return float(share[share > 0].mean()) if (share > 0).any() else float("nan")


def evaluate_space(
    space: Space, native: np.ndarray, labels: np.ndarray, pair_upsilon: np.ndarray, lambda_rad: float
) -> dict[str, Any]:
    """Table 1's criteria for ``space`` on held-out ``native`` patches (raw) of classes ``labels``.

    ``pair_upsilon`` holds d_Υ of every pair, in :func:`upper` order.
    """
    z = np.asarray(space(native))
    d = pairwise(z)
    pairs = upper(d)
    reach = transformation_reach(space, native, z)
    lam = fitted_lambda(pairs, pair_upsilon)
    return {
        "dim": int(np.prod(z.shape[1:])),
        "overlap_percent": overlap_percent(pairs, reach),
        "transformation_reach": reach,
        "median_distance": float(np.median(pairs)),
        "mare": mare(pairs, pair_upsilon, lambda_rad),
        "mare_fit": mare(pairs, pair_upsilon, lam) / lam if lam > 0 else None,
        "lambda_fit": lam,
        "pr_auc": pr_auc(d, labels),
    }
