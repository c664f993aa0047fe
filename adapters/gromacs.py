"""GROMACS engine: structure, topology and mdp files from a force-field directory; grompp + mdrun.

A force-field directory holds GROMACS include files and ``build.json`` (the
include order, a template per lipid and for the protein, the box height and the
force field's own mdp options; see ``forcefield/mummi_cg/build.json``). mummi
ships ``mummi_cg``, a small implicit-solvent field on which tiny patches run in
seconds; real campaigns point ``sim.gromacs.forcefield`` at a Martini directory.

createsim: ``system.gro`` + ``topol.top`` (force-field files copied to
``toppar/``) -> steepest-descent minimisation (``em.*``) -> stochastic-dynamics
equilibration (``eq.*``, ending in ``eq.gro`` and ``eq.cpt``; ``topol_pp.top`` is
the preprocessed topology other engines convert).

sim: ``md.tpr`` from ``eq.gro`` + ``eq.cpt``, then ``gmx mdrun -deffnm md -cpi
md.cpt -maxh H``: mdrun checkpoints and stops at the first neighbour-search step
after 0.99 H hours, and a rerun appends to ``md.xtc`` from the checkpoint (mdrun
truncates its outputs to the checkpoint, so frames written after it by a killed
run are neither lost nor repeated).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mummi.adapters import insane_build
from mummi.adapters.insane_build import Placed
from mummi.adapters.itp import MoleculeType, read_itps
from mummi.adapters.md_engine import (
    DeterministicFailure,
    build_universe,
    open_universe,
    production_seed,
    write_gro,
)
from mummi.adapters.membrane import Membrane
from mummi.core.atomic import atomic_write_text
from mummi.core.lipids import CHANNELS, N_INNER
from mummi.core.simdir import EQ_STRUCTURE, TRAJECTORY
from mummi.core.spec import CampaignSpec
from mummi.core.unreadable import reading

log = logging.getLogger(__name__)

DEFAULT_FORCEFIELD = Path(__file__).resolve().parent / "forcefield" / "mummi_cg"
TOPPAR = "toppar"
MIN_MAXH = 1.0 / 3600  # mdrun needs a positive -maxh; below a second there is nothing to run


# --------------------------------------------------------------- force field
@dataclass(frozen=True)
class Template:
    molecule: str
    atoms: tuple[str, ...]
    xyz_nm: np.ndarray  # (k, 3) relative to the lateral position and the midplane (outer-leaflet orientation)


MdpValue = str | int | float  # one mdp option: a name, a count or a number


@dataclass(frozen=True)
class ProteinFiles:
    """A protein structure (membrane frame: midplane at z = 0, cytoplasm below) and its topology."""

    gro: Path
    itp: Path
    pull_to_nm: float | None  # where the restrained equilibration pulls its centre of mass (below the midplane)


@dataclass(frozen=True)
class ForceField:
    directory: Path
    includes: tuple[str, ...]
    lipids: dict[str, Template]
    protein: Template | None
    box_z_nm: float
    mdp: dict[str, MdpValue]
    builder: str = "lattice"  # "insane": Martini systems built with insane (adapters/insane_build.py)
    insane: dict[str, Any] = field(default_factory=dict)
    protein_files: ProteinFiles | None = None
    mdp_dynamics: dict[str, MdpValue] = field(default_factory=dict)  # options of the dynamics stages only
    mdp_em: dict[str, MdpValue] = field(default_factory=dict)  # options of the minimisation only
    eq_dt_fs: float | None = None  # equilibration time step; default: the production one

    @classmethod
    def load(cls, directory: str | Path | None) -> ForceField:
        directory = Path(directory) if directory is not None else DEFAULT_FORCEFIELD
        path = directory / "build.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            builder = data.get("builder", "lattice")
            if builder not in ("lattice", "insane"):
                raise ValueError(f"builder {builder!r}; allowed: lattice, insane")
            lipids = {
                name: Template(name, tuple(t["atoms"]), np.column_stack([np.zeros((len(t["z_nm"]), 2)), t["z_nm"]]))
                for name, t in data.get("lipids", {}).items()
            }
            protein, files = None, None
            if builder == "insane":
                p = data["protein"]
                files = ProteinFiles(directory / p["gro"], directory / p["itp"], p.get("pull_to_nm"))
            else:
                protein = cls._protein(directory, data["protein"])
            ff = cls(
                directory,
                tuple(data["includes"]),
                lipids,
                protein,
                float(data["box_z_nm"]),
                dict(data.get("mdp", {})),
                builder=builder,
                insane=dict(data.get("insane", {})),
                protein_files=files,
                mdp_dynamics=dict(data.get("mdp_dynamics", {})),
                mdp_em=dict(data.get("mdp_em", {})),
                eq_dt_fs=data.get("eq_dt_fs"),
            )
        except (OSError, KeyError, ValueError, TypeError) as err:
            raise ValueError(
                f"{path}: not a usable force-field build file ({err!r}); see {DEFAULT_FORCEFIELD / 'build.json'}"
            ) from err
        missing = sorted({name for _, name in CHANNELS} - set(lipids))
        if missing and builder == "lattice":
            raise ValueError(f"{path}: no template for lipids {missing}")
        return ff

    @staticmethod
    def _protein(directory: Path, spec: dict) -> Template:
        if "structure" in spec:  # a GRO of the protein, centred on its lateral position
            atoms = open_universe(directory / spec["structure"]).atoms
            xyz = atoms.positions / 10.0
            xyz[:, :2] -= xyz[:, :2].mean(axis=0)
            xyz[:, 2] += float(spec["z_nm"]) - xyz[:, 2].mean()
            return Template(spec["molecule"], tuple(atoms.names), xyz)
        return Template(spec["molecule"], tuple(spec["atoms"]), np.asarray(spec["xyz_nm"], dtype=np.float64))


# ------------------------------------------------------------- system files
def write_system(sim_dir: Path, membrane: Membrane, ff: ForceField, protein: ProteinFiles | None, seed: int) -> None:
    """``system.gro`` and ``topol.top`` for ``membrane``; force-field files into ``toppar/``.

    ``protein`` replaces the force field's own protein (insane builder only).
    """
    if ff.builder == "insane":
        _write_insane_system(sim_dir, membrane, ff, protein or ff.protein_files, seed)
    else:
        _write_lattice_system(sim_dir, membrane, ff)


def _write_lattice_system(sim_dir: Path, membrane: Membrane, ff: ForceField) -> None:
    assert ff.protein is not None
    mid = ff.box_z_nm / 2
    placed = [(ff.protein, ff.protein.xyz_nm + [x, y, mid]) for x, y in membrane.ras_xy_nm]
    molecules = [(ff.protein.molecule, len(membrane.ras_xy_nm))]
    for c, (_, lipid) in enumerate(CHANNELS):
        t = ff.lipids[lipid]
        mirror = [1.0, 1.0, -1.0 if c < N_INNER else 1.0]  # inner-leaflet lipids point the other way
        lateral = membrane.xy_nm[membrane.channel == c]
        placed += [(t, t.xyz_nm * mirror + [x, y, mid]) for x, y in lateral]
        molecules.append((lipid, len(lateral)))
    positions = np.vstack([xyz for _, xyz in placed])
    positions[:, :2] %= membrane.box_nm
    _write_gro(
        sim_dir / "system.gro",
        Placed(
            [n for t, _ in placed for n in t.atoms],
            [t.molecule for t, _ in placed],
            [len(t.atoms) for t, _ in placed],
            positions,
        ),
        (membrane.box_nm, membrane.box_nm, ff.box_z_nm),
    )
    _write_topology(sim_dir, membrane, [ff.directory / name for name in ff.includes], molecules)


def _write_insane_system(
    sim_dir: Path, membrane: Membrane, ff: ForceField, protein: ProteinFiles | None, seed: int
) -> None:
    if protein is None:
        raise ValueError(f"{ff.directory / 'build.json'}: no protein; give createsim.protein")
    includes = [ff.directory / name for name in ff.includes]
    topology = read_itps(includes)
    protein_type = _protein_type(protein, topology.atom_types)
    rng = np.random.default_rng(seed)
    mid = ff.box_z_nm / 2
    n_leaflet = max(1, membrane.n_lipids // 2)
    spacing = membrane.box_nm / np.sqrt(n_leaflet)
    lipid_names = [lipid for _, lipid in CHANNELS]
    definitions = ff.insane.get("lipid_definitions")
    definitions_text = (ff.directory / definitions).read_text(encoding="utf-8") if definitions else ""
    templates = insane_build.lipid_templates(lipid_names, definitions_text, spacing)
    names, frame = _protein_structure(protein)
    proteins = insane_build.place_proteins(membrane, names, protein_type.residue_runs(), frame, mid)
    lipids = insane_build.clear_anchors(
        insane_build.place_lipids(membrane, templates, spacing, mid, rng), proteins, mid, membrane.box_nm
    )
    solute = proteins + lipids
    box = (membrane.box_nm, membrane.box_nm, ff.box_z_nm)
    _write_gro(sim_dir / "solute.gro", solute, box)
    charge = len(membrane.ras_xy_nm) * protein_type.charge + sum(
        topology.molecules[lipid].charge * int(np.sum(membrane.channel == c)) for c, (_, lipid) in enumerate(CHANNELS)
    )
    solvent, solute_xyz, solvent_counts = insane_build.solvate(
        sim_dir / "solute.gro",
        round(charge),
        ff.insane.get("solvent", ["W"]),
        float(ff.insane.get("salt_molar", 0.15)),
        int(rng.integers(2**31)),
    )
    moved = Placed(solute.names, solute.resnames, solute.sizes, solute_xyz)
    _write_gro(sim_dir / "system.gro", moved + solvent, box)
    write_index(
        sim_dir / "index.ndx",
        len(names),
        len(membrane.ras_xy_nm),
        len(lipids.names),
        len(moved.names) + len(solvent.names),
    )
    molecules = [(protein_type.name, len(membrane.ras_xy_nm))]
    molecules += [(lipid, int(np.sum(membrane.channel == c))) for c, (_, lipid) in enumerate(CHANNELS)]
    _write_topology(sim_dir, membrane, [*includes, protein.itp], molecules + solvent_counts)


def _protein_structure(protein: ProteinFiles) -> tuple[list[str], np.ndarray]:
    """Atom names and positions (nm) of the protein's structure."""
    with reading(protein.gro, "GRO structure of the protein"):
        atoms = open_universe(protein.gro).atoms
        return list(atoms.names), atoms.positions / 10.0


