"""ddcMD engine: ddcMD's inputs from the GROMACS-equilibrated system, launch, restart.

UNTESTED AGAINST A REAL ddcMD (it cannot be built here): the files follow the
formats of ddcMD's examples and of LLNL's ddcMDconverter, and the tests run a
fake executable. As in MuMMI, createsim equilibrates with GROMACS and ddcMD runs
production. In ``sim_dir/ddcmd/`` this writes:

* ``martini.data``: the MMFF parameters (atom types, residues with atoms,
  bonds and angles, Lennard-Jones sigma/epsilon per type pair), converted from
  GROMACS' preprocessed topology ``topol_pp.top`` (ddcMD takes k/2 for bonds and
  angles, as ddcMDconverter writes them);
* ``molecule.data``: the molecule classes and species;
* ``object.data``: the control file (steps, time step, output and checkpoint rates,
  thermostat, cut-offs);
* ``snapshot.000000000000/`` with ``restart`` and ``atoms#000000`` (positions in
  Angstrom centred on 0 as in ddcMD's box, velocities in Angstrom/fs, one record per
  particle) and a ``restart`` link to it.

ddcMD checkpoints into ``snapshot.<loop>/`` directories; before each launch the
``restart`` link is pointed at the newest one holding a ``restart`` file, so a
rerun continues from there. The command is ``launcher + [ddcMD, -o, object.data,
molecule.data]``; it is stopped (SIGTERM, then SIGKILL) before the deadline.
ddcMD's analysis ``subsetWrite`` (format binaryCharmm, as in MuMMI) writes the frames,
``snapshot.<loop>/subset#000000``, every output interval; the in situ analysis reads them
through :mod:`mummi.adapters.ddcmd_snapshot` (one frame per output loop, complete files only).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mummi.adapters.gromacs import ForceField, stage_mdp
from mummi.adapters.md_engine import open_universe
from mummi.adapters.membrane import Membrane
from mummi.core.atomic import atomic_write_text
from mummi.core.lipids import PROTEIN_NAME
from mummi.core.simdir import EQ_STRUCTURE
from mummi.core.spec import CampaignSpec

log = logging.getLogger(__name__)

WORKDIR = "ddcmd"
SNAPSHOT = "snapshot.{loop:012d}"
SUPPORTED = {
    "defaults",
    "atomtypes",
    "nonbond_params",
    "moleculetype",
    "atoms",
    "bonds",
    "angles",
    "system",
    "molecules",
}


# ---------------------------------------------------------------- topology
@dataclass
class Molecule:
    name: str
    atoms: list[tuple[str, str, float, float]] = field(default_factory=list)  # (name, type, charge, mass)
    bonds: list[tuple[int, int, int, float, float]] = field(default_factory=list)  # i, j, func, b0 nm, kb
    angles: list[tuple[int, int, int, int, float, float]] = field(default_factory=list)  # i, j, k, func, theta0 deg, k


@dataclass
class Topology:
    types: dict[str, float] = field(default_factory=dict)  # name -> mass
    lj: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)  # sigma nm, epsilon kJ/mol
    molecules: dict[str, Molecule] = field(default_factory=dict)
    system: list[tuple[str, int]] = field(default_factory=list)


def _pair(a: str, b: str) -> tuple[str, str]:
    """The key of ``Topology.lj``: the two type names in sorted order."""
    return (a, b) if a <= b else (b, a)


def _in_molecule(mol: Molecule | None, section: str) -> Molecule:
    if mol is None:
        raise ValueError(f"topology section [ {section} ] before any [ moleculetype ]")
    return mol


def parse_topology(text: str) -> Topology:
    """A GROMACS *preprocessed* topology (``grompp -pp``) with the sections ddcMD's
    converter needs; other sections are errors (convert those with ddcMDconverter)."""
    top, section, mol, comb_rule = Topology(), "", None, 1
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("#"):
            raise ValueError(f"not a preprocessed topology (found {line!r}); use grompp -pp")
        header = re.fullmatch(r"\[\s*(\w+)\s*\]", line)
        if header:
            section = header.group(1)
            if section not in SUPPORTED:
                raise NotImplementedError(
                    f"topology section [ {section} ] is not converted to ddcMD here; allowed: {sorted(SUPPORTED)}"
                )
            continue
        f = line.split()
        if section == "defaults":
            comb_rule = int(f[1])
        elif section == "atomtypes":
            p = next(i for i, x in enumerate(f) if x in {"A", "V", "S", "D"})
            top.types[f[0]] = float(f[p - 2])
        elif section == "nonbond_params":
            a, b, v, w = f[0], f[1], float(f[3]), float(f[4])
            if comb_rule == 1:  # C6, C12
                sigma, eps = ((w / v) ** (1 / 6), v * v / (4 * w)) if v > 0 else (0.0, 0.0)
            else:
                sigma, eps = v, w
            top.lj[_pair(a, b)] = (sigma, eps)
        elif section == "moleculetype":
            mol = top.molecules.setdefault(f[0], Molecule(f[0]))
        elif section == "atoms":
            mass = float(f[7]) if len(f) > 7 else top.types[f[1]]
            _in_molecule(mol, section).atoms.append((f[4], f[1], float(f[6]), mass))
        elif section == "bonds":
            _in_molecule(mol, section).bonds.append((int(f[0]) - 1, int(f[1]) - 1, int(f[2]), float(f[3]), float(f[4])))
        elif section == "angles":
            _in_molecule(mol, section).angles.append(
                (int(f[0]) - 1, int(f[1]) - 1, int(f[2]) - 1, int(f[3]), float(f[4]), float(f[5]))
            )
        elif section == "molecules":
            top.system.append((f[0], int(f[1])))
    return top


# ------------------------------------------------------------------ writers
def martini_data(top: Topology) -> str:
    types = list(top.types)
    ids = {t: i for i, t in enumerate(types)}
    pairs = [(a, b) for i, a in enumerate(types) for b in types[i:]]
    out = [
        "martini MMFF",
        "{",
        f"  resiParms={' '.join(top.molecules)} ;",
        f"  atomTypeList={' '.join(types)} ;",
        f"  ljParms={' '.join(f'{a}_{b}' for a, b in pairs)} ;",
        "}",
        "",
    ]
    out += [f"{t} MASSPARMS {{ atomType={t}; atomTypeID={ids[t]}; mass={m}M_p ; }}" for t, m in top.types.items()]
    out.append("")
    for res_id, mol in enumerate(top.molecules.values()):
        n = mol.name
        out += [
            f"{n} RESIPARMS",
            "{",
            f"  resID={res_id};",
            "  resType=0;",
            f"  resName={n};",
            f"  isProtein={int(n == PROTEIN_NAME)};",
        ]
        out += [f"  numAtoms={len(mol.atoms)};", f"  charge={sum(a[2] for a in mol.atoms)};", f"  groupList={n}_g0;"]
        if mol.bonds:
            out.append(f"  bondList={' '.join(f'{n}_b{i}' for i in range(len(mol.bonds)))} ;")
        if mol.angles:
            out.append(f"  angleList={' '.join(f'{n}_a{i}' for i in range(len(mol.angles)))} ;")
        out += [
            "  centerAtom=0;",
            "}",
            "",
            f"{n}_g0 GROUPPARMS{{",
            "  groupID=0;",
            f"  atomList={' '.join(f'{n}_{a[0]}' for a in mol.atoms)} ;",
            "}",
            "",
        ]
        for i, (name, typ, q, m) in enumerate(mol.atoms):
            out.append(
                f"{n}_{name} ATOMPARMS{{atomID={i}; atomName={name}; atomType={typ}; "
                f"atomTypeID={ids[typ]}; charge={q}; mass={m} M_p ; }}"
            )
        for k, (i, j, func, b0, kb) in enumerate(mol.bonds):
            if func != 1:
                raise NotImplementedError(f"{n}: bond function {func}; only harmonic bonds (1) are converted")
            ti, tj = mol.atoms[i][1], mol.atoms[j][1]
            out.append(
                f"{n}_b{k} BONDPARMS{{atomI={i}; atomTypeI={ti}; atomJ={j}; atomTypeJ={tj}; func=1; "
                f"kb={kb / 2} kJ*mol^-1*nm^-2; b0={b0} nm; }}"
            )
        for k, (i, j, kk, func, theta, kt) in enumerate(mol.angles):
            if func not in (1, 2):
                raise NotImplementedError(
                    f"{n}: angle function {func}; only harmonic (1) and G96 (2) angles are converted"
                )
            theta0 = (
                np.radians(theta) if func == 1 else theta
            )  # as ddcMDconverter: radians for harmonic, degrees for G96
            out.append(
                f"{n}_a{k} ANGLEPARMS{{atomI={i}; atomJ={j}; atomK={kk}; func={func}; "
                f"ktheta={kt / 2} kJ*mol^-1; theta0={theta0}; }}"
            )
        out.append("")
    for a, b in pairs:
        sigma, eps = top.lj.get(_pair(a, b), (0.0, 0.0))
        out.append(
            f"{a}_{b} LJPARMS{{atomtypeI={a}; indexI={ids[a]}; atomtypeJ={b}; indexJ={ids[b]}; "
            f"sigma={sigma} nm; eps={eps} kJ*mol^-1;}}"
        )
    return "\n".join(out) + "\n"


def molecule_data(top: Topology) -> str:
    ids = {t: i for i, t in enumerate(top.types)}
    out = [f"moleculeClass MOLECULECLASS {{ molecules = {' '.join(n + 'x' for n in top.molecules)} ; }}", ""]
    for n, mol in top.molecules.items():
        species = [f"{n}x{a[0]}" for a in mol.atoms]
        out.append(f"{n}x MOLECULE {{ownershipSpecies = {species[0]}; species = {' '.join(species)};}}")
    out.append("")
    for n, mol in top.molecules.items():
        out += [
            f"{n}x{name} SPECIES {{ type = ATOM ; charge ={q}; id={ids[typ]}; mass ={m} M_p ; }}"
            for name, typ, q, m in mol.atoms
        ]
    return "\n".join(out) + "\n"


def _box_lines(box_a: np.ndarray) -> list[str]:
    x, y, z = box_a
    return [f"h= {x:.8f} 0.0 0.0", f"   0.0 {y:.8f} 0.0", f"   0.0 0.0 {z:.8f} ;"]


def restart_text(n_atoms: int, box_a: np.ndarray, snapshot: str) -> str:
    return (
        "\n".join(
            [
                "simulate SIMULATE { loop=0; time=0.000000 ;}",
                "box BOX {",
                *_box_lines(box_a),
                "}",
                f"collection COLLECTION {{ mode=VARRECORDASCII; size={n_atoms}; files={snapshot}/atoms#;}}",
            ]
        )
        + "\n"
    )


def atoms_text(top: Topology, positions_a: np.ndarray, velocities: np.ndarray, box_a: np.ndarray) -> str:
    """The particle file: gid = molecule index << 32 + atom index in the molecule."""
    header = [
        "particle FILEHEADER {type=MULTILINE; datatype=VARRECORDASCII; checksum=NONE;",
        "loop=0; time=0.000000;",
        f"nfiles=1; nrecord={len(positions_a)}; nfields=10;",
        "field_names=id class type group rx ry rz vx vy vz;",
        "field_types=u s s s f f f f f f;",
        *_box_lines(box_a),
        "groups = group ;",
        "types = ATOM ;",
        "}",
        "",
    ]
    rows, k, mol_id = [], 0, 0
    for name, count in top.system:
        atoms = top.molecules[name].atoms
        for _ in range(count):
            for a, atom in enumerate(atoms):
                (x, y, z), (vx, vy, vz) = positions_a[k], velocities[k]
                rows.append(
                    f"{(mol_id << 32) + a:16d} ATOM {name + 'x' + atom[0]:>15s} group "
                    f"{x:21.13e} {y:21.13e} {z:21.13e} {vx:21.13e} {vy:21.13e} {vz:21.13e}"
                )
                k += 1
            mol_id += 1
    if k != len(positions_a):
        raise ValueError(f"the topology has {k} atoms, the structure {len(positions_a)}")
    return "\n".join(header + rows) + "\n"


def object_data(spec: CampaignSpec, ff: ForceField, seed: int) -> str:
    md = stage_mdp("md", spec, ff, seed)
    every = int(md["nstxout-compressed"])
    nsteps = int(md["nsteps"])
    temperature = f"{spec.macro.temperature_K:g}K"
    cutoff_a = 10 * float(ff.mdp.get("rvdw", 1.1))
    rcoulomb_a = 10 * float(ff.mdp.get("rcoulomb", 1.1))
    eps_rf = float(ff.mdp.get("epsilon-rf", 0))
    # ddcMD object lines longer than this file's lines are built here.
    printinfo = (
        "PRESSURE = bar; VOLUME = Ang^3; TEMPERATURE = K; ENERGY = kJ/mol; TIME = ns; printStress = 0; "
        "printMolecularPressure = 1;"
    )
    coulomb = (
        f"rcoulomb = {rcoulomb_a:g} Angstrom; epsilon_r = {float(ff.mdp.get('epsilon-r', 15)):g}; "
        f"epsilon_rf = {-1 if eps_rf == 0 else eps_rf:g};"
    )
    integrator = (
        f"type = NGLFCONSTRAINTGPULANGEVIN; T = {temperature}; P0 = 1.0 bar; beta = 3.0e-4/bar; tauBarostat = 1.0 ps;"
    )
    return f"""// ddcMD control file written by mummi for one production run (untested against a real ddcMD)
