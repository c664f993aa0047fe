"""The sampler benchmarks run and print one JSON object (tiny sizes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mummi.workflow.bench import main


def bench(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


SMALL = ["--candidates", "3000", "--batch", "500", "--selections", "200", "--burst", "20", "--cap", "800"]
PHASES = {"add_s", "select_s", "weights_s", "total_s"}


def test_dynim_small_times_ours_beside_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    """Both samplers on one stream, alternating; each phase's ratio per repeat pair with its spread."""
    from conftest import REQUIRE_EXTERNAL

    from mummi.sampler.bench_reference import load_reference, reference_dir

    if load_reference(reference_dir(None))[0] is None:
        message = f"LLNL's dynim not importable: {load_reference(reference_dir(None))[1]}"
        if REQUIRE_EXTERNAL:
            pytest.fail(message)
        pytest.skip(message)
    out = bench(capsys, "dynim-small", *SMALL, "--repeats", "2")
    assert out["reference"] == "LLNL/dynim"
    for order in ("adds_then_selections", "interleaved"):
        runs = out["idle"][order]
        assert set(runs) == {"ours", "reference", "ratio"}
        for who in runs:
            assert set(runs[who]) == PHASES
            for spread in runs[who].values():
                assert 0 < spread["min"] <= spread["median"] <= spread["max"]


def test_dynim_small_without_the_reference_reports_no_ratio(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = bench(capsys, "dynim-small", *SMALL, "--repeats", "1", "--reference", str(tmp_path))
    assert out["reference"].startswith(f"not run: {tmp_path}: no dynim package there")
    assert set(out["idle"]["interleaved"]) == {"ours"}


def test_dynim_small_busy_cores_reports_slowdowns(capsys: pytest.CaptureFixture[str]) -> None:
    out = bench(capsys, "dynim-small", *SMALL, "--repeats", "1", "--no-reference", "--busy-cores", "1")
    assert set(out["busy_1"]["interleaved"]["ours"]) == PHASES
    for order in ("adds_then_selections", "interleaved"):
        assert out["slowdown_vs_idle"][order]["ours"] > 0


def test_dynim_replay_exact(capsys: pytest.CaptureFixture[str]) -> None:
    out = bench(
        capsys, "dynim-replay", "--candidates", "6000", "--selections", "1500", "--batch", "1000", "--cap", "800"
    )
    assert out["selections"] == 1500 and out["exact"] is True and "exact_vs_approximate" not in out


def test_dynim_replay_approximate_with_comparison(capsys: pytest.CaptureFixture[str]) -> None:
    out = bench(
        capsys,
        "dynim-replay",
        "--index",
        "ivf",
        "--candidates",
        "6000",
        "--selections",
        "1500",
        "--batch",
        "1000",
        "--cap",
        "800",
        "--compare",
        "3000",
    )
    assert out["selections"] == 1500 and out["exact"] is False
    cmp = out["exact_vs_approximate"]
    assert 0 <= cmp["knn_recall"] <= 1 and cmp["weights_points_misassigned"] >= 0
    assert cmp["selections_same_position"] + cmp["selections_differing_position"] == cmp["selections"]


def test_dynim_convergence(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = bench(
        capsys, "dynim-convergence", "--events", "40", "--repeats", "2", "--every", "10", "--out", str(tmp_path)
    )
    assert Path(out["plot"]).stat().st_size > 0
    table = json.loads(Path(out["numbers"]).read_text())
    assert table["samples"] == [20, 40, 60, 80]
