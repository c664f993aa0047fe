"""The Martini 2.2 generator (adapters/martini22.py): published values, insane's bead orders, the committed
files, and GROMACS itself (grompp accepts every molecule; insane-built bilayers minimise).

The published values below are literals copied from the distributed Martini files:

* ``martini_v2.2.itp`` (cgmartini.nl; copies: maccallumlab/martini_openmm
  tests/protein/gmx/martini_v2.2.itp and OMaraLab/SLC6_lipid_fingerprints martini.ff/martini_v2.2.itp);
* ``martini_v2.0_lipids_all_201506.itp`` (cgmartini.nl; copies: ksy141/mstool
  src/mstool/FF/martini2.2/ and OMaraLab/SLC6_lipid_fingerprints martini.ff/);
* MuMMI's PIP2, ``martini_v2.0_PAP6_02.itp`` (LLNL/ddcMDconverter
  examples/RAS_RAF_NoCgfix_helgi_test2/).
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from mummi.adapters import martini22

# martini_v2.2.itp [ nonbond_params ]: i, j, c6, c12
PUBLISHED_NONBONDED = [
    ("P4", "P4", 0.21558, 0.23238e-02),
    ("Qa", "Qd", 0.24145, 0.26027e-02),
    ("Qa", "Qa", 0.21558, 0.23238e-02),
    ("Q0", "Q0", 0.15091, 0.16267e-02),
    ("Qda", "Q0", 0.19402, 0.20914e-02),
    ("C1", "C1", 0.15091, 0.16267e-02),
    ("C4", "C1", 0.13366, 0.14408e-02),
    ("C3", "Qa", 0.99167e-01, 0.10690e-02),
    ("Q0", "C1", 0.45440, 0.25810e-01),
    ("Qd", "C2", 0.45440, 0.25810e-01),
    ("P5", "C1", 0.86233e-01, 0.92953e-03),
    ("P4", "Q0", 0.24145, 0.26027e-02),
    ("P1", "Q0", 0.17246, 0.18590e-02),
    ("P1", "C1", 0.11642, 0.12549e-02),
    ("Na", "Qa", 0.17246, 0.18590e-02),
    ("Na", "C1", 0.11642, 0.12549e-02),
    ("Nd", "Qd", 0.17246, 0.18590e-02),
    ("N0", "C2", 0.13366, 0.14408e-02),
    ("C5", "Qa", 0.13366, 0.14408e-02),
    ("P4", "BP4", 0.76824, 0.26348e-01),
    ("BP4", "BP4", 0.21558, 0.23238e-02),
    ("BP4", "Qa", 0.24145, 0.26027e-02),
    ("SC1", "SC1", 0.66375e-01, 0.41957e-03),
    ("SP1", "SC1", 0.51203e-01, 0.32367e-03),
    ("SP5", "SQ0", 0.94820e-01, 0.59939e-03),
    ("SC3", "SC1", 0.66375e-01, 0.41957e-03),
    ("SC1", "SQ0", 0.45440, 0.25810e-01),
    ("SC1", "C1", 0.15091, 0.16267e-02),
    ("SP1", "P4", 0.19402, 0.20914e-02),
    ("AC1", "Qa", 0.86233e-01, 0.92953e-03),
    ("AC2", "C1", 0.15091, 0.16267e-02),
]
# The published C6/C12 are rounded to 5 digits, a few of them down where rounding goes up (e.g. 0.19402 for
# 4 * 4.5 * 0.47**6 = 0.194026); the generator computes them from epsilon and sigma.
PUBLISHED_DIGITS = 1e-4

# (i, j): (epsilon kJ/mol, sigma nm), from the level comments of martini_v2.2.itp
PUBLISHED_LEVELS = {
    ("P4", "P4"): (5.0, 0.47),  # attractive
    ("Qa", "Qd"): (5.6, 0.47),  # supra attractive
    ("C1", "C1"): (3.5, 0.47),  # intermediate
    ("Q0", "C1"): (2.0, 0.62),  # super repulsive, s=0.62
    ("Na", "C1"): (2.7, 0.47),  # semi repulsive
    ("SC1", "SC1"): (0.75 * 3.5, 0.43),  # 75intermediate, s=0.43
    ("P4", "BP4"): (5.6, 0.57),  # supra attractive, s=0.57
}

# martini_v2.0_lipids_all_201506.itp, [ atoms ] types
PUBLISHED_TYPES = {
    "POPC": "Q0 Qa Na Na C1 C3 C1 C1 C1 C1 C1 C1",
    "PAPC": "Q0 Qa Na Na C4 C4 C4 C4 C1 C1 C1 C1 C1",
    "POPE": "Qd Qa Na Na C1 C3 C1 C1 C1 C1 C1 C1",
    "DIPE": "Qd Qa Na Na C1 C4 C4 C1 C1 C4 C4 C1",
    "DPSM": "Q0 Qa P1 P5 C3 C1 C1 C1 C1 C1 C1",
    "PAPS": "P5 Qa Na Na C4 C4 C4 C4 C1 C1 C1 C1 C1",
    "CHOL": "SP1 SC1 SC3 SC1 SC1 SC1 SC1 C1",
}
# martini_v2.0_lipids_all_201506.itp (CHOL, POPC, PAPC, DIPE, DPSM) and martini_v2.0_PAP6_02.itp (PAP6)
PUBLISHED_BONDS = [
    ("POPC", "NC3", "PO4", 0.47, 1250),
    ("POPC", "GL1", "GL2", 0.37, 1250),
    ("POPC", "GL2", "C1B", 0.47, 1250),
    ("DPSM", "AM1", "AM2", 0.37, 1250),
    ("CHOL", "C1", "C2", 0.425, 1250),
    ("PAP6", "C1", "PO4", 0.35, 1250),
    ("PAP6", "PO4", "GL1", 0.47, 1250),
]
PUBLISHED_ANGLES = [
    ("POPC", "PO4", "GL1", "GL2", 120, 25),
    ("POPC", "PO4", "GL1", "C1A", 180, 25),
    ("POPC", "C1A", "D2A", "C3A", 120, 45),
    ("POPC", "D2A", "C3A", "C4A", 180, 25),
    ("PAPC", "GL1", "D1A", "D2A", 100, 10),
    ("PAPC", "D3A", "D4A", "C5A", 120, 45),
    ("DIPE", "C1A", "D2A", "D3A", 100, 10),
    ("DIPE", "D2A", "D3A", "C4A", 120, 45),
    ("DPSM", "AM1", "T1A", "C2A", 180, 45),
    ("CHOL", "R3", "C1", "C2", 180, 25),
    ("PAP6", "C1", "PO4", "GL1", 140, 25),
    ("PAP6", "C2", "C1", "PO4", 140, 400),
]
PUBLISHED_CONSTRAINTS = [
    ("CHOL", "ROH", "R2", 0.4904),
    ("CHOL", "ROH", "R3", 0.6019),
    ("CHOL", "R2", "R3", 0.2719),
    ("CHOL", "C1", "R2", 0.7237),
    ("CHOL", "C1", "R3", 0.5376),
    ("PAP6", "C1", "C2", 0.40),
    ("PAP6", "C3", "P4", 0.40),
    ("PAP6", "C3", "P5", 0.30),
    ("PAP6", "C2", "P5", 0.40),
    ("PAP6", "C2", "P4", 0.30),
]
PUBLISHED_CHOLESTEROL_MASSES = {"ROH": 77.22, "R1": 0.0, "R2": 38.69, "R3": 159.65, "R4": 0.0, "R5": 0.0, "C1": 39.44,
                                "C2": 72.0}  # fmt: skip
PUBLISHED_CHOLESTEROL_VIRTUAL_SITES = {  # site: frame, function, parameters
    "R4": (("R3", "R2", "C1"), 1, (0.9613, 0.6320)),
    "R1": (("R2", "ROH", "R3"), 4, (0.5207, 0.2882, -0.83824)),
    "R5": (("R3", "R2", "C1"), 4, (0.2287, 0.4111, 1.1531)),
}
PUBLISHED_DIHEDRALS = {  # (lipid, atoms): parameters after the function
    ("CHOL", ("ROH", "R2", "R3", "C1")): (2, -179.7, 50.0),
    ("PAP6", ("P4", "C1", "C2", "C3")): (1, 50.0, 12.0, 1),
    ("PAP6", ("P5", "C2", "C1", "C3")): (1, 180.0, 100.0, 1),
}
PUBLISHED_PIP2_CHARGES = {"PO4": -1.0, "P4": -2.0, "P5": -1.0, "C1": 0.0, "C2": 0.0, "C3": 0.0}
LIPID_CHARGES = {"POPC": 0, "PAPC": 0, "POPE": 0, "DIPE": 0, "DPSM": 0, "PAPS": -1, "PAP6": -4, "CHOL": 0}

EM_MDP = """integrator = steep
nsteps = 300
emtol = 100
cutoff-scheme = Verlet
coulombtype = reaction-field
rcoulomb = 1.1
epsilon-r = 15
epsilon-rf = 0
vdwtype = cut-off
vdw-modifier = Potential-shift-verlet
rvdw = 1.1
"""
# insane places at random; a fixed seed makes the systems (and the tests) reproducible.
SEEDED_INSANE = (
    "import random, sys; random.seed(1); from insane.cli import main; sys.exit(main(['insane', *sys.argv[1:]]))"
)


def read_itp(text: str, defines: frozenset[str] = frozenset()) -> dict[str, dict]:
    """Molecules of an itp, interactions keyed by atom names; #ifdef/#ifndef evaluated for ``defines``."""
    molecules: dict[str, dict] = {}
    molecule: dict = {}
    section, active = "", [True]
    for raw in text.splitlines():
        line = raw.split(";")[0].strip()
        words = line.split()
        if line.startswith(("#ifdef", "#ifndef")):
            active.append(active[-1] and (words[1] in defines) == (words[0] == "#ifdef"))
        elif line.startswith("#endif"):
            active.pop()
        elif line and active[-1]:
            if line.startswith("["):
                section = line.strip("[] ")
            elif section == "moleculetype":
                molecule = molecules.setdefault(words[0], {"atoms": {}, "names": []})
            elif section == "atoms":
                mass = float(words[7]) if len(words) > 7 else None
                molecule["atoms"][words[4]] = (words[1], float(words[6]), mass)
                molecule["names"].append(words[4])
            elif section:
                add_interaction(molecule, section, words)
    return molecules