def _protein_type(protein: ProteinFiles, atom_types: set[str]) -> MoleculeType:
    """The protein's one molecule type, checked against its structure and the force field's atom types."""
    found = read_itps([protein.itp]).molecules
    if len(found) != 1:
        raise ValueError(f"{protein.itp}: holds {len(found)} molecule types; give one (the protein)")
    mol = next(iter(found.values()))
    names, _ = _protein_structure(protein)
    if len(names) != len(mol.atom_names):
        raise ValueError(f"{protein.gro} has {len(names)} atoms but {protein.itp} defines {len(mol.atom_names)}")
    if names != mol.atom_names:
        i = next(i for i, (a, b) in enumerate(zip(names, mol.atom_names)) if a != b)
        raise ValueError(f"atom {i + 1} is {names[i]!r} in {protein.gro} but {mol.atom_names[i]!r} in {protein.itp}")
    unknown = sorted(set(mol.atom_types) - atom_types)
    if unknown:
        raise ValueError(f"{protein.itp}: bead types {unknown} are not defined by the force field")
    return mol


def _write_gro(path: Path, placed: Placed, box: Sequence[float]) -> None:
    u = build_universe(placed.names, placed.resnames, placed.sizes, box)
    u.atoms.positions = 10 * placed.xyz
    write_gro(path, u)


