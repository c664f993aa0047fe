"""Checkpoint mid-stream, restore in a new process, continue: identical to an uninterrupted run."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mummi.core.spec import SamplerSettings
from mummi.sampler import checkpoint as ckpt
from mummi.sampler.dynim import DynimSampler
from mummi.sampler.history import read_history
from mummi.sampler.streams import MixtureStream

SETTINGS = SamplerSettings(k=5, candidate_cap=120, warmup=3)


def steps(n_steps: int = 8) -> list[tuple[list[str], np.ndarray, int]]:
    stream = MixtureStream(dim=6, seed=11)
    out, n = [], 0
    for _ in range(n_steps):
        x = stream.draw(90)
        out.append(([f"p{n + i}" for i in range(len(x))], x, 17))
        n += len(x)
    return out


def play(sampler: DynimSampler, part: list[tuple[list[str], np.ndarray, int]]) -> list[list[object]]:
    picks = []
    for ids, x, burst in part:
        sampler.add_candidates(ids, x)
        picks += [[p.id, p.score, p.index, p.random] for p in sampler.select(burst)]
    return picks


def test_restore_in_new_process_continues_identically(tmp_path: Path) -> None:
    all_steps = steps()
    whole = DynimSampler(6, SETTINGS, seed=7)
    expected = play(whole, all_steps)
    expected_weights = whole.weights()

    first = DynimSampler(6, SETTINGS, seed=7, history=tmp_path / "events.csv")
    picks = play(first, all_steps[:3])
    first.checkpoint(tmp_path / "ckpt")
    # Events after the checkpoint belong to a lost run: restore cuts them off.
    play(first, all_steps[3:4])
    first._history.flush()

    script = textwrap.dedent(
        f"""
        import json, numpy as np
        from mummi.sampler.dynim import DynimSampler
        from tests.test_sampler_checkpoint import play, steps
        sampler = DynimSampler.restore({str(tmp_path / "ckpt")!r})
        picks = play(sampler, steps()[3:])
        sampler.checkpoint({str(tmp_path / "ckpt")!r})
        json.dump({{"picks": picks, "weights": sampler.weights()}}, open({str(tmp_path / "out.json")!r}, "w"))
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).resolve().parent.parent)
    out = json.loads((tmp_path / "out.json").read_text())
    assert picks + out["picks"] == expected
    assert out["weights"] == expected_weights

    history = read_history(tmp_path / "events.csv")
    selected = history["patch_id"][history["event"] == "select"]
    assert selected.tolist() == [p[0] for p in expected]
    assert history["n_selected"][-1] == len(expected)


def test_restore_is_independent_of_what_happened_before(tmp_path: Path) -> None:
    """A checkpoint taken right after restore equals the original one (no order dependence)."""
    sampler = DynimSampler(6, SETTINGS, seed=1)
    play(sampler, steps(3))
    sampler.checkpoint(tmp_path / "a")
    DynimSampler.restore(tmp_path / "a").checkpoint(tmp_path / "b")
    a, meta_a = ckpt.load(tmp_path / "a")
    b, meta_b = ckpt.load(tmp_path / "b")
    assert meta_a == meta_b
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_half_written_checkpoint_keeps_the_previous_one(tmp_path: Path) -> None:
    sampler = DynimSampler(6, SETTINGS, seed=1)
    play(sampler, steps(2))
    sampler.checkpoint(tmp_path)
    n_selected = sampler.n_selected
    play(sampler, steps(3)[2:])
    # A crash after writing the new arrays but before the manifest: the old manifest still rules.
    (tmp_path / "state-000002.npz").write_bytes(b"partial")
    assert DynimSampler.restore(tmp_path).n_selected == n_selected
    sampler.checkpoint(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("[ms]*")) == ["manifest-000002.json", "state-000002.npz"]
    assert DynimSampler.restore(tmp_path).n_selected == sampler.n_selected


def test_corrupt_or_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ckpt.CheckpointError, match="no manifest.json"):
        DynimSampler.restore(tmp_path)
    sampler = DynimSampler(6, SETTINGS)
    play(sampler, steps(1))
    sampler.checkpoint(tmp_path)
    arrays = next(tmp_path.glob("state-*.npz"))
    arrays.write_bytes(arrays.read_bytes()[:-10])
    with pytest.raises(ckpt.CheckpointError, match="does not match its manifest"):
        DynimSampler.restore(tmp_path)


def test_checkpoints_never_unpickle(tmp_path: Path) -> None:
    """An object array smuggled into the file set is refused, not executed."""
    ckpt.save(tmp_path, {"x": np.array([{"a": 1}], dtype=object)}, {})
    with pytest.raises(ValueError, match="allow_pickle"):
        ckpt.load(tmp_path)


def test_a_generation_writes_only_the_rows_added_since_the_one_before(tmp_path: Path) -> None:
    sampler = DynimSampler(6, SETTINGS, seed=1)
    play(sampler, steps(2))
    sampler.checkpoint(tmp_path)
    first = sorted(tmp_path.glob("rows-*.npz"))
    play(sampler, steps(3)[2:])
    sampler.checkpoint(tmp_path)
    segments = sorted(tmp_path.glob("rows-*.npz"))
    assert first == segments[:1] and len(segments) == 2
    with np.load(segments[1]) as new_rows:
        assert len(new_rows["x"]) == sampler.n_seen - len(np.load(first[0])["x"])
    restored = DynimSampler.restore(tmp_path)
    assert restored.selected_ids == sampler.selected_ids and restored.weights() == sampler.weights()