def add_interaction(molecule: dict, section: str, words: list[str]) -> None:
    size = {"bonds": 2, "constraints": 2, "angles": 3, "dihedrals": 4, "virtual_sites3": 4, "exclusions": len(words)}
    atoms = tuple(molecule["names"][int(i) - 1] for i in words[: size[section]])
    values = tuple(float(v) for v in words[size[section] :])
    molecule.setdefault(section, {})[atoms] = values


def lookup(interactions: dict, atoms: tuple[str, ...]) -> tuple[float, ...]:
    return interactions.get(atoms) or interactions[atoms[::-1]]


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("martini22")
    martini22.write_forcefield(directory)
    return directory


@pytest.fixture(scope="module")
def nonbonded(generated) -> dict[frozenset[str], tuple[float, float]]:
    pairs = {}
    section = ""
    for raw in (generated / "martini_v2.2.itp").read_text().splitlines():
        line = raw.split(";")[0].strip()
        if line.startswith("["):
            section = line
        elif line and section == "[ nonbond_params ]":
            a, b, _, c6, c12 = line.split()
            pairs[frozenset((a, b))] = (float(c6), float(c12))
    return pairs


@pytest.fixture(scope="module")
def topologies(generated) -> dict[str, dict]:
    return read_itp((generated / "martini_v2.0_lipids.itp").read_text())