def _write_topology(sim_dir: Path, membrane: Membrane, includes: list[Path], molecules: list[tuple[str, int]]) -> None:
    (sim_dir / TOPPAR).mkdir(exist_ok=True)
    for path in includes:
        shutil.copyfile(path, sim_dir / TOPPAR / path.name)
    lines = [f'#include "{TOPPAR}/{path.name}"' for path in includes]
    lines += ["", "[ system ]", f"patch {membrane.patch_id}", "", "[ molecules ]"]
    lines += [f"{name:<8s} {count}" for name, count in molecules if count]
    atomic_write_text(sim_dir / "topol.top", "\n".join(lines) + "\n")


# ---------------------------------------------------------------------- mdp
def mdp_text(options: dict[str, MdpValue]) -> str:
    return "".join(f"{key:<24s} = {value}\n" for key, value in options.items())


def stage_mdp(
    stage: str, spec: CampaignSpec, ff: ForceField, seed: int, groups: dict[str, list[int]] | None = None
) -> dict[str, MdpValue]:
    """Options of ``stage`` (em; pull: restrained proteins pulled to the membrane; eq; md): the force field's
    own, then the run's. ``groups``: the system's index groups (:func:`write_index`), where it has proteins."""
    n_proteins = sum(name.startswith("Protein_") for name in groups or {})
    temperature = spec.macro.temperature_K
    dynamics: dict[str, MdpValue] = ff.mdp_dynamics | {
        "tc-grps": "System",
        "tau-t": ff.mdp.get("tau-t", 1.0),
        "ref-t": temperature,
        "ld-seed": seed % 2**31,
    }
    base = {k: v for k, v in ff.mdp.items() if k != "tau-t"}
    if stage == "em":
        steep: dict[str, MdpValue] = {"integrator": "steep", "nsteps": spec.createsim.em_steps, "emtol": 100.0,
                                      "emstep": 0.01}  # fmt: skip
        return base | ff.mdp_em | steep
    if stage in ("pull", "eq"):
        dt_ps = (ff.eq_dt_fs or spec.sim.dt_fs) / 1000
        length_ns = spec.createsim.pull_ns if stage == "pull" else spec.createsim.equilibration_ns
        options = (
            base
            | dynamics
            | {
                "integrator": "sd",
                "dt": dt_ps,
                "nsteps": max(1, round(length_ns * 1000 / dt_ps)),
                "nstxout-compressed": 0,
                "nstcalcenergy": 100,
                "nstenergy": 1000,
                "nstlog": 1000,
            }
        )
        first = stage == "pull" or n_proteins == 0 or not _pulls(ff, spec)
        options |= (
            {"gen-vel": "yes", "gen-temp": temperature, "gen-seed": seed % 2**31}
            if first
            else {"continuation": "yes", "gen-vel": "no"}
        )
        return options | (_pull_options(spec, ff, groups or {}) if stage == "pull" else {})
    if stage == "md":
        dt_ps = spec.sim.dt_fs / 1000
        every = max(1, round(spec.sim.output_interval_ps / dt_ps))
        return (
            base
            | dynamics
            | {
                "integrator": "sd",
                "dt": dt_ps,
                "nsteps": max(1, round(spec.sim.length_ns * 1000 / dt_ps)),
                "continuation": "yes",
                "gen-vel": "no",
                "nstxout-compressed": every,
                "nstcalcenergy": _divisor(every, 100),
                "nstenergy": every,
                "nstlog": every,
            }
        )
    raise ValueError(f"unknown stage {stage!r}; allowed: em, pull, eq, md")


