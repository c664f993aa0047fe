"""Real micro scale: Martini membranes built with insane, set up and run with real GROMACS.

Two patches (``mummi-bench createsim`` times the paper's sizes), each set up
(minimisation, the restrained pulled equilibration where there is a protein, free
equilibration) and run at 20 fs:

* pure POPC without protein, 7 x 7 nm (cells of 1.4 nm, 3 lipids per cell and
  leaflet: built at 0.653 nm^2 per lipid, near the equilibrium, as insane builds),
  1 ns of production: the published Martini 2 area per lipid and PO4-PO4
  thickness (Marrink et al. 2007; Wassenaar et al. 2015), lateral diffusion, no
  lipid leaving its leaflet. Built at 0.72 nm^2 per lipid, the patch needs 1-1.5 ns
  to shrink to its equilibrium, and a 1-ns average then reads 0.675 nm^2 and
  3.81 nm; our force-field files and the published ones give the same bilayer
  (0.63-0.65 nm^2, 3.86-4.01 nm over 1-3 ns and 1-6 ns, two seeds each);
* the MuMMI mixture (the macro model's mean composition) with the RAS proxy named
  as a real protein (molecule KRAS, one amino-acid residue per bead, given as
  ``createsim.protein``), the
  issue's 10 x 10 nm (cells of 2 nm, 6 lipids per cell and leaflet, 300 lipids),
  1 ns of production: its area per lipid and thickness reported, diffusion, PIP2
  stays in the inner leaflet (cholesterol may flip: it does within nanoseconds in
  Martini), the protein ends on the inner leaflet, and the in situ RDF analysis
  runs unchanged on the trajectory, finding the protein by its index groups.

On an idle 2-core machine the whole file takes about 80 s (the 10 x 10 nm patch:
setup 12 s, 1 ns in 48 s); GROMACS' two threads slow down many times on a busy one.

The measured figures are printed (``pytest -s``) and kept in each sim folder's
``bilayer.json``.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from MDAnalysis.lib.distances import self_capped_distance
from micro_helpers import job, make_sim_dir, make_spec

from mummi.adapters.gromacs import ForceField, protein_groups, write_system
from mummi.adapters.md_engine import open_universe
from mummi.adapters.membrane import Membrane, build_membrane, compositions
from mummi.analysis.bilayer import bilayer_properties
from mummi.analysis.insitu import analyse_sim
from mummi.core.lipids import CHANNELS, N_INNER
from mummi.core.patch_input import PatchInput, read_patch_input
from mummi.core.simdir import MEMBRANE, read_status
from mummi.core.spec_loader import SHIPPED_FORCEFIELDS
from mummi.core.states import Outcome
from mummi.jobs.createsim import run_createsim
from mummi.jobs.sim import run_sim
from mummi.macro.params import default_parameters

pytestmark = pytest.mark.external

MARTINI = SHIPPED_FORCEFIELDS / "martini22"
LIPID_NAMES = {lipid for _, lipid in CHANNELS}
CELL_NM, PER_CELL = 2.0, 6  # the composition check's patches: 10 x 10 nm
POPC_CELL = (1.4, 3)
MIXTURE_CELL = (2.0, 6)
SECTIONS = {
    "resources": {"cores_per_node": 3},
    "createsim": {"engine": "gromacs", "em_steps": 1000, "pull_ns": 0.05, "equilibration_ns": 0.1,
                  "resources": {"cores_per_task": 2}},
    "sim": {"engine": "gromacs", "length_ns": 1.0, "dt_fs": 20.0, "output_interval_ps": 50.0,
            "gromacs": {"forcefield": str(MARTINI), "threads": 2}},
    "analysis": {"write_every_frames": 5},
}  # fmt: skip
APL_POPC = (0.64, 0.68)  # nm^2, Martini 2 POPC near 300-310 K (the test runs at 300 K)
THICKNESS_POPC = (4.0, 4.2)  # nm, PO4-PO4


# one per proxy bead: a real KRAS model's residues are amino acids, none of them called RAS
AMINO_ACIDS = ("MET", "THR", "GLU", "TYR", "LYS", "LEU", "VAL", "GLY", "ALA", "SER",
               "ASP", "ILE", "GLN", "HIS", "ARG", "PRO", "LYS", "LYS", "CYS")  # fmt: skip


def _proxy_named_as_kras(directory: Path) -> dict:
    """The RAS proxy's files rewritten with a real protein's naming, as ``createsim.protein``."""
    gro_lines = (MARTINI / "ras_proxy.gro").read_text().splitlines()
    gro_lines[2:-1] = [
        f"{i + 1:5d}{aa:<5s}{line[10:]}" for i, (aa, line) in enumerate(zip(AMINO_ACIDS, gro_lines[2:-1]))
    ]
    itp_lines, section = [], ""
    for line in (MARTINI / "ras_proxy.itp").read_text().splitlines():
        fields = line.split()
        if line.strip().startswith("["):
            section = line.strip()
        elif section == "[ moleculetype ]" and fields and not line.lstrip().startswith(";"):
            line = "  KRAS  1"
        elif section == "[ atoms ]" and len(fields) >= 8 and not line.lstrip().startswith(";"):
            i = int(fields[0]) - 1
            line = "  ".join([fields[0], fields[1], str(i + 1), AMINO_ACIDS[i], *fields[4:]])
        itp_lines.append(line)
    (directory / "kras.gro").write_text("\n".join(gro_lines) + "\n")
    (directory / "kras.itp").write_text("\n".join(itp_lines) + "\n")
    pull_to_nm = json.loads((MARTINI / "build.json").read_text())["protein"]["pull_to_nm"]
    return {"gro": str(directory / "kras.gro"), "itp": str(directory / "kras.itp"), "pull_to_nm": pull_to_nm}


def _mummi_coarse() -> np.ndarray:
    return np.broadcast_to(default_parameters().mean_concentration_per_nm2, (5, 5, 14)).copy()


def _popc_coarse() -> np.ndarray:
    coarse = np.zeros((5, 5, 14))
    coarse[..., [i for i, (_, lipid) in enumerate(CHANNELS) if lipid == "POPC"]] = 1.0
    return coarse


def _run(
    tmp_path: Path,
    coarse: np.ndarray,
    cell: tuple[float, int],
    with_ras: bool,
    temperature_K: float = 310.0,
    length_ns: float = 1.0,
) -> tuple[Path, dict]:
    sections = {**SECTIONS, "macro": {"temperature_K": temperature_K}}
    sections["sim"] = {**SECTIONS["sim"], "length_ns": length_ns}
    if with_ras:
        sections["createsim"] = {**SECTIONS["createsim"], "protein": _proxy_named_as_kras(tmp_path)}
    spec, _ = make_spec(tmp_path, sections)
    sim_dir = make_sim_dir(tmp_path / "w", coarse=coarse)
    patch = read_patch_input(sim_dir / "patch_input.npz")
    membrane = build_membrane(patch, cell[1], cell[0], 0.2, np.random.default_rng(3))
    if not with_ras:
        membrane = Membrane(membrane.patch_id, membrane.box_nm, membrane.channel, membrane.xy_nm,
                            np.zeros((0, 2)), np.zeros(0, dtype=np.int64))  # fmt: skip
    membrane.save(sim_dir / MEMBRANE)  # createsim builds on it (the POPC patch has no RAS)
    started = time.perf_counter()
    run_createsim(spec, sim_dir)
    setup_s = time.perf_counter() - started
    assert run_sim(spec, sim_dir) == Outcome.DONE
    props = bilayer_properties(sim_dir / "eq.gro", sim_dir / "md.xtc", skip_ps=200.0).as_dict()
    props |= {"setup_s": round(setup_s, 1), "production_s": round(time.perf_counter() - started - setup_s, 1)}
    (sim_dir / "bilayer.json").write_text(json.dumps(props, indent=1))
    print(f"\n{sim_dir.parent.parent.name}: {json.dumps(props)}")
    return sim_dir, props


@pytest.fixture(scope="module")
def popc(tmp_path_factory, gmx) -> tuple[Path, dict]:
    return _run(tmp_path_factory.mktemp("popc"), _popc_coarse(), POPC_CELL, with_ras=False, temperature_K=300.0)


@pytest.fixture(scope="module")
def mixture(tmp_path_factory, gmx) -> tuple[Path, dict]:
    return _run(tmp_path_factory.mktemp("mixture"), _mummi_coarse(), MIXTURE_CELL, with_ras=True)


@pytest.fixture(scope="module")
def gmx() -> str:
    from conftest import require_program

    return require_program("gmx", "GROMACS is needed (apt-get install gromacs)")


def test_pure_popc_has_the_published_martini_area_per_lipid_and_thickness(popc) -> None:
    _, p = popc
    assert APL_POPC[0] * 0.95 <= p["area_per_lipid_nm2"] <= APL_POPC[1] * 1.05, p
    assert THICKNESS_POPC[0] * 0.95 <= p["thickness_nm"] <= THICKNESS_POPC[1] * 1.05, p
    assert tuple(p["lipids_per_leaflet"]) == (75, 75)


def test_both_bilayers_are_fluid_and_intact(popc, mixture) -> None:
    for _, p in (popc, mixture):
        assert p["switched_leaflet"] == 0 and p["left_bilayer"] == 0, p
        assert p["msd_nm2"] > 0.15, p  # more than a rattle in a cage: a gel's lipids stay put


def test_the_mixture_keeps_pip2_inside_and_ras_on_the_inner_leaflet(mixture) -> None:
    sim_dir, p = mixture
    print(f"MuMMI mixture: area per lipid {p['area_per_lipid_nm2']:.3f} nm^2, thickness {p['thickness_nm']:.2f} nm")
    u = open_universe(sim_dir / "eq.gro", sim_dir / "md.xtc")
    u.trajectory[-1]
    heads = np.array([res.atoms.positions[0, 2] for res in u.residues if res.resname in LIPID_NAMES])
    mid = heads.mean()
    pip2 = np.array([res.atoms.positions[0, 2] for res in u.residues if res.resname == "PAP6"])
    assert len(pip2) > 0 and np.all(pip2 < mid), "PIP2 is an inner-leaflet lipid"
    assert not u.select_atoms("resname RAS"), "the protein is named as a real one: its residues are amino acids"
    copies = protein_groups(sim_dir)
    assert copies is not None and len(copies) == len(Membrane.load(sim_dir / MEMBRANE).ras_xy_nm)
    inner = heads[heads < mid].mean()
    for atoms in copies:
        ras = u.atoms[atoms]
        assert set(ras.resnames) <= set(AMINO_ACIDS) and ras.n_atoms == len(AMINO_ACIDS)
        assert ras.center_of_geometry()[2] < inner, "the protein's G-domain sits below the inner head groups"
        assert ras.positions[:, 2].max() > inner, "its anchor stays in the membrane"


def test_the_in_situ_rdf_analysis_runs_unchanged_on_the_martini_trajectory(mixture) -> None:
    sim_dir, _ = mixture
    spec, _ = make_spec(sim_dir.parent.parent.parent, SECTIONS)
    counts = analyse_sim(sim_dir, spec)
    assert counts.frames_done == 21  # 0, 50, ..., 1000 ps
    assert read_status(sim_dir, "analysis")["state"] == Outcome.DONE
    assert counts.counts[:N_INNER].sum() > 0 and counts.counts[N_INNER:].sum() == 0


def test_built_membranes_follow_the_patch_composition_cell_by_cell(tmp_path) -> None:
    """50 random patches: each cell's lipid counts are the floor or ceiling of composition x lipids per cell, and
    the written system holds exactly those lipids, each at its site, in the right leaflet."""
    rng = np.random.default_rng(0)
    for k in range(50):
        coarse = rng.uniform(0.0, 1.0, (5, 5, 14)) * (rng.random((5, 5, 14)) < 0.8)
        coarse[..., 0] += 0.05
        coarse[..., N_INNER] += 0.05  # no empty leaflet
        patch = PatchInput(f"p{k}", coarse, np.zeros((0, 2)), np.zeros(0, dtype=np.int64))
        membrane = build_membrane(patch, PER_CELL, CELL_NM, 0.2, rng)
        cell = np.minimum((membrane.xy_nm // CELL_NM).astype(int), 4)
        expected = compositions(coarse) * PER_CELL
        for c in range(14):
            counts = np.zeros((5, 5), dtype=int)
            np.add.at(counts, tuple(cell[membrane.channel == c].T), 1)
            assert np.all(counts >= np.floor(expected[..., c] - 1e-9)) and np.all(
                counts <= np.ceil(expected[..., c] + 1e-9)
            )
    sim_dir = tmp_path / "sim"
    sim_dir.mkdir()
    write_system(sim_dir, membrane, ForceField.load(MARTINI), None, seed=1)
    u = open_universe(sim_dir / "system.gro")
    pairs = self_capped_distance(u.atoms.positions, 2.0, box=u.dimensions, return_distances=False)
    assert not np.any(u.atoms.resindices[pairs[:, 0]] != u.atoms.resindices[pairs[:, 1]]), (
        "beads of two molecules clash"
    )
    lipids = [res for res in u.residues if res.resname in LIPID_NAMES]
    assert len(lipids) == membrane.n_lipids
    mid = np.mean([res.atoms.positions[:, 2].mean() for res in lipids])
    for c, (leaflet, lipid) in enumerate(CHANNELS):
        side = [
            res
            for res in lipids
            if res.resname == lipid and (res.atoms.positions[:, 2].mean() < mid) == (leaflet == "inner")
        ]
        assert len(side) == int(np.sum(membrane.channel == c)), (leaflet, lipid)


def test_a_patch_with_an_empty_leaflet_fails_createsim_at_once_with_the_reason(tmp_path) -> None:
    """Nothing to build: the job's record says why and not to retry (mummi-status shows it), before any GROMACS."""
    coarse = _popc_coarse()
    coarse[..., N_INNER:] = 0.0  # no outer-leaflet lipid anywhere
    _, spec_path = make_spec(tmp_path, SECTIONS)
    sim_dir = make_sim_dir(tmp_path / "w", coarse=coarse)
    proc = subprocess.run(job("createsim", spec_path, sim_dir), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    record = read_status(sim_dir, "createsim")
    assert record["state"] == Outcome.FAILED and record["retry"] is False, record
    assert "no lipid in one leaflet" in record["error"] and "patch-1" in record["error"], record["error"]
    assert not (sim_dir / "system.gro").exists()