def test_the_level_matrix_is_symmetric_and_complete() -> None:
    levels = martini22.interaction_levels()
    types = {a for a, _ in levels}
    assert len(types) == 18 and len(levels) == 18 * 18
    assert all(levels[a, b] == levels[b, a] for a, b in levels)
    assert set(levels.values()) == set(martini22.LEVELS)


def test_nonbonded_parameters_match_martini_v2_2(nonbonded) -> None:
    assert len(nonbonded) == 39 * 40 // 2  # every pair of the 39 types, once
    for a, b, c6, c12 in PUBLISHED_NONBONDED:
        assert nonbonded[frozenset((a, b))] == pytest.approx((c6, c12), rel=PUBLISHED_DIGITS), (a, b)


def test_nonbonded_levels_as_epsilon_and_sigma(nonbonded) -> None:
    for pair, (epsilon, sigma) in PUBLISHED_LEVELS.items():
        c6, c12 = nonbonded[frozenset(pair)]
        assert (c12 / c6) ** (1 / 6) == pytest.approx(sigma, rel=PUBLISHED_DIGITS), pair
        assert c6**2 / (4 * c12) == pytest.approx(epsilon, rel=PUBLISHED_DIGITS), pair


def test_particle_masses(generated) -> None:
    text = (generated / "martini_v2.2.itp").read_text()
    masses = dict(re.findall(r"^  (\S+)\s+(\d+\.\d)\s+0\.000\s+A", text, flags=re.M))
    assert len(masses) == 39
    assert {masses[t] for t in ("P4", "Qa", "C1", "AC1", "BP4")} == {"72.0"}
    assert {masses[t] for t in ("SP1", "SC1", "SC3", "SQ0")} == {"45.0"}


