"""Which arrivals the candidate cap will surely cut, before their neighbours are searched in full.

After each ``add_candidates`` call only the ``candidate_cap`` best candidates stay
(:mod:`mummi.sampler.dynim`). Most arrivals of a long campaign land where S is dense
and are cut at once, and their k-NN lists are never used: only their nearest
selected point counts, for the weights, and that is found when weights are asked
for. So a strided sample of each batch is searched first, :func:`likely_cut` guesses
from it a score below which arrivals will be cut, and the rest are searched only
until their score is proven below that guess (:meth:`~mummi.sampler.cells.Cells.search`).
:func:`cut_holds` then checks the guess with the exact scores of every arrival
that was searched in full: if fewer than ``cap`` candidates score at least as high,
the guess was too high, and the dropped arrivals are searched again against
:func:`sure_cut`, the cut that those exact scores prove. Nothing depends on the
guess but the time taken.
"""

from __future__ import annotations

import numpy as np

SAMPLE = 512  # arrivals per batch searched in full to guess the cut
SHARE = 0.8  # of the expected arrivals above a score that the guess counts on
FLOOR = 0.99  # of the last guess: sampled arrivals proven below it are not searched in full


def sample_rows(n: int) -> np.ndarray:
    """About :data:`SAMPLE` evenly spaced rows of a batch of ``n``."""
    return np.arange(0, n, max(1, n // SAMPLE))


def likely_cut(alive: np.ndarray, sample: np.ndarray, n_rest: int, cap: int, floor: float = -np.inf) -> float:
    """The highest t, among ``floor`` and the sample scores above it, such that the live candidates
    scoring at least t, the sample scoring at least t and :data:`SHARE` of the other ``n_rest``
    arrivals expected to (as many as in the sample) still fill the cap; ``-inf`` if none does.
    Sample scores known only to lie below ``floor`` may be given as ``-inf``."""
    values = np.sort(sample)
    weight = 1 + SHARE * n_rest / max(len(values), 1)
    candidates = np.concatenate([[floor], values[values > floor]])

    def fills(j: int) -> bool:
        t = candidates[j]
        above = len(values) - int(np.searchsorted(values, t, side="left"))
        return int(np.count_nonzero(alive >= t)) + above * weight >= cap

    if not fills(0):
        return -np.inf
    lo, hi = 0, len(candidates) - 1  # fills(lo); the answer is the last j that fills (it falls with j)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fills(mid) else (lo, mid - 1)
    return float(candidates[lo])


def cut_holds(alive: np.ndarray, kept: np.ndarray, cap: int, give_up: float) -> bool:
    """Whether at least ``cap`` candidates (live ones and arrivals searched in full) score
    ``give_up`` or more, so that every arrival proven below it is cut."""
    return int(np.count_nonzero(alive >= give_up)) + int(np.count_nonzero(kept >= give_up)) >= cap


def sure_cut(alive: np.ndarray, kept: np.ndarray, cap: int) -> float:
    """The ``cap``-th highest score among the live candidates and the arrivals searched in full (``-inf``
    if fewer): every arrival proven below it is cut."""
    scores = np.concatenate([alive, kept])
    return -np.inf if len(scores) < cap else float(np.partition(scores, len(scores) - cap)[len(scores) - cap])