def _pulls(ff: ForceField, spec: CampaignSpec) -> bool:
    """Whether createsim has a restrained, pulled equilibration before the free one."""
    protein = protein_files(spec, ff)
    return ff.builder == "insane" and protein is not None and protein.pull_to_nm is not None


def protein_files(spec: CampaignSpec, ff: ForceField) -> ProteinFiles | None:
    """The campaign's protein: ``createsim.protein``, else the force field's."""
    p = spec.createsim.protein
    return ProteinFiles(p.gro, p.itp, p.pull_to_nm) if p is not None else ff.protein_files


def _pull_options(spec: CampaignSpec, ff: ForceField, groups: dict[str, list[int]]) -> dict[str, MdpValue]:
    """Lateral restraints on the proteins (``POSRES_XY``) and an umbrella on each one's height below the
    membrane's centre of mass, at the protein's ``pull_to_nm``. Each group's periodic images are resolved
    from its middle atom, then from its centre of mass at the previous step (the membrane spans the box)."""
    n_proteins = sum(name.startswith("Protein_") for name in groups)
    protein = protein_files(spec, ff)
    assert protein is not None and protein.pull_to_nm is not None
    options: dict[str, MdpValue] = {
        "define": "-DPOSRES_XY",
        "refcoord-scaling": "com",
        "pull": "yes",
        "pull-ngroups": n_proteins + 1,
        "pull-ncoords": n_proteins,
        "pull-pbc-ref-prev-step-com": "yes",
        "pull-group1-name": "Membrane",
        "pull-group1-pbcatom": _middle(groups["Membrane"]),
    }
    for k in range(1, n_proteins + 1):
        options |= {
            f"pull-group{k + 1}-name": f"Protein_{k}",
            f"pull-group{k + 1}-pbcatom": _middle(groups[f"Protein_{k}"]),
            f"pull-coord{k}-type": "umbrella",
            f"pull-coord{k}-geometry": "distance",
            f"pull-coord{k}-dim": "N N Y",
            f"pull-coord{k}-groups": f"1 {k + 1}",
            f"pull-coord{k}-init": protein.pull_to_nm,
            f"pull-coord{k}-rate": 0.0,
            f"pull-coord{k}-k": 1000.0,
        }
    return options


