"""The mock engine: its hidden truth, dilute-limit RDFs, checkpoint/restart, the job contract."""

from __future__ import annotations

import json
import subprocess
import time

import numpy as np
import pytest
from micro_helpers import copy_setup, job, kill_when, make_sim_dir, make_spec

from mummi.adapters.membrane import build_membrane
from mummi.adapters.mock_md import CHECKPOINT, KB_KJ_MOL_K, TRUTH_FILE, MockEngine, truth_potentials
from mummi.analysis.insitu import analyse_sim
from mummi.analysis.rdf import gr_from_counts
from mummi.core.exit_codes import EXIT_RESUMABLE
from mummi.core.lipids import CHANNEL_NAMES, N_CHANNELS
from mummi.core.patch_input import PatchInput
from mummi.core.simdir import read_status
from mummi.core.states import Outcome
from mummi.jobs.createsim import run_createsim
from mummi.jobs.sim import run_sim

KT = KB_KJ_MOL_K * 310.0

# a small patch whose sim takes a few seconds: long enough to be killed mid-run
RESTART_SECTIONS = {
    "createsim": {"engine": "mock", "lipids_per_cell": 8, "equilibration_ns": 0.2},
    "sim": {
        "engine": "mock",
        "length_ns": 3.0,
        "mock": {"frames": 300, "steps_per_frame": 10, "checkpoint_every_frames": 20},
    },
    "analysis": {"leaflet": "both", "write_every_frames": 50},
}


def test_truth_is_tabulated_per_channel_with_attracted_and_repelled_lipids() -> None:
    truth = truth_potentials()
    assert set(truth.v_kj_mol) == set(CHANNEL_NAMES) and truth.table().shape == (N_CHANNELS, len(truth.r_nm))
    depth = {name: v.min() / KT for name, v in truth.v_kj_mol.items()}
    wells = {name: v[truth.r_nm > 0.6].max() / KT for name, v in truth.v_kj_mol.items()}
    assert depth["inner:PAP6"] < depth["inner:PAPS"] < -2.0  # anionic lipids bind RAS strongly
    assert wells["inner:CHOL"] > 0.5 and wells["inner:DPSM"] > 0.5 and depth["inner:CHOL"] > -0.1  # repelled
    assert all(abs(v[-1]) < 1e-6 for v in truth.v_kj_mol.values())  # short-ranged


def test_truth_file_is_validated(tmp_path) -> None:
    data = json.loads(TRUTH_FILE.read_text())
    del data["V_kj_mol"]["inner:PAP6"]
    path = tmp_path / "truth.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="inner:PAP6"):
        truth_potentials(path)


def test_setup_can_cap_the_lipids_per_channel(tmp_path) -> None:
    spec, _ = make_spec(
        tmp_path,
        {"createsim": {"lipids_per_cell": 8, "equilibration_ns": 0.01}, "sim": {"mock": {"beads_per_lipid_type": 5}}},
    )
    membrane = build_membrane(
        PatchInput("p", np.ones((5, 5, 14)), np.zeros((0, 2)), np.zeros(0)), 8, 6.0, 0.2, np.random.default_rng(0)
    )
    facts = MockEngine().setup(tmp_path, membrane, spec, seed=1)
    assert facts["lipids"] == 5 * N_CHANNELS and facts["ras"] == 1
    with np.load(tmp_path / "eq_state.npz") as state:
        np.testing.assert_array_equal(np.bincount(state["channel"]), 5)


