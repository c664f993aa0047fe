"""The event history (the paper's Fig. 3 view)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mummi.core.spec import SamplerSettings
from mummi.sampler.dynim import DynimSampler
from mummi.sampler.history import COLUMNS, plot_history, read_history


def test_history_records_adds_discards_and_each_selection(tmp_path: Path) -> None:
    path = tmp_path / "sampler" / "events.csv"
    sampler = DynimSampler(3, SamplerSettings(k=2, candidate_cap=10, warmup=1), history=path)
    rng = np.random.default_rng(0)
    sampler.add_candidates([f"a{i}" for i in range(8)], rng.normal(size=(8, 3)))
    picks = sampler.select(3)
    sampler.add_candidates([f"b{i}" for i in range(9)], rng.normal(size=(9, 3)))
    picks += sampler.select(2)
    sampler.checkpoint(tmp_path / "ckpt")

    h = read_history(path)
    assert tuple(h) == COLUMNS
    assert h["event"].tolist() == ["add", "select", "select", "select", "add", "discard", "select", "select"]
    sel = h["event"] == "select"
    assert h["patch_id"][sel].tolist() == [p.id for p in picks]
    np.testing.assert_array_equal(h["score"][sel], [p.score for p in picks])
    assert h["n_selected"][sel].tolist() == [1, 2, 3, 4, 5]
    assert h["count"][h["event"] == "discard"].tolist() == [sampler.n_discarded]
    assert h["n_seen"][-1] == 17 and h["n_candidates"][-1] == sampler.n_candidates
    assert np.all(np.diff(h["time"]) >= 0)
    assert plot_history(path, tmp_path / "fig3.png").stat().st_size > 0


def test_ids_with_commas_and_quotes_survive(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    sampler = DynimSampler(2, SamplerSettings(warmup=0), history=path)
    sampler.add_candidates(['frame 1, "RAS 3"'], np.zeros((1, 2)))
    sampler.select(1)
    sampler.checkpoint(tmp_path / "c")
    assert read_history(path)["patch_id"].tolist() == ["", 'frame 1, "RAS 3"']