def test_lipid_particle_types_and_charges(topologies) -> None:
    assert list(topologies) == list(martini22.MUMMI_LIPIDS)
    for lipid, types in PUBLISHED_TYPES.items():
        assert [atom[0] for atom in topologies[lipid]["atoms"].values()] == types.split(), lipid
    for lipid, charge in LIPID_CHARGES.items():
        assert sum(atom[1] for atom in topologies[lipid]["atoms"].values()) == charge, lipid
    pip2 = topologies["PAP6"]["atoms"]
    assert {name: pip2[name][1] for name in PUBLISHED_PIP2_CHARGES} == PUBLISHED_PIP2_CHARGES
    assert topologies["PAPS"]["atoms"]["CNO"] == ("P5", 0.0, None)


@pytest.mark.parametrize(
    ("section", "atoms", "function", "published"),
    [
        ("bonds", 2, 1, PUBLISHED_BONDS),
        ("angles", 3, 2, PUBLISHED_ANGLES),
        ("constraints", 2, 1, PUBLISHED_CONSTRAINTS),
    ],
    ids=["bonds", "angles", "constraints"],
)
def test_lipid_bonded_parameters(topologies, section: str, atoms: int, function: int, published: list) -> None:
    """Each published row is (lipid, ``atoms`` bead names, parameters after the GROMACS ``function``)."""
    for lipid, *row in published:
        names, parameters = tuple(row[:atoms]), tuple(row[atoms:])
        assert lookup(topologies[lipid][section], names) == (function, *parameters), (lipid, *names)


def test_lipid_dihedrals(topologies) -> None:
    for (lipid, atoms), parameters in PUBLISHED_DIHEDRALS.items():
        assert topologies[lipid]["dihedrals"][atoms] == parameters, (lipid, atoms)


def test_cholesterol(topologies) -> None:
    chol = topologies["CHOL"]
    assert {name: atom[2] for name, atom in chol["atoms"].items()} == PUBLISHED_CHOLESTEROL_MASSES
    sites = {atoms[0]: (atoms[1:], values[0], values[1:]) for atoms, values in chol["virtual_sites3"].items()}
    assert sites == PUBLISHED_CHOLESTEROL_VIRTUAL_SITES
    excluded = {frozenset((row[0], other)) for row in chol["exclusions"] for other in row[1:]}
    assert len(excluded) == 21  # every pair of the seven ring beads
    flexible = read_itp(martini22.molecules_text("", [martini22.cholesterol()]), frozenset({"FLEXIBLE"}))["CHOL"]
    assert "constraints" not in flexible and lookup(flexible["bonds"], ("ROH", "R2")) == (1, 0.4904, 1e6)


def test_insane_lacks_exactly_the_user_defined_lipids() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from insane.lipids import get_lipids
    builtin = set(get_lipids())
    assert {lipid for lipid in martini22.MUMMI_LIPIDS if lipid not in builtin} == set(martini22.INSANE_USER_LIPIDS)
    table = martini22.insane_lipid_table()
    assert table["PAP6"].charge == -4.0 and table["PAPS"].charge == -1.0