simulate SIMULATE
{{
   type = MD;
   system = system;
   integrator = nglf;
   deltaloop = {nsteps};
   maxloop = {nsteps};
   dt = {spec.sim.dt_fs:g};
   printrate = {every};
   snapshotrate = 0;
   checkpointrate = {every * spec.sim.ddcmd.checkpoint_every_frames};
   nLoopDigits = 12;
   printinfo = printinfo;
   heap = heap;
   ddc = ddc;
   analysis = writeCharmm;
   accelerator = accelerator;
}}

accelerator ACCELERATOR {{ type = CUDA; maxPagesPerParticle = 1; }}
energyInfo ENERGYINFO {{}}
heap HEAP {{ size = 1000; }}
ddc DDC {{ updateRate = 20; }}
printinfo PRINTINFO {{ {printinfo} }}

martini POTENTIAL
{{
   type = MARTINI;
   excludePotentialTerm = 0;
   use_transform = 0;
   cutoff = {cutoff_a:g} Angstrom;
   {coulomb}
   function = lennardjones;
   parmfile = martini.data;
   use_gpu = 1;
}}

nglf INTEGRATOR {{ {integrator} }}

system SYSTEM
{{
   type = NORMAL;
   potential = martini;
   neighbor = nbr;
   groups = group;
   random = lcg64;
   box = box;
   collection = collection;
   moleculeClass = moleculeClass;
   nConstraints = 0;
}}

