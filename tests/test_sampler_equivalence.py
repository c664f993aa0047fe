"""The incremental DynIm sampler against the brute-force reference that recomputes every score before each pick."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mummi.core.spec import SamplerSettings
from mummi.sampler import cap, dynim
from mummi.sampler.brute import BruteForceSampler
from mummi.sampler.cells import Cells
from mummi.sampler.dynim import DynimSampler
from mummi.sampler.streams import MixtureStream


def run_both(dim: int, k: int, cap: int, warmup: int, seed: int, steps: list[tuple[np.ndarray, int]]):
    fast = DynimSampler(dim, SamplerSettings(k=k, candidate_cap=cap, warmup=warmup), seed=seed)
    slow = BruteForceSampler(dim, k, cap, warmup, seed=seed)
    n = 0
    for x, burst in steps:
        ids = [f"p{n + i}" for i in range(len(x))]
        n += len(x)
        assert sorted(fast.add_candidates(ids, x)) == sorted(slow.add_candidates(ids, x))
        picks = fast.select(burst)
        assert [(p.id, p.score) for p in picks] == slow.select(burst)
        assert [p.index for p in picks] == list(range(fast.n_selected - len(picks), fast.n_selected))
    assert fast.n_candidates == len(slow.candidates)
    np.testing.assert_array_equal(fast.weight_array(), slow.weights())
    return fast


@st.composite
def streams(draw):
    dim = draw(st.integers(1, 4))
    decimals = draw(st.integers(0, 2))  # 0 decimals: many duplicate points and exact ties
    n_steps = draw(st.integers(1, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    steps = []
    for _ in range(n_steps):
        n = draw(st.integers(0, 25))
        steps.append((rng.normal(size=(n, dim)).round(decimals).astype(np.float32), draw(st.integers(0, 8))))
    return dim, steps


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stream=streams(),
    k=st.integers(1, 5),
    cap=st.integers(1, 30),
    warmup=st.integers(0, 3),
    seed=st.integers(0, 1000),
)
def test_random_streams_select_and_weigh_like_brute_force(stream, k, cap, warmup, seed):
    dim, steps = stream
    run_both(dim, k, cap, warmup, seed, steps)


@pytest.mark.parametrize("decimals", [None, 1])
def test_larger_stream_in_15d_matches_brute_force(decimals):
    """Exercises FAISS proposals, capped discards and the grouped weight updates."""
    stream = MixtureStream(dim=15, seed=3)
    steps = []
    for _ in range(8):
        x = stream.draw(150)
        steps.append((x if decimals is None else x.round(decimals), 25))
    sampler = run_both(15, 10, 200, 2, 5, steps)
    assert sampler.n_discarded > 0


def test_all_adds_before_selections_matches_brute_force():
    """Discards while S is empty keep the oldest; weights then need the whole of S."""
    stream = MixtureStream(dim=3, seed=4)
    steps = [(stream.draw(60), 0) for _ in range(4)] + [(np.empty((0, 3), np.float32), 30) for _ in range(3)]
    run_both(3, 4, 50, 0, 0, steps)


@pytest.mark.parametrize("scale", [1.0, 1e-20])
def test_large_batches_with_ties_match_brute_force(scale):
    """Batches large enough for the grouped arrival search; rounded latents (ties), tiny ones (float32 underflow)."""
    stream = MixtureStream(dim=15, seed=6)
    steps = [((stream.draw(600).round(0) * scale).astype(np.float32), 40) for _ in range(3)]
    sampler = run_both(15, 10, 800, 2, 1, steps)
    assert sampler.n_discarded > 0


@pytest.mark.parametrize("guess", ["fair", "too_high", "floor_too_high"])
def test_arrivals_dropped_below_the_cut_match_brute_force(monkeypatch, caplog, guess):
    """With cells from 100 selected points on, most arrivals are proven below the cap's cut and dropped without a
    full search; a guess of the cut that is too high is caught and those arrivals are searched again against the
    cut the exact scores prove, and the sample is searched in full when the floor from the last guess is too high."""
    monkeypatch.setattr(Cells, "MIN_POINTS", 100)
    if guess == "too_high":
        monkeypatch.setattr(cap, "SHARE", 50.0)
    if guess == "floor_too_high":
        monkeypatch.setattr(dynim, "FLOOR", 100.0)
    dropped = []
    search = Cells.search

    def counted(self, points, q, k, give_up=-np.inf):
        result = search(self, points, q, k, give_up)
        dropped.append(int(result[2].sum()))
        return result

    monkeypatch.setattr(Cells, "search", counted)
    stream = MixtureStream(dim=15, seed=8)
    steps = [(stream.draw(2100).round(1), 60) for _ in range(5)]
    with caplog.at_level(logging.DEBUG, logger="mummi.sampler.dynim"):
        run_both(15, 10, 700, 2, 3, steps)
    assert sum(dropped) > 1000
    assert ("arrivals searched again" in caplog.text) == (guess == "too_high")
    assert guess != "floor_too_high" or caplog.text.count("sample searched again") >= 2