def test_dilute_limit_rdf_converges_to_boltzmann_profile_of_the_truth(tmp_path) -> None:
    """Ideal lipids (no lipid-lipid repulsion: the dilute limit exactly) around one RAS in a
    12 nm box: g(r) must match exp(-V(r)/kT), normalised over the periodic box and averaged
    over each 0.25 nm bin, within |dg| <= 0.15 g + 0.15 for 0.25 < r < 5.5 nm, every channel."""
    spec, _ = make_spec(
        tmp_path,
        {
            "createsim": {"engine": "mock", "lipids_per_cell": 32, "cell_nm": 2.4, "equilibration_ns": 10.0},
            "sim": {
                "engine": "mock",
                "length_ns": 20.0,
                "mock": {
                    "frames": 2000,
                    "steps_per_frame": 20,
                    "lipid_repulsion_kj_mol": 0.0,
                    "checkpoint_every_frames": 500,
                },
            },
            "analysis": {"leaflet": "both", "bin_nm": 0.05, "write_every_frames": 1000},
        },
    )
    sim_dir = make_sim_dir(tmp_path / "w", coarse=np.ones((5, 5, 14)))
    run_createsim(spec, sim_dir)
    assert run_sim(spec, sim_dir) == Outcome.DONE
    counts = analyse_sim(sim_dir, spec)
    assert counts.frames_done == 2000
    edges = counts.edges_nm[::5]
    g = gr_from_counts(counts.counts.reshape(N_CHANNELS, -1, 5).sum(axis=2), edges, counts.pair_density)
    truth, area = truth_potentials(), 12.0**2
    fine = np.linspace(0, edges[-1], 20 * (len(edges) - 1) + 1)
    in_bin = np.minimum(np.searchsorted(edges, fine, side="right") - 1, len(edges) - 2)
    centres = 0.5 * (edges[1:] + edges[:-1])
    check = (centres > 0.25) & (centres < 5.5)
    for c, name in enumerate(CHANNEL_NAMES):
        boltzmann = np.exp(-truth.v_kj_mol[name] / KT)
        z = area - np.trapezoid((1 - boltzmann) * 2 * np.pi * truth.r_nm, truth.r_nm)  # normalisation over the box
        w = np.exp(-np.interp(fine, truth.r_nm, truth.v_kj_mol[name]) / KT) * fine
        expected = np.bincount(in_bin, w) / np.bincount(in_bin, fine) * area / z
        error = np.abs(g[c] - expected)[check]
        assert np.all(error <= 0.15 * expected[check] + 0.15), (
            f"{name}: worst |dg| {error.max():.3f} at r = {centres[check][error.argmax()]:.2f} nm"
        )


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted mock sim (and its analysis) to compare interrupted ones with."""
    root = tmp_path_factory.mktemp("reference")
    spec, spec_path = make_spec(root, RESTART_SECTIONS)
    sim_dir = make_sim_dir(root / "w")
    run_createsim(spec, sim_dir)
    setup = copy_setup(sim_dir, root / "setup" / sim_dir.name)
    assert run_sim(spec, sim_dir) == Outcome.DONE
    return spec, spec_path, sim_dir, setup, analyse_sim(sim_dir, spec)


def _assert_same_run(spec, sim_dir, reference) -> None:
    _, _, ref_dir, _, ref_counts = reference
    assert (sim_dir / "md.xtc").read_bytes() == (ref_dir / "md.xtc").read_bytes()  # no gap, no duplicate, same frames
    counts = analyse_sim(sim_dir, spec)
    assert counts.frames_done == ref_counts.frames_done == 300
    np.testing.assert_array_equal(counts.counts, ref_counts.counts)
    np.testing.assert_allclose(counts.pair_density, ref_counts.pair_density)


def test_killed_sim_restarts_from_checkpoint_without_gap_or_duplicate(reference, tmp_path) -> None:
    spec, spec_path, _, setup, _ = reference
    sim_dir = copy_setup(setup, tmp_path / "sims" / setup.name)
    kill_when(job("sim", spec_path, sim_dir), sim_dir / CHECKPOINT, after_s=0.05)
    with np.load(sim_dir / CHECKPOINT) as state:
        assert 0 < int(state["frame"]) < 300, "the kill must land mid-run"
    assert read_status(sim_dir, "sim") is None
    assert subprocess.run(job("sim", spec_path, sim_dir), capture_output=True).returncode == 0
    assert read_status(sim_dir, "sim")["state"] == Outcome.DONE
    _assert_same_run(spec, sim_dir, reference)


def test_deadline_stops_cleanly_and_the_rerun_finishes(reference, tmp_path) -> None:
    spec, spec_path, _, setup, _ = reference
    sim_dir = copy_setup(setup, tmp_path / "sims" / setup.name)
    assert (
        subprocess.run(job("sim", spec_path, sim_dir, "--walltime-min", "1"), capture_output=True).returncode
        == EXIT_RESUMABLE
    )
    assert read_status(sim_dir, "sim")["state"] == Outcome.INCOMPLETE  # margin 5 min > walltime: stop at once
    run_sim(spec, sim_dir, deadline=time.monotonic() + 0.5)  # most likely stops mid-run; any stop must resume exactly
    assert run_sim(spec, sim_dir) == Outcome.DONE
    _assert_same_run(spec, sim_dir, reference)


def test_jobs_are_idempotent(reference) -> None:
    spec, spec_path, sim_dir, _, _ = reference
    before = {p.name: p.stat().st_mtime_ns for p in sim_dir.iterdir() if p.name != "analysis.status.json"}
    for name in ("createsim", "sim", "analysis"):
        assert subprocess.run(job(name, spec_path, sim_dir), capture_output=True).returncode == 0
    after = {p.name: p.stat().st_mtime_ns for p in sim_dir.iterdir() if p.name in before}
    assert after == before


def test_failures_are_recorded_in_the_status(tmp_path) -> None:
    spec, spec_path = make_spec(tmp_path, {"sim": {"engine": "mock"}})
    sim_dir = make_sim_dir(tmp_path / "w")
    proc = subprocess.run(job("sim", spec_path, sim_dir), capture_output=True, text=True)
    assert proc.returncode == 1
    status = read_status(sim_dir, "sim")
    assert status["state"] == "failed" and "createsim has not finished" in status["error"]
