"""In situ analysis of mock sims: following a growing trajectory, restarts, leaflets, features."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from micro_helpers import copy_setup, job, kill_when, make_sim_dir, make_spec

from mummi.adapters.md_engine import open_universe
from mummi.analysis.insitu import LateralRDF, analyse_sim, select_membrane
from mummi.analysis.rdf import frame_counts, lateral_distances
from mummi.core.lipids import N_INNER
from mummi.core.simdir import FEATURES, RDF_COUNTS, is_done, read_status
from mummi.core.states import Outcome
from mummi.jobs.createsim import run_createsim
from mummi.jobs.sim import run_sim

SECTIONS = {
    "createsim": {"engine": "mock", "lipids_per_cell": 8, "equilibration_ns": 0.2},
    "sim": {
        "engine": "mock",
        "length_ns": 5.0,
        "mock": {"frames": 1000, "steps_per_frame": 5, "checkpoint_every_frames": 50},
    },
    "analysis": {"leaflet": "both", "write_every_frames": 25, "poll_interval_s": 0.05},
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished mock sim with three RAS, analysed after the fact."""
    root = tmp_path_factory.mktemp("finished")
    spec, spec_path = make_spec(root, SECTIONS)
    sim_dir = make_sim_dir(root / "w", offsets_nm=np.array([[7.0, 2.0], [-5.0, -8.0]]))
    run_createsim(spec, sim_dir)
    setup = copy_setup(sim_dir, root / "setup" / sim_dir.name)
    run_sim(spec, sim_dir)
    return spec, spec_path, sim_dir, setup, analyse_sim(sim_dir, spec)


def test_following_a_running_sim_counts_every_frame_once(finished, tmp_path) -> None:
    spec, spec_path, _, setup, reference = finished
    sim_dir = copy_setup(setup, tmp_path / "sims" / setup.name)
    follower = subprocess.Popen(
        job("analysis", spec_path, sim_dir, "--follow"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert subprocess.run(job("sim", spec_path, sim_dir), capture_output=True).returncode == 0
    _, err = follower.communicate(timeout=120)
    assert follower.returncode == 0, err[-2000:]
    status = read_status(sim_dir, "analysis")
    assert status["state"] == Outcome.DONE and status["frames"] == 1000
    _assert_same_counts(sim_dir, reference)


def test_a_killed_analysis_resumes_without_losing_or_recounting_frames(finished, tmp_path) -> None:
    spec, spec_path, ref_dir, _, reference = finished
    sim_dir = tmp_path / "sims" / ref_dir.name
    copy_setup(ref_dir, sim_dir)
    for name in ("md.xtc", "sim.status.json"):
        (sim_dir / name).write_bytes((ref_dir / name).read_bytes())
    kill_when(job("analysis", spec_path, sim_dir), sim_dir / RDF_COUNTS, after_s=0.1)
    with np.load(sim_dir / RDF_COUNTS) as partial:
        assert 0 < int(partial["frames_done"]) < 1000, "the kill must land mid-analysis"
    assert not is_done(sim_dir, "analysis")
    assert subprocess.run(job("analysis", spec_path, sim_dir), capture_output=True).returncode == 0
    _assert_same_counts(sim_dir, reference)


def _assert_same_counts(sim_dir, reference) -> None:
    with np.load(sim_dir / RDF_COUNTS) as d:
        assert int(d["frames_done"]) == reference.frames_done == 1000
        np.testing.assert_array_equal(d["counts"], reference.counts)
        np.testing.assert_allclose(d["pair_density"], reference.pair_density)
    with np.load(sim_dir / FEATURES) as f:
        assert len(f["time_ps"]) == 1000 and np.all(np.diff(f["time_ps"]) > 0)


def test_counts_match_a_brute_force_count_of_the_trajectory(finished) -> None:
    spec, _, sim_dir, _, reference = finished
    u = open_universe(sim_dir / "eq.gro", sim_dir / "md.xtc")
    ras = u.select_atoms("resname RAS")
    lipids = u.atoms[u.atoms.resnames != "RAS"]
    inner = lipids.positions[:, 2] < 50  # the mock puts the inner leaflet at z = 3 nm, the outer at 7 nm
    with np.load(sim_dir / "eq_state.npz") as state:
        channel = state["channel"]
    assert np.array_equal(channel < N_INNER, inner)
    total = 0
    for ts in u.trajectory[::100]:
        r = lateral_distances(ras.positions[:, :2] / 10, lipids.positions[:, :2] / 10, ts.dimensions[:2] / 10)
        total = total + frame_counts(r, channel, spec.analysis.bin_nm, 600)
    rdf = LateralRDF(
        u,
        select_membrane(open_universe(sim_dir / "eq.gro"), spec.analysis),
        spec.analysis.bin_nm,
        spec.analysis.r_max_nm,
        1.5,
    )
    rdf.run(step=100)
    np.testing.assert_array_equal(rdf.results.counts, total)


def test_leaflet_setting_and_features(finished, tmp_path) -> None:
    spec, _, sim_dir, _, reference = finished
    assert reference.counts[:N_INNER].sum() > 0 and reference.counts[N_INNER:].sum() > 0
    outer = select_membrane(open_universe(sim_dir / "eq.gro"), spec.analysis.model_copy(update={"leaflet": "outer"}))
    assert np.all(outer.channel >= N_INNER) and not outer.channel_mask[:N_INNER].any()
    with np.load(sim_dir / FEATURES) as f:
        assert f["contacts"].shape == (1000, 14) and f["contacts"].sum() > 0
        np.testing.assert_allclose(f["ras_depth_nm"], 1.0, atol=1e-3)  # the mock's RAS sits 1 nm below the inner heads
        assert f["ras_depth_nm"].shape == (1000, 3) and np.all(np.isnan(f["ras_tilt_deg"]))  # one bead: no axis