def test_insane_builds_each_lipid_in_topology_order(topologies) -> None:
    for lipid in martini22.MUMMI_LIPIDS:
        assert martini22.insane_bead_order(lipid) == topologies[lipid]["names"], lipid


def test_insane_puts_the_pip2_phosphates_above_the_glycerol() -> None:
    beads = {bead: z for bead, _, _, z in martini22.insane_lipid_table()["PAP6"].build(diam=0.8)}
    assert beads["P4"] > beads["C1"] > beads["PO4"] > beads["GL1"]
    assert min(beads[b] for b in ("P4", "P5", "C1", "C2", "C3")) > beads["PO4"]


def test_the_committed_files_are_the_generator_output() -> None:
    for name, text in martini22.forcefield_files().items():
        assert (martini22.FORCEFIELD_DIR / name).read_bytes() == text.encode("ascii"), f"regenerate {name}"


def test_every_file_names_the_generator_and_the_papers(generated) -> None:
    for path in generated.iterdir():
        text = path.read_text()
        assert martini22.GENERATOR in text and "doi:10.1021/jp071097f" in text, path.name  # Marrink et al. 2007
    assert "doi:10.1021/ct3009655" in (generated / "martini_v2.0_lipids.itp").read_text()  # Lopez et al. 2013


def test_ions_and_solvent_named_as_insane_writes_them(generated) -> None:
    molecules = {**read_itp((generated / "martini_v2.0_solvents.itp").read_text()),
                 **read_itp((generated / "martini_v2.0_ions.itp").read_text())}  # fmt: skip
    assert {name: m["atoms"] for name, m in molecules.items()} == {
        "W": {"W": ("P4", 0.0, None)},
        "WF": {"WF": ("BP4", 0.0, None)},
        "NA+": {"NA+": ("Qd", 1.0, None)},
        "CL-": {"CL-": ("Qa", -1.0, None)},
    }
    text = (generated / "martini_v2.0_ions.itp").read_text()
    assert re.search(r"NA\+\s+NA\+\s+1\s+1\.0", text) and re.search(r"CL-\s+CL-\s+1\s+-1\.0", text)


# --- GROMACS ---------------------------------------------------------------------------------------


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def write_topology(directory: Path, forcefield: Path, molecules: list[tuple[str, int]]) -> Path:
    includes = [f'#include "{forcefield / name}"' for name in martini22.forcefield_files()]
    body = "\n".join(f"{name}  {count}" for name, count in molecules)
    path = directory / "topol.top"
    path.write_text("\n".join(includes) + f"\n\n[ system ]\ntest\n\n[ molecules ]\n{body}\n")
    return path


def minimise(gmx: str, directory: Path, structure: str, name: str, defines: str = "") -> float:
    """grompp (which fails on any warning: no -maxwarn) and a steepest-descent minimisation; the final energy."""
    (directory / f"{name}.mdp").write_text(EM_MDP + (f"define = {defines}\n" if defines else ""))
    run([gmx, "-quiet", "grompp", "-f", f"{name}.mdp", "-c", structure, "-p", "topol.top", "-o", f"{name}.tpr",
         "-po", f"{name}.out.mdp"], directory)  # fmt: skip
    run([gmx, "-quiet", "mdrun", "-s", f"{name}.tpr", "-deffnm", name, "-nt", "1"], directory)
    log = (directory / f"{name}.log").read_text()
    assert "Constraint error" not in log
    energy = float(re.findall(r"Potential Energy\s+=\s+(\S+)", log)[-1])
    assert math.isfinite(energy)
    return energy


def minimise_flexible_then_constrained(gmx: str, directory: Path, structure: str) -> None:
    """insane's straight-line heads violate the PIP2 ring and cholesterol frame constraints far beyond what LINCS
    corrects, so (as the lipidome advises) minimise with stiff bonds first, then with the constraints."""
    minimise(gmx, directory, structure, "flexible", defines="-DFLEXIBLE")
    minimise(gmx, directory, "flexible.gro", "constrained")


