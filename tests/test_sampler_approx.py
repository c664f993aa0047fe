"""The approximate indexes: high recall, and the sampler runs on them end to end."""

from __future__ import annotations

import numpy as np
import pytest

from mummi.core.spec import SamplerSettings
from mummi.sampler.dynim import DynimSampler
from mummi.sampler.index import brute_knn, make_index
from mummi.sampler.streams import MixtureStream


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_index_recall(kind: str) -> None:
    stream = MixtureStream(seed=0)
    index = make_index(kind, 15)
    index.add(stream.draw(5000))  # enough for IVF to train
    q = stream.draw(300)
    _, found = index.search(q, 10)
    _, truth = brute_knn(q, index.points, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)])
    assert recall > 0.9
    assert not index.exact


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_sampler_runs_on_an_approximate_index(kind: str) -> None:
    stream = MixtureStream(seed=1)
    sampler = DynimSampler(15, SamplerSettings(index=kind, candidate_cap=500), seed=0)
    for i in range(6):
        sampler.add_candidates([f"{i}-{j}" for j in range(800)], stream.draw(800))
        picks = sampler.select(300)
        assert len(picks) == 300
    w = sampler.weight_array()
    assert w.sum() == sampler.n_seen  # every seen point is a selected point or counted once
    assert sampler.n_selected == 1800
