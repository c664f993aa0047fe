"""Real GROMACS on a tiny patch: createsim (EM + equilibration), sim with restarts, analysis of its XTC."""

from __future__ import annotations

import shutil
import subprocess
import time

import numpy as np
import pytest
from conftest import require_program
from micro_helpers import copy_setup, job, kill_when, make_sim_dir, make_spec

from mummi.adapters.gromacs import checkpoint_step
from mummi.adapters.md_engine import offsets_cache, open_universe
from mummi.analysis.insitu import analyse_sim
from mummi.core.simdir import read_status
from mummi.core.states import Outcome
from mummi.jobs.sim import run_sim

pytestmark = pytest.mark.external

# 200 lipids and one RAS in a 7.5 nm box: 603 beads, 20 000 steps in about two seconds
SECTIONS = {
    "createsim": {"engine": "gromacs", "lipids_per_cell": 4, "cell_nm": 1.5, "em_steps": 200, "equilibration_ns": 0.02},
    "sim": {"engine": "gromacs", "length_ns": 0.4, "output_interval_ps": 10.0, "checkpoint_interval_min": 0.001},
    "analysis": {"write_every_frames": 10},
}
FRAMES = 41  # t = 0, 10, ..., 400 ps


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """createsim through its job entry point, then an uninterrupted sim and its analysis."""
    require_program("gmx", "GROMACS is needed (apt-get install gromacs)")
    root = tmp_path_factory.mktemp("gromacs")
    spec, spec_path = make_spec(root, SECTIONS)
    sim_dir = make_sim_dir(root / "w")
    proc = subprocess.run(job("createsim", spec_path, sim_dir), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    setup = copy_setup(sim_dir, root / "setup" / sim_dir.name)
    assert run_sim(spec, sim_dir) == Outcome.DONE
    return spec, spec_path, sim_dir, setup, analyse_sim(sim_dir, spec)


def test_createsim_minimises_and_equilibrates_a_bilayer(reference) -> None:
    _, _, sim_dir, _, _ = reference
    status = read_status(sim_dir, "createsim")
    assert status["state"] == Outcome.DONE and status["engine"] == "gromacs" and status["atoms"] == 3 + 3 * 200
    for stage in ("em", "eq", "md"):
        log = (sim_dir / f"{stage}.grompp.log").read_text()
        assert "WARNING" not in log, f"grompp warned for {stage}"
    assert "converged to Fmax" in (sim_dir / "em.log").read_text()
    u = open_universe(sim_dir / "eq.gro")
    heads_z = np.array([res.atoms.positions[0, 2] for res in u.residues if res.resname != "RAS"]) / 10
    inner, outer = heads_z[:100], heads_z[100:]  # the builder writes the inner leaflet first
    assert inner.max() < outer.min(), "the leaflets must stay apart"
    ras_z = u.select_atoms("resname RAS").positions[:, 2].mean() / 10
    assert ras_z < inner.mean(), "RAS sits on the inner leaflet"


def test_sim_trajectory_and_analysis_counts(reference) -> None:
    _, _, sim_dir, _, counts = reference
    times = [ts.time for ts in open_universe(sim_dir / "eq.gro", sim_dir / "md.xtc").trajectory]
    np.testing.assert_allclose(times, np.arange(FRAMES) * 10.0)
    assert counts.frames_done == FRAMES and read_status(sim_dir, "analysis")["state"] == Outcome.DONE
    assert counts.counts[:8].sum() > 0 and counts.counts[8:].sum() == 0  # the inner leaflet only (the default)
    assert np.all(counts.pair_density[:8] > 0)


def _assert_same_run(spec, sim_dir, reference) -> None:
    """Appending from a checkpoint gives a binary-identical trajectory (same binary, one rank)."""
    _, _, ref_dir, _, ref_counts = reference
    assert (sim_dir / "md.xtc").read_bytes() == (ref_dir / "md.xtc").read_bytes()
    counts = analyse_sim(sim_dir, spec)
    assert counts.frames_done == FRAMES
    np.testing.assert_array_equal(counts.counts, ref_counts.counts)


def test_sim_stops_cleanly_before_its_deadline_and_resumes(reference, tmp_path) -> None:
    spec, _, _, setup, _ = reference
    sim_dir = copy_setup(setup, tmp_path / "sims" / setup.name)
    # mdrun -maxh stops at a checkpoint
    assert run_sim(spec, sim_dir, deadline=time.monotonic() + 0.5) == Outcome.INCOMPLETE
    assert read_status(sim_dir, "sim")["state"] == Outcome.INCOMPLETE
    assert 0 < checkpoint_step("gmx", sim_dir / "md.cpt") < 20_000
    assert run_sim(spec, sim_dir) == Outcome.DONE
    _assert_same_run(spec, sim_dir, reference)


def test_killed_sim_restarts_from_its_checkpoint(reference, tmp_path) -> None:
    spec, spec_path, _, setup, _ = reference
    sim_dir = copy_setup(setup, tmp_path / "sims" / setup.name)
    kill_when(job("sim", spec_path, sim_dir), sim_dir / "md.cpt", after_s=0.2)
    assert 0 < checkpoint_step("gmx", sim_dir / "md.cpt") < 20_000, "the kill must land mid-run"
    assert subprocess.run(job("sim", spec_path, sim_dir), capture_output=True).returncode == 0
    _assert_same_run(spec, sim_dir, reference)


LINCS_FAILURE = """\
Step 1200, time 24 (ps)  LINCS WARNING
relative constraint deviation after LINCS:
rms 1.023814, max 29.101236 (between atoms 12 and 13)
-------------------------------------------------------
Program:     gmx mdrun, version 2022.5
Fatal error:
Too many LINCS warnings (1000)
If you know what you are doing you can adjust the lincs warning threshold
in your mdp file with environment variable GMX_MAXCONSTRWARN
-------------------------------------------------------
"""


def test_an_unstable_system_gives_up_at_once_and_says_why(reference, tmp_path) -> None:
    """mdrun dies of LINCS errors (what a blown-up system prints; a wrapper around the real gmx injects it into
    mdrun): a rerun from the same checkpoint fails the same way, so the job's record says not to retry (the
    coordinator then fails the sim at once, with this reason)."""
    _, _, _, setup, _ = reference
    wrapper = tmp_path / "gmx-unstable"
    wrapper.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = mdrun ]; then cat "$(dirname "$0")/lincs.txt"; exit 1; fi\n'
        f'exec {shutil.which("gmx")} "$@"\n'
    )
    wrapper.chmod(0o755)
    (tmp_path / "lincs.txt").write_text(LINCS_FAILURE)
    sections = {**SECTIONS, "sim": {**SECTIONS["sim"], "gromacs": {"executable": str(wrapper)}}}
    _, spec_path = make_spec(tmp_path, sections)
    sim_dir = copy_setup(setup, tmp_path / "sims" / setup.name)
    proc = subprocess.run(job("sim", spec_path, sim_dir), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    record = read_status(sim_dir, "sim")
    assert record["state"] == Outcome.FAILED and record["retry"] is False, record
    assert "unstable" in record["error"] and "Too many LINCS warnings" in record["error"], record["error"]
    assert "sim.dt_fs" in record["error"]


def test_a_truncated_offsets_cache_does_not_stop_the_analysis(reference, tmp_path) -> None:
    """MDAnalysis caches frame offsets beside the trajectory; a cache cut short (a full disk) is rebuilt, not fatal."""
    spec, _, ref_dir, _, ref_counts = reference
    sim_dir = tmp_path / "sims" / ref_dir.name
    shutil.copytree(ref_dir, sim_dir, ignore=shutil.ignore_patterns("rdf_counts.npz", "features.npz", "analysis.*"))
    open_universe(sim_dir / "eq.gro", sim_dir / "md.xtc")  # writes the cache
    cache = offsets_cache(sim_dir / "md.xtc")
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    counts = analyse_sim(sim_dir, spec)
    assert counts.frames_done == FRAMES
    np.testing.assert_array_equal(counts.counts, ref_counts.counts)