box BOX {{ type = ORTHORHOMBIC; pbc = 7; }}
nbr NEIGHBOR {{ type = NORMAL; deltaR = 4.0000; minBoxSide = 6; }}
group GROUP {{ type = LANGEVIN; Teq = {temperature}; tau = {float(ff.mdp.get("tau-t", 1.0)):g}ps; useDefault = 0; }}
lcg64 RANDOM {{ type = LCG64; randomizeSeed = 1; }}
writeCharmm ANALYSIS {{ type = subsetWrite; outputrate = {every}; format = binaryCharmm; }}
"""


def write_inputs(workdir: Path, sim_dir: Path, spec: CampaignSpec, seed: int) -> None:
    """ddcMD's inputs for the equilibrated system of ``sim_dir`` (``topol_pp.top``, ``eq.gro``)."""
    top = parse_topology((sim_dir / "topol_pp.top").read_text())
    atoms = open_universe(sim_dir / EQ_STRUCTURE).atoms
    box_a = atoms.dimensions[:3].astype(np.float64)
    velocities = atoms.velocities if hasattr(atoms, "velocities") else np.zeros((len(atoms), 3))
    ff = ForceField.load(spec.sim.gromacs.forcefield)
    snapshot = SNAPSHOT.format(loop=0)
    (workdir / snapshot).mkdir(parents=True, exist_ok=True)
    # GRO holds 3 decimals (nm) and 4 (nm/ps): rounding drops float32 noise from the Angstrom values.
    # ddcMD's box has its corner at -h/2 (box.c) and its velocities are in Angstrom/fs: positions are
    # written centred, so the subset frames (written minus the corner) hold eq.gro's coordinates.
    positions = np.round(atoms.positions.astype(np.float64), 3) - box_a / 2
    velocities = np.round(np.asarray(velocities, dtype=np.float64), 4) / 1000
    atomic_write_text(workdir / snapshot / "atoms#000000", atoms_text(top, positions, velocities, box_a))
    atomic_write_text(workdir / snapshot / "restart", restart_text(len(atoms), box_a, snapshot))
    atomic_write_text(workdir / "martini.data", martini_data(top))
    atomic_write_text(workdir / "molecule.data", molecule_data(top))
    atomic_write_text(workdir / "object.data", object_data(spec, ff, seed))  # last: marks the inputs complete


