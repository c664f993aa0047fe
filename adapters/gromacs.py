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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mummi.adapters.md_engine import DeterministicFailure, build_universe, open_universe, write_gro
from mummi.adapters.membrane import Membrane
from mummi.core.atomic import atomic_write_text
from mummi.core.lipids import CHANNELS, N_INNER
from mummi.core.simdir import EQ_STRUCTURE, TRAJECTORY
from mummi.core.spec import CampaignSpec

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
class ForceField:
    directory: Path
    includes: tuple[str, ...]
    lipids: dict[str, Template]
    protein: Template
    box_z_nm: float
    mdp: dict[str, MdpValue]

    @classmethod
    def load(cls, directory: str | Path | None) -> ForceField:
        directory = Path(directory) if directory is not None else DEFAULT_FORCEFIELD
        path = directory / "build.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            lipids = {
                name: Template(name, tuple(t["atoms"]), np.column_stack([np.zeros((len(t["z_nm"]), 2)), t["z_nm"]]))
                for name, t in data["lipids"].items()
            }
            protein = cls._protein(directory, data["protein"])
            ff = cls(
                directory, tuple(data["includes"]), lipids, protein, float(data["box_z_nm"]), dict(data.get("mdp", {}))
            )
        except (OSError, KeyError, ValueError, TypeError) as err:
            raise ValueError(
                f"{path}: not a usable force-field build file ({err!r}); see {DEFAULT_FORCEFIELD / 'build.json'}"
            ) from err
        missing = sorted({name for _, name in CHANNELS} - set(lipids))
        if missing:
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
def write_system(sim_dir: Path, membrane: Membrane, ff: ForceField) -> None:
    """``system.gro`` (via MDAnalysis) and ``topol.top`` for ``membrane``; force-field files into ``toppar/``."""
    mid = ff.box_z_nm / 2
    placed = [(ff.protein, ff.protein.xyz_nm + [x, y, mid]) for x, y in membrane.ras_xy_nm]
    molecules = [(ff.protein.molecule, len(membrane.ras_xy_nm))]
    for c, (_, lipid) in enumerate(CHANNELS):
        t = ff.lipids[lipid]
        mirror = [1.0, 1.0, -1.0 if c < N_INNER else 1.0]  # inner-leaflet lipids point the other way
        lateral = membrane.xy_nm[membrane.channel == c]
        placed += [(t, t.xyz_nm * mirror + [x, y, mid]) for x, y in lateral]
        molecules.append((lipid, len(lateral)))
    u = build_universe(
        [name for t, _ in placed for name in t.atoms],
        [t.molecule for t, _ in placed],
        [len(t.atoms) for t, _ in placed],
        (membrane.box_nm, membrane.box_nm, ff.box_z_nm),
    )
    positions = np.vstack([xyz for _, xyz in placed])
    positions[:, :2] %= membrane.box_nm
    u.atoms.positions = 10 * positions
    write_gro(sim_dir / "system.gro", u)
    (sim_dir / TOPPAR).mkdir(exist_ok=True)
    for name in ff.includes:
        shutil.copyfile(ff.directory / name, sim_dir / TOPPAR / name)
    lines = [f'#include "{TOPPAR}/{name}"' for name in ff.includes]
    lines += ["", "[ system ]", f"patch {membrane.patch_id}", "", "[ molecules ]"]
    lines += [f"{name:<8s} {count}" for name, count in molecules if count]
    atomic_write_text(sim_dir / "topol.top", "\n".join(lines) + "\n")


# ---------------------------------------------------------------------- mdp
def mdp_text(options: dict[str, MdpValue]) -> str:
    return "".join(f"{key:<24s} = {value}\n" for key, value in options.items())