def one_of_each_gro(path: Path, molecules: list[tuple[str, int]], box_nm: float) -> None:
    """Each molecule on its own 3 nm grid point, beads in insane's pseudo-geometry (z 0.3 nm per level)."""
    table = martini22.insane_lipid_table()
    lines = []
    for resid, name in enumerate((name for name, count in molecules for _ in range(count)), start=1):
        beads = table[name].build(diam=0.8) if name in table else [(name, 0.0, 0.0, 0.0)]
        centre = (1.5 + 3 * ((resid - 1) % 3), 1.5 + 3 * ((resid - 1) // 3 % 3), 1.5 + 3 * ((resid - 1) // 9))
        for k, (bead, x, y, z) in enumerate(beads):
            xyz = (
                centre[0] + x + 0.05 * math.sin(1.7 * k),
                centre[1] + y + 0.05 * math.cos(2.3 * k),
                centre[2] + 0.3 * z,
            )
            lines.append(f"{resid:5d}{name:<5}{bead:>5}{len(lines) + 1:5d}" + "".join(f"{c:8.3f}" for c in xyz))
    path.write_text(f"one of each\n{len(lines):5d}\n" + "\n".join(lines) + "\n" + f"{box_nm:10.5f}" * 3 + "\n")


def insane_molecules(top: Path) -> list[tuple[str, int]]:
    text = top.read_text().split("[ molecules ]")[1]
    return [
        (words[0], int(words[1]))
        for line in text.splitlines()
        if len(words := line.split()) == 2 and words[1].isdigit()
    ]


@pytest.mark.external
def test_grompp_accepts_one_of_each_molecule(generated, tmp_path, gmx: str) -> None:
    # PAPS (-1) and PAP6 (-4) are neutralised by 5 of the 6 sodium ions
    molecules = [(lipid, 1) for lipid in martini22.MUMMI_LIPIDS] + [("W", 3), ("WF", 1), ("NA+", 6), ("CL-", 1)]
    write_topology(tmp_path, generated, molecules)
    one_of_each_gro(tmp_path / "conf.gro", molecules, box_nm=10.0)
    minimise_flexible_then_constrained(gmx, tmp_path, "conf.gro")


def build_with_insane(directory: Path, arguments: list[str]) -> list[tuple[str, int]]:
    (directory / "lipids.dat").write_text(martini22.insane_lipid_definitions())
    command = [sys.executable, "-W", "ignore", "-c", SEEDED_INSANE, *arguments, "-m", "lipids.dat", "-pbc", "square",
               "-sol", "W:9", "-sol", "WF:1", "-o", "system.gro", "-p", "insane.top"]  # fmt: skip
    run(command, directory)
    return insane_molecules(directory / "insane.top")


@pytest.mark.external
def test_a_popc_patch_built_by_insane_minimises(generated, tmp_path, gmx: str) -> None:
    molecules = build_with_insane(tmp_path, ["-l", "POPC", "-x", "4", "-y", "4", "-z", "8"])
    assert {name for name, _ in molecules} == {"POPC", "W", "WF"}
    write_topology(tmp_path, generated, molecules)
    assert minimise(gmx, tmp_path, "system.gro", "em") < 0


@pytest.mark.external
def test_a_bilayer_of_all_eight_lipids_built_by_insane_minimises(generated, tmp_path, gmx: str) -> None:
    lipids = [argument for lipid in martini22.MUMMI_LIPIDS for argument in ("-l", f"{lipid}:1")]
    charge = 2 * 4 * sum(LIPID_CHARGES.values())  # 4 of each lipid per leaflet; insane counts only its own lipids
    molecules = build_with_insane(
        tmp_path, [*lipids, "-x", "5", "-y", "5", "-z", "10", "-salt", "0", "-charge", str(charge)]
    )
    assert dict(molecules)["NA+"] == -charge
    write_topology(tmp_path, generated, molecules)
    # no constraint error, a finite energy (its sign varies with insane's unseeded numpy draws for so small and
    # charged a patch)
    minimise_flexible_then_constrained(gmx, tmp_path, "system.gro")
