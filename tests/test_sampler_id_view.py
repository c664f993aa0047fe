"""The ids an add discards, returned as a sequence read on demand: the same ids as a list, however read, and later."""

from __future__ import annotations

import numpy as np

from mummi.core.spec import SamplerSettings
from mummi.sampler.brute import BruteForceSampler
from mummi.sampler.dynim import DynimSampler
from mummi.sampler.id_view import IdView


def test_discarded_ids_read_like_the_list_of_them_before_and_after_later_adds():
    fast = DynimSampler(3, SamplerSettings(k=2, candidate_cap=10, warmup=1), seed=4)
    slow = BruteForceSampler(3, 2, 10, 1, seed=4)
    rng = np.random.default_rng(5)
    views, lists = [], []
    for batch in range(4):
        ids, x = [f"b{batch}-{i}" for i in range(12)], rng.normal(size=(12, 3)).astype(np.float32)
        view, expected = fast.add_candidates(ids, x), sorted(slow.add_candidates(ids, x))
        assert sorted(view) == expected
        views.append(view)
        lists.append(list(view))
        fast.select(2)
        slow.select(2)
    assert sum(len(v) for v in views) == fast.n_discarded > 0
    for view, listed in zip(views, lists):  # read again after the adds that followed
        assert view == listed and list(view) == listed and len(view) == len(listed)
        assert [view[i] for i in range(len(view))] == listed and view[-1] == listed[-1]
        assert view[1:3] == listed[1:3] and view[::-1] == listed[::-1]
        assert all(i in view for i in listed) and "none" not in view
    assert IdView(["a", "b", "c"], np.array([2, 0])) == ["c", "a"] != IdView(["a"], np.array([0]))
    assert repr(IdView(["a", "b"], np.array([1]))) == "IdView(['b'])"