def stage_mdp(stage: str, spec: CampaignSpec, ff: ForceField, seed: int) -> dict[str, MdpValue]:
    """Options of ``stage`` (em, eq, md): the force field's own, then the run's."""
    temperature = spec.macro.temperature_K
    dynamics: dict[str, MdpValue] = {
        "tc-grps": "System",
        "tau-t": ff.mdp.get("tau-t", 1.0),
        "ref-t": temperature,
        "ld-seed": seed % 2**31,
    }
    base = {k: v for k, v in ff.mdp.items() if k != "tau-t"}
    if stage == "em":
        return base | {"integrator": "steep", "nsteps": spec.createsim.em_steps, "emtol": 100.0, "emstep": 0.01}
    dt_ps = spec.sim.dt_fs / 1000
    if stage == "eq":
        return (
            base
            | dynamics
            | {
                "integrator": "sd",
                "dt": dt_ps,
                "nsteps": max(1, round(spec.createsim.equilibration_ns * 1000 / dt_ps)),
                "gen-vel": "yes",
                "gen-temp": temperature,
                "gen-seed": seed % 2**31,
                "nstxout-compressed": 0,
                "nstcalcenergy": 100,
                "nstenergy": 1000,
                "nstlog": 1000,
            }
        )
    if stage == "md":
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
    raise ValueError(f"unknown stage {stage!r}; allowed: em, eq, md")


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
        sim_dir = Path(sim_dir)
        gmx = spec.sim.gromacs.executable
        ff = ForceField.load(spec.sim.gromacs.forcefield)
        threads = ["-nt", str(spec.createsim.resources.cores_per_task)]
        if not (sim_dir / "em.gro").exists():
            write_system(sim_dir, membrane, ff)
            atomic_write_text(sim_dir / "em.mdp", mdp_text(stage_mdp("em", spec, ff, seed)))
            run_gmx(
                gmx,
                [
                    "grompp",
                    "-f",
                    "em.mdp",
                    "-c",
                    "system.gro",
                    "-p",
                    "topol.top",
                    "-o",
                    "em.tpr",
                    "-po",
                    "em.mdout.mdp",
                ],
                sim_dir,
                "em.grompp.log",
            )
            run_gmx(gmx, ["mdrun", "-deffnm", "em", *threads], sim_dir, "em.mdrun.log")
        if not (sim_dir / EQ_STRUCTURE).exists():
            atomic_write_text(sim_dir / "eq.mdp", mdp_text(stage_mdp("eq", spec, ff, seed)))
            run_gmx(
                gmx,
                [
                    "grompp",
                    "-f",
                    "eq.mdp",
                    "-c",
                    "em.gro",
                    "-p",
                    "topol.top",
                    "-o",
                    "eq.tpr",
                    "-po",
                    "eq.mdout.mdp",
                    "-pp",
                    "topol_pp.top",
                ],
                sim_dir,
                "eq.grompp.log",
            )
            # the final structure goes to a temporary name: eq.gro appears only once eq.cpt is complete
            run_gmx(gmx, ["mdrun", "-deffnm", "eq", "-c", "eq.final.gro", *threads], sim_dir, "eq.mdrun.log")
            os.replace(sim_dir / "eq.final.gro", sim_dir / EQ_STRUCTURE)
        return {"forcefield": str(ff.directory), "atoms": _gro_atoms(sim_dir / EQ_STRUCTURE)}

    def trajectory(self, sim_dir: Path) -> tuple[Path, Path]:
        return Path(sim_dir) / EQ_STRUCTURE, Path(sim_dir) / TRAJECTORY

    def production(self, sim_dir: Path, spec: CampaignSpec, seed: int, deadline: float | None) -> bool:
        sim_dir = Path(sim_dir)
        g = spec.sim.gromacs
        gmx = g.executable
        mdp = stage_mdp("md", spec, ForceField.load(g.forcefield), seed)
        if not (sim_dir / "md.tpr").exists():  # written under another name first: a killed grompp leaves no md.tpr
            atomic_write_text(sim_dir / "md.mdp", mdp_text(mdp))
            run_gmx(
                gmx,
                [
                    "grompp",
                    "-f",
                    "md.mdp",
                    "-c",
                    EQ_STRUCTURE,
                    "-t",
                    "eq.cpt",
                    "-p",
                    "topol.top",
                    "-o",
                    "md.new.tpr",
                    "-po",
                    "md.mdout.mdp",
                ],
                sim_dir,
                "md.grompp.log",
            )
            os.replace(sim_dir / "md.new.tpr", sim_dir / "md.tpr")
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
        f"setup (createsim) or lower sim.dt_fs; log: {log_path}"
    )


def _gro_atoms(path: Path) -> int:
    with open(path) as fh:
        fh.readline()
        return int(fh.readline())