def _middle(atoms: list[int]) -> int:
    return atoms[len(atoms) // 2]


def read_index(path: Path) -> dict[str, list[int]]:
    """The groups of a GROMACS index file (atom numbers from 1)."""
    groups: dict[str, list[int]] = {}
    name = None
    with reading(path, "GROMACS index file"):
        for line in path.read_text(encoding="utf-8").splitlines():
            header = re.fullmatch(r"\s*\[\s*(\S+)\s*\]\s*", line)
            if header:
                name = header.group(1)
                groups[name] = []
            elif line.strip() and name is not None:
                groups[name] += [int(a) for a in line.split()]
    return groups


def protein_groups(sim_dir: Path) -> tuple[np.ndarray, ...] | None:
    """0-based atom indices of each protein copy (``Protein_k`` of the setup's index file), or None without one."""
    index = Path(sim_dir) / "index.ndx"
    if not index.exists():
        return None
    groups = read_index(index)
    copies = sorted(
        (int(name.split("_")[1]), atoms) for name, atoms in groups.items() if re.fullmatch(r"Protein_\d+", name)
    )
    return tuple(np.asarray(atoms, dtype=np.int64) - 1 for _, atoms in copies)


def write_index(path: Path, n_protein_atoms: int, n_proteins: int, n_membrane_atoms: int, n_atoms: int) -> None:
    """GROMACS index groups of a system ordered proteins, lipids, solvent: System, Protein_k, Membrane."""
    groups = {"System": range(1, n_atoms + 1)}
    for k in range(n_proteins):
        groups[f"Protein_{k + 1}"] = range(1 + k * n_protein_atoms, 1 + (k + 1) * n_protein_atoms)
    start = 1 + n_proteins * n_protein_atoms
    groups["Membrane"] = range(start, start + n_membrane_atoms)
    lines = []
    for name, atoms in groups.items():
        numbers = list(atoms)
        lines.append(f"[ {name} ]")
        lines += [" ".join(map(str, numbers[i : i + 15])) for i in range(0, len(numbers), 15)]
    atomic_write_text(path, "\n".join(lines) + "\n")


def _divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


# ------------------------------------------------------------------ running
def run_gmx(gmx: str, args: Sequence[str], cwd: Path, log_name: str) -> None:
    """Run ``gmx args`` in ``cwd``, output to ``log_name``; raise with the log's tail on failure."""
    env = os.environ | {"GMX_MAXBACKUP": "-1"}  # reruns overwrite instead of piling up #backups#
    with open(cwd / log_name, "w") as out:
        proc = subprocess.run([gmx, *args], cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
    if proc.returncode != 0:
        tail = (cwd / log_name).read_text(errors="replace")[-3000:]
        raise RuntimeError(f"gmx {' '.join(args)} failed in {cwd} (exit {proc.returncode}):\n{tail}")


def checkpoint_step(gmx: str, cpt: Path) -> int:
    """The step a GROMACS checkpoint was written at."""
    out = subprocess.run([gmx, "dump", "-cp", str(cpt)], capture_output=True, text=True, check=True).stdout
    match = re.search(r"^\s*step\s*=\s*(\d+)", out, flags=re.MULTILINE)
    if match is None:
        raise RuntimeError(f"gmx dump -cp {cpt}: no step in its output")
    return int(match.group(1))


class GromacsEngine:
    """The GROMACS engine behind the :class:`~mummi.adapters.md_engine.MDEngine` interface."""

    name = "gromacs"

    def setup(self, sim_dir: Path, membrane: Membrane, spec: CampaignSpec, seed: int) -> dict[str, object]:
        """Minimise; with a pulled protein, equilibrate it restrained and pulled onto the membrane; equilibrate
        freely (``eq.gro``, ``eq.cpt``); write the production run input ``md.tpr``. Finished stages are kept."""
        sim_dir = Path(sim_dir)
        ff = ForceField.load(spec.sim.gromacs.forcefield)
        if not (sim_dir / "topol.top").exists():
            try:
                write_system(sim_dir, membrane, ff, protein_files(spec, ff), seed)
            except ValueError as err:  # the inputs cannot make this system: a rerun fails the same way
                raise DeterministicFailure(f"createsim cannot build the system of {sim_dir.name}: {err}") from err
        index = sim_dir / "index.ndx"
        groups = read_index(index) if index.exists() else {}
        stages = ["em", *(["pull"] if len(membrane.ras_xy_nm) and _pulls(ff, spec) else []), "eq"]
        previous = "system"
        for stage in stages:
            if not (sim_dir / f"{stage}.gro").exists():
                mdp = stage_mdp(stage, spec, ff, seed, groups)
                self._run_stage(sim_dir, spec, stage, previous, continues=mdp.get("continuation") == "yes", mdp=mdp)
            previous = stage
        _production_tpr(sim_dir, spec, ff, production_seed(spec, sim_dir))
        return {"forcefield": str(ff.directory), "atoms": _gro_atoms(sim_dir / EQ_STRUCTURE), "stages": stages}

    @staticmethod
    def _run_stage(sim_dir: Path, spec: CampaignSpec, stage: str, start: str, continues: bool, mdp: dict) -> None:
        gmx = spec.sim.gromacs.executable
        atomic_write_text(sim_dir / f"{stage}.mdp", mdp_text(mdp))
        args = ["grompp", "-f", f"{stage}.mdp", "-c", f"{start}.gro", "-r", f"{start}.gro", "-p", "topol.top"]
        args += ["-o", f"{stage}.tpr", "-po", f"{stage}.mdout.mdp", "-pp", f"{stage}.top"]
        if continues:
            args += ["-t", f"{start}.cpt"]
        if (sim_dir / "index.ndx").exists():
            args += ["-n", "index.ndx"]
        run_gmx(gmx, args, sim_dir, f"{stage}.grompp.log")
        threads = ["-nt", str(spec.createsim.resources.cores_per_task)]
        # the final structure goes to a temporary name: <stage>.gro appears only once <stage>.cpt is complete
        try:
            run_gmx(
                gmx, ["mdrun", "-deffnm", stage, "-c", f"{stage}.final.gro", *threads], sim_dir, f"{stage}.mdrun.log"
            )
        except RuntimeError as err:  # the stage's seed is the sim's: a rerun blows up the same way
            raise _unstable(sim_dir / f"{stage}.mdrun.log") or err from err
        if stage == "eq":
            os.replace(sim_dir / "eq.top", sim_dir / "topol_pp.top")
        os.replace(sim_dir / f"{stage}.final.gro", sim_dir / f"{stage}.gro")

    def trajectory(self, sim_dir: Path) -> tuple[Path, Path]:
        return Path(sim_dir) / EQ_STRUCTURE, Path(sim_dir) / TRAJECTORY

    def production(self, sim_dir: Path, spec: CampaignSpec, seed: int, deadline: float | None) -> bool:
        sim_dir = Path(sim_dir)
        g = spec.sim.gromacs
        gmx = g.executable
        ff = ForceField.load(g.forcefield)
        mdp = stage_mdp("md", spec, ff, seed)
        _production_tpr(sim_dir, spec, ff, seed)
        cpt = sim_dir / "md.cpt"
        if cpt.exists() and checkpoint_step(gmx, cpt) >= int(mdp["nsteps"]):
            return True
        args = [
            "mdrun",
            "-deffnm",
            "md",
            "-cpi",
            "md.cpt",
            "-cpt",
            str(spec.sim.checkpoint_interval_min),
            "-nt",
            str(g.threads),
            *g.mdrun_args,
        ]
        if deadline is not None:
            args += ["-maxh", f"{max(MIN_MAXH, (deadline - time.monotonic()) / 3600):.6f}"]
        log_name = f"md.mdrun.{len(list(sim_dir.glob('md.mdrun.*.log')))}.log"  # one log per launch
        try:
            run_gmx(gmx, args, sim_dir, log_name)
        except RuntimeError as err:
            raise _unstable(sim_dir / log_name) or err from err
        done = checkpoint_step(gmx, cpt) >= int(mdp["nsteps"])
        if not done:
            log.info("gromacs sim %s stopped before the deadline at step %d", sim_dir.name, checkpoint_step(gmx, cpt))
        return done


def _production_tpr(sim_dir: Path, spec: CampaignSpec, ff: ForceField, seed: int) -> None:
    """``md.tpr`` from ``eq.gro`` + ``eq.cpt``; written under another name first, so a killed grompp leaves none."""
    if (sim_dir / "md.tpr").exists():
        return
    atomic_write_text(sim_dir / "md.mdp", mdp_text(stage_mdp("md", spec, ff, seed)))
    args = ["grompp", "-f", "md.mdp", "-c", EQ_STRUCTURE, "-t", "eq.cpt", "-p", "topol.top", "-o", "md.new.tpr"]
    run_gmx(spec.sim.gromacs.executable, [*args, "-po", "md.mdout.mdp"], sim_dir, "md.grompp.log")
    os.replace(sim_dir / "md.new.tpr", sim_dir / "md.tpr")


UNSTABLE = ("Too many LINCS warnings", "LINCS WARNING", "SETTLE", "moved more than", "coordinate is NaN",
            "is not finite")  # fmt: skip
"""What mdrun prints when the system blows up: a rerun from the same checkpoint blows up the same way."""


def _unstable(log_path: Path) -> DeterministicFailure | None:
    text = log_path.read_text(errors="replace") if log_path.is_file() else ""
    found = next((signature for signature in UNSTABLE if signature in text), None)
    if found is None:
        return None
    return DeterministicFailure(
        f"the system is unstable (mdrun: {found!r}); a rerun from the same checkpoint fails the same way: check the "
        f"setup (createsim: more createsim.em_steps, fewer lipids per cell) or lower sim.dt_fs; log: {log_path}"
    )


def _gro_atoms(path: Path) -> int:
    with open(path) as fh:
        fh.readline()
        return int(fh.readline())


def system_input_problems(spec: CampaignSpec) -> list[str]:
    """What in the force field or the protein would make createsim fail, each with its key and the fix."""
    if spec.createsim.engine != "gromacs":
        return []
    try:
        ff = ForceField.load(spec.sim.gromacs.forcefield)
    except ValueError as err:
        return [f"sim.gromacs.forcefield: {err}"]
    protein = protein_files(spec, ff)
    if ff.builder != "insane":
        if spec.createsim.protein is not None:
            return ["createsim.protein: only a Martini force field (build.json 'builder': 'insane') takes a "
                    "protein structure; remove createsim.protein or point sim.gromacs.forcefield at one"]  # fmt: skip
        return []
    problems = []
    try:
        topology = read_itps([ff.directory / name for name in ff.includes])
        undefined = sorted({lipid for _, lipid in CHANNELS} - set(topology.molecules))
        if undefined:
            problems.append(f"sim.gromacs.forcefield: {ff.directory} defines no [ moleculetype ] for lipids "
                            f"{undefined}; add their topologies to its include files")  # fmt: skip
        definitions = ff.insane.get("lipid_definitions")
        text = (ff.directory / definitions).read_text(encoding="utf-8") if definitions else ""
        insane_build.lipid_templates([lipid for _, lipid in CHANNELS], text, 0.8)
    except (OSError, ValueError) as err:
        problems.append(f"sim.gromacs.forcefield: {err}")
        return problems
    key = "createsim.protein" if spec.createsim.protein is not None else "sim.gromacs.forcefield"
    if protein is None:
        return [*problems, f"{key}: no protein structure; give createsim.protein: {{gro: ..., itp: ...}}"]
    try:
        _protein_type(protein, topology.atom_types)
    except (OSError, ValueError) as err:
        problems.append(f"{key}: {err}; give a GRO and an ITP of the same protein, in Martini bead types")
    return problems