# ---------------------------------------------------------------- restarts
def latest_checkpoint(workdir: Path) -> tuple[int, Path] | None:
    """(loop, restart file) of the newest snapshot directory holding a restart file."""
    found = []
    for d in workdir.glob("snapshot.*"):
        match = re.fullmatch(r"snapshot\.(\d+)", d.name)
        if match and (d / "restart").is_file():
            found.append((int(match.group(1)), d / "restart"))
    return max(found) if found else None


def point_restart(workdir: Path, target: Path) -> None:
    link = workdir / "restart"
    tmp = workdir / f".restart.tmp-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target.relative_to(workdir))
    os.replace(tmp, link)


def command(spec: CampaignSpec) -> list[str]:
    d = spec.sim.ddcmd
    return [*d.launcher, d.executable, "-o", "object.data", "molecule.data"]


class DdcmdEngine:
    """The ddcMD engine behind the :class:`~mummi.adapters.md_engine.MDEngine` interface (production only)."""

    name = "ddcmd"

    def setup(self, sim_dir: Path, membrane: Membrane, spec: CampaignSpec, seed: int) -> dict[str, object]:
        raise ValueError("ddcMD runs production only; set createsim.engine: gromacs to equilibrate for it")

    def trajectory(self, sim_dir: Path) -> tuple[Path, Path]:
        """The structure and the ddcMD run directory, whose subset files open as frames (format DDCMD)."""
        return Path(sim_dir) / EQ_STRUCTURE, Path(sim_dir) / WORKDIR

    def production(self, sim_dir: Path, spec: CampaignSpec, seed: int, deadline: float | None) -> bool:
        sim_dir = Path(sim_dir)
        workdir = sim_dir / WORKDIR
        nsteps = int(stage_mdp("md", spec, ForceField.load(spec.sim.gromacs.forcefield), seed)["nsteps"])
        if not (workdir / "object.data").exists():
            write_inputs(workdir, sim_dir, spec, seed)
        loop, restart = latest_checkpoint(workdir) or (0, None)
        if restart is None:
            raise RuntimeError(f"{workdir}: no snapshot directory with a restart file")
        if loop >= nsteps:
            return True
        point_restart(workdir, restart)
        log.info("ddcMD %s: starting at loop %d of %d", sim_dir.name, loop, nsteps)
        timeout = None if deadline is None else max(1.0, deadline - time.monotonic())
        with open(workdir / f"ddcmd.{len(list(workdir.glob('ddcmd.*.log')))}.log", "w") as out:  # one log per launch
            proc = subprocess.Popen(
                command(spec), cwd=workdir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _stop(proc)
                return False
        if code != 0:
            raise RuntimeError(f"ddcMD exited with {code} in {workdir}; see its log there")
        loop, _ = latest_checkpoint(workdir) or (0, None)
        return loop >= nsteps


def _stop(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    """SIGTERM the launcher's process group, then SIGKILL it after ``grace_s``."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
