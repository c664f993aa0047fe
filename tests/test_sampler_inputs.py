"""Bad input is refused with a clear error and leaves the sampler exactly as it was."""

from __future__ import annotations

import numpy as np
import pytest

from mummi.core.spec import SamplerSettings
from mummi.sampler.dynim import DynimSampler, SamplerInputError

SETTINGS = SamplerSettings(k=3, candidate_cap=20, warmup=1)


def fresh() -> DynimSampler:
    sampler = DynimSampler(4, SETTINGS, seed=2)
    rng = np.random.default_rng(0)
    sampler.add_candidates([f"a{i}" for i in range(15)], rng.normal(size=(15, 4)))
    sampler.select(3)
    return sampler


def continue_run(sampler: DynimSampler) -> tuple[list[str], list[float]]:
    rng = np.random.default_rng(1)
    sampler.add_candidates([f"b{i}" for i in range(30)], rng.normal(size=(30, 4)))
    picks = sampler.select(6)
    return [p.id for p in picks], sampler.weight_array().tolist()


BAD = {
    "wrong dimension": (["x0", "x1"], np.zeros((2, 5)), "shape \\(n, 4\\)"),
    "one dimensional": (["x0"], np.zeros(4), "shape \\(n, 4\\)"),
    "nan": (["x0", "x1"], np.array([[0, 0, 0, 0], [0, np.nan, 0, 0]]), "row 1 \\(id 'x1'\\)"),
    "inf": (["x0"], np.array([[np.inf, 0, 0, 0]]), "finite"),
    "beyond float32": (["x0"], np.array([[1e39, 0, 0, 0]]), "finite float32"),
    "not numeric": (["x0"], np.array([["a", "b", "c", "d"]]), "numeric"),
    "fewer ids": (["x0"], np.zeros((2, 4)), "1 ids for 2"),
    "duplicate in call": (["x0", "x0"], np.zeros((2, 4)), "'x0' appears twice"),
    "seen before": (["a3", "x1"], np.zeros((2, 4)), "'a3' was added before"),
    "selected before": (["a0"], np.zeros((1, 4)), "added before"),
    "id not a string": ([7], np.zeros((1, 4)), "must be strings"),
    "ids as one string": ("x0", np.zeros((1, 4)), "sequence of strings"),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_input_is_refused_and_changes_nothing(name: str) -> None:
    ids, latents, message = BAD[name]
    sampler = fresh()
    before = (sampler.n_seen, sampler.n_candidates, sampler.n_selected, sampler.n_discarded, sampler.candidate_scores())
    with pytest.raises(SamplerInputError, match=message):
        sampler.add_candidates(ids, latents)
    after = (sampler.n_seen, sampler.n_candidates, sampler.n_selected, sampler.n_discarded, sampler.candidate_scores())
    assert before[:4] == after[:4]
    assert before[4][0] == after[4][0]
    np.testing.assert_array_equal(before[4][1], after[4][1])
    assert continue_run(sampler) == continue_run(fresh())
    sampler.add_candidates(["x0", "x1"], np.ones((2, 4)))  # the refused call claimed no id


def test_negative_selection_count_is_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        fresh().select(-1)


def test_selecting_more_than_there_are_candidates_returns_what_there_is() -> None:
    sampler = DynimSampler(2, SETTINGS)
    sampler.add_candidates(["a", "b"], np.array([[0.0, 0.0], [1.0, 1.0]]))
    assert sorted(p.id for p in sampler.select(5)) == ["a", "b"]
    assert sampler.n_candidates == 0
    assert sampler.select(1) == []


def test_unknown_index_kind_names_the_allowed_ones() -> None:
    from mummi.sampler.index import make_index

    with pytest.raises(ValueError, match="'flat' \\(exact\\), 'ivf', 'hnsw'"):
        make_index("kd", 3)  # type: ignore[arg-type]


def test_gpu_device_without_gpu_is_a_clear_error() -> None:
    import faiss

    if faiss.get_num_gpus() > 0:
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="no GPU"):
        DynimSampler(3, SamplerSettings(device="gpu"))
