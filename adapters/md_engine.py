"""One interface for the MD engines of createsim and sim (DESIGN.md, "MD engines").

An engine sets a system up from a built membrane (createsim), runs or resumes
production from its own checkpoint until done or until a deadline (sim), and
names the trajectory that the in situ analysis follows. Engines are chosen by
name; each lives in its own module, imported only when asked for.
"""

from __future__ import annotations

import hashlib
import importlib
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from mummi.adapters.membrane import Membrane
from mummi.core.atomic import atomic_write
from mummi.core.spec import CampaignSpec

ENGINES: dict[str, str] = {
    "gromacs": "mummi.adapters.gromacs:GromacsEngine",
    "ddcmd": "mummi.adapters.ddcmd:DdcmdEngine",
    "mock": "mummi.adapters.mock_md:MockEngine",
}


class DeterministicFailure(RuntimeError):
    """A failure that a retry of the same inputs repeats (an unstable system: LINCS errors, atoms flying off):
    the job says so in its status record, and the sim fails at once instead of spending its retries."""


class MDEngine(Protocol):
    name: str

    def setup(self, sim_dir: Path, membrane: Membrane, spec: CampaignSpec, seed: int) -> dict[str, object]:
        """Createsim: write the engine's inputs, minimise and equilibrate; write ``eq.gro``.

        Idempotent: steps whose outputs exist are skipped. Returns facts for the status record.
        """
        ...

    def production(self, sim_dir: Path, spec: CampaignSpec, seed: int, deadline: float | None) -> bool:
        """Sim: run or resume production; True when it is complete, False when it
        stopped cleanly (checkpoint written) because ``deadline`` (on the ``time.monotonic`` clock) neared."""
        ...

    def trajectory(self, sim_dir: Path) -> tuple[Path, Path]:
        """(topology/coordinate file, trajectory file) that the in situ analysis reads."""
        ...


def missing_executables(spec: CampaignSpec) -> list[str]:
    """What the spec's engines would run that is not on PATH here, each with its key and the fix."""
    wanted: dict[str, str] = {}
    if "gromacs" in (spec.createsim.engine, spec.sim.engine) or spec.sim.engine == "ddcmd":
        wanted["sim.gromacs.executable"] = spec.sim.gromacs.executable  # ddcMD sims are set up with GROMACS
    if spec.sim.engine == "ddcmd":
        wanted["sim.ddcmd.executable"] = spec.sim.ddcmd.executable
    return [f"{key}: {exe!r} is not on PATH; install it, load its module, or give its full path"
            for key, exe in wanted.items() if shutil.which(exe) is None]  # fmt: skip


def get_engine(name: str) -> MDEngine:
    """The engine called ``name`` (one of :data:`ENGINES`)."""
    try:
        target = ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown MD engine {name!r}; allowed: {', '.join(ENGINES)}") from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)()


def open_universe(*paths: str | Path):  # -> MDAnalysis.Universe
    """An MDAnalysis universe of an engine's structure (and trajectory), without guessing
    masses or types (nothing here uses them, and guessing warns for coarse-grained names).
    A trajectory that is a directory is a ddcMD run, read by :mod:`mummi.adapters.ddcmd_snapshot`."""
    import MDAnalysis as mda

    kwargs = _ddcmd_format() if len(paths) > 1 and Path(paths[-1]).is_dir() else {}
    if len(paths) > 1:
        drop_unreadable_offsets(Path(paths[-1]))
    with warnings.catch_warnings():  # a growing trajectory invalidates MDAnalysis' cached frame offsets
        warnings.filterwarnings("ignore", message="Reload offsets", category=UserWarning)
        try:
            return mda.Universe(*map(str, paths), to_guess=(), **kwargs)  # MDAnalysis >= 2.8
        except TypeError:
            return mda.Universe(*map(str, paths), **kwargs)


def offsets_cache(trajectory: Path) -> Path:
    """Where MDAnalysis caches the frame offsets of an XTC/TRR trajectory (beside it, hidden)."""
    return trajectory.with_name(f".{trajectory.name}_offsets.npz")


def drop_unreadable_offsets(trajectory: Path) -> None:
    """Remove MDAnalysis' offsets cache of ``trajectory`` when it does not read back whole (a write cut short, e.g.
    by a full disk): MDAnalysis rebuilds a missing cache, but fails on a truncated one."""
    cache = offsets_cache(trajectory)
    if not cache.is_file():
        return
    try:
        with np.load(cache, allow_pickle=False) as data:
            for key in data.files:
                data[key]
    except Exception:  # whatever numpy raises for a cut-short archive
        cache.unlink(missing_ok=True)


def _ddcmd_format() -> dict[str, str]:
    from mummi.adapters import ddcmd_snapshot  # registers the DDCMD reader with MDAnalysis

    return {"format": ddcmd_snapshot.FORMAT}


def build_universe(
    names: Sequence[str], resnames: Sequence[str], residue_sizes: Sequence[int], box_nm: Sequence[float]
):  # -> MDAnalysis.Universe
    """A one-frame universe with atom and residue names (set its positions, in Angstrom, before writing)."""
    import MDAnalysis as mda

    u = mda.Universe.empty(
        len(names),
        n_residues=len(resnames),
        atom_resindex=np.repeat(np.arange(len(resnames)), residue_sizes),
        trajectory=True,
    )
    u.add_TopologyAttr("names", list(names))
    u.add_TopologyAttr("resnames", list(resnames))
    u.add_TopologyAttr("resids", np.arange(1, len(resnames) + 1))
    u.dimensions = [*(10 * np.asarray(box_nm, dtype=np.float64)), 90.0, 90.0, 90.0]
    return u


def write_gro(path: str | Path, universe) -> None:
    """``universe``'s current frame as a GRO file (MDAnalysis writer), atomically."""
    from MDAnalysis.coordinates.GRO import GROWriter

    def write(tmp: Path) -> None:
        with GROWriter(str(tmp), n_atoms=len(universe.atoms)) as writer:
            writer.write(universe.atoms)

    atomic_write(path, write)


def seed_for(campaign_seed: int, *names: str) -> int:
    """A 63-bit seed from the campaign seed and names (sim id, purpose): stable across runs and machines."""
    text = ":".join([str(campaign_seed), *names])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def production_seed(spec: CampaignSpec, sim_dir: Path) -> int:
    """The seed of a sim's production run (its thermostat), the same whichever job writes the run input."""
    return seed_for(spec.campaign.seed, Path(sim_dir).name, "sim")
