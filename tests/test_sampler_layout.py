"""Candidate blocks in spatial order, bounded by shells: a pick may skip a block only if no member could take it."""

from __future__ import annotations

import numpy as np
import pytest

from mummi.sampler.dynim import DynimSampler
from mummi.sampler.layout import BLOCK, block_shells, shell_gaps, spatial_order
from mummi.sampler.streams import MixtureStream
from tests.test_sampler_equivalence import run_both


def _outer_radii(x: np.ndarray) -> np.ndarray:
    limit = np.ones(len(x))
    return block_shells(x, limit, BLOCK)[2]


def test_spatial_order_is_a_permutation_with_tighter_blocks():
    x = MixtureStream(dim=15, seed=1).draw(5000)
    slots = np.random.default_rng(0).permutation(len(x))[:4000]
    order = spatial_order(x, slots, BLOCK)
    assert sorted(order.tolist()) == sorted(slots.tolist())
    # Blocks of nearby points: far smaller shells than blocks in arrival order.
    assert np.median(_outer_radii(x[order])) < 0.6 * np.median(_outer_radii(x[slots]))


@pytest.mark.parametrize("scale", [1.0, 1e-20, 1e20])
def test_shell_gap_never_exceeds_the_distance_to_a_member(scale):
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(700, 6)).round(1) * scale).astype(np.float32)
    limit = np.where(rng.random(len(x)) < 0.2, -1.0, 1.0)  # a fifth of the slots free
    centre_t, inner, outer, most = block_shells(x, limit, BLOCK)
    for a in rng.normal(size=(50, 6)).astype(np.float32) * scale:
        a64 = a.astype(np.float64)
        gap = shell_gaps(a64, centre_t, inner, outer)
        for b in range(len(most)):
            members = np.flatnonzero(limit[b * BLOCK : (b + 1) * BLOCK] >= 0) + b * BLOCK
            if len(members) == 0:
                assert most[b] == -1.0
                continue
            nearest = np.sqrt(((x[members].astype(np.float64) - a64) ** 2).sum(axis=1)).min()
            assert gap[b] <= nearest


def test_selection_from_blocks_laid_out_again_and_again_matches_brute_force():
    """Arrivals fill fresh blocks until the live candidates close ranks, in fresh arrays while the pool grows and
    in place once it has its size; rounded latents give ties."""
    stream = MixtureStream(dim=5, seed=7)
    steps = [(stream.draw(350).round(1), 75) for _ in range(6)] + [(stream.draw(0), 150)]
    layouts = []
    close_ranks = DynimSampler._close_ranks

    def recorded(self, n):
        before = self._c
        first_free = close_ranks(self, n)
        layouts.append("in place" if self._c is before else "fresh")
        return first_free

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DynimSampler, "_close_ranks", recorded)
        sampler = run_both(5, 6, 600, 2, 3, steps)
    assert sampler.n_discarded > 0
    assert "fresh" in layouts and "in place" in layouts, layouts
