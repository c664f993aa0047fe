"""The dry run's MD engine: 2-D overdamped Langevin dynamics of a patch, in pure Python.

Particles are the RAS (one bead each) and the lipids (one bead each, the lipid's
channel as its type) of the built membrane in its periodic square box. Forces:

* RAS-lipid: the engine's hidden "truth", a tabulated V(r) per channel
  (``forcefield/mock_truth.json``, overridable by ``sim.mock.truth``), different
  from the macro model's initial potentials; the feedback loop must discover it;
* lipid-lipid within a leaflet: soft repulsion eps (1 - r/sigma)^2 for r < sigma;
* RAS-RAS: the same soft form with the RAS size.

Each step moves every particle by ``D/kT F dt + sqrt(2 D dt) xi``. The dynamics
sample exp(-U/kT), so in the dilute limit a lipid's density around a RAS is
exp(-V(r)/kT): the profile the in situ RDF must converge to.

createsim runs the same dynamics for ``createsim.equilibration_ns`` from the
lattice (the soft potentials need no minimisation first), optionally keeping a
random subset of each channel's lipids (``sim.mock.beads_per_lipid_type``).

Outputs, like a real engine's: ``eq.gro`` (coordinates with a residue per
particle named by its lipid type, MDAnalysis GRO writer) and ``md.xtc``
(MDAnalysis XTC writer). Leaflets are placed at different z so that the analysis
finds them as in a real membrane. The trajectory grows in blocks of
``checkpoint_every_frames``; after each block the state (positions, random
generator, frames, trajectory length) is checkpointed. A restart truncates the
trajectory to the checkpoint and continues; the random stream continues too, so a
killed and restarted run writes exactly the frames of an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from mummi.adapters.md_engine import build_universe, write_gro
from mummi.adapters.membrane import Membrane
from mummi.core.atomic import atomic_savez
from mummi.core.lipids import CHANNEL_NAMES, CHANNELS, N_CHANNELS, N_INNER, PROTEIN_NAME
from mummi.core.simdir import EQ_STRUCTURE, TRAJECTORY
from mummi.core.spec import CampaignSpec, MockEngineSettings

log = logging.getLogger(__name__)

KB_KJ_MOL_K = 0.0083144626
TRUTH_FILE = Path(__file__).resolve().parent / "forcefield" / "mock_truth.json"
EQ_STATE = "eq_state.npz"
CHECKPOINT = "md_state.npz"
BOX_Z_NM = 10.0
Z_NM = {"ras": 2.0, "inner": 3.0, "outer": 7.0}
RAS_REPULSION_KJ_MOL = 20.0


# ------------------------------------------------------------------- the truth
@dataclass(frozen=True)
class TruthPotentials:
    """RAS-lipid pair potentials V(r) per channel on a uniform grid from r = 0."""

    r_nm: np.ndarray
    v_kj_mol: dict[str, np.ndarray]
    temperature_K: float

    def table(self) -> np.ndarray:
        """(14, len(r)) potentials in channel order."""
        return np.stack([self.v_kj_mol[name] for name in CHANNEL_NAMES])


def truth_potentials(path: str | Path | None = None) -> TruthPotentials:
    """The mock engine's hidden RAS-lipid potentials (the built-in set, or ``path``)."""
    path = Path(path) if path is not None else TRUTH_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    r = np.asarray(data["r_nm"], dtype=np.float64)
    missing = [name for name in CHANNEL_NAMES if name not in data["V_kj_mol"]]
    if missing:
        raise ValueError(f"{path}: V_kj_mol lacks channels {missing}; it needs all of {list(CHANNEL_NAMES)}")
    steps = np.diff(r)
    if r[0] != 0 or len(r) < 2 or not np.allclose(steps, steps[0]):
        raise ValueError(f"{path}: r_nm must be a uniform grid starting at 0")
    v = {name: np.asarray(data["V_kj_mol"][name], dtype=np.float64) for name in CHANNEL_NAMES}
    if any(len(x) != len(r) for x in v.values()):
        raise ValueError(f"{path}: every V_kj_mol table needs {len(r)} values, one per r_nm")
    return TruthPotentials(r, v, float(data["temperature_K"]))


# ------------------------------------------------------------------ the system
@dataclass(frozen=True)
class MockSystem:
    """RAS beads first, then lipid beads grouped by channel."""

    box_nm: float
    ras_states: np.ndarray  # (m,)
    channel: np.ndarray  # (n,) lipid channels

    @property
    def n_ras(self) -> int:
        return len(self.ras_states)

    @property
    def n_particles(self) -> int:
        return self.n_ras + len(self.channel)

    def z_nm(self) -> np.ndarray:
        inner = self.channel < N_INNER
        return np.concatenate([np.full(self.n_ras, Z_NM["ras"]), np.where(inner, Z_NM["inner"], Z_NM["outer"])])

    def universe(self):  # -> MDAnalysis.Universe
        """An MDAnalysis universe of one frame: a residue per particle, named by its lipid type."""
        names = ["BB"] * self.n_ras + ["HD"] * len(self.channel)
        resnames = [PROTEIN_NAME] * self.n_ras + [CHANNELS[c][1] for c in self.channel]
        return build_universe(names, resnames, [1] * self.n_particles, (self.box_nm, self.box_nm, BOX_Z_NM))


def _save_state(path: Path, system: MockSystem, xy: np.ndarray, **extra: object) -> None:
    atomic_savez(path, box_nm=system.box_nm, ras_states=system.ras_states, channel=system.channel, xy_nm=xy, **extra)


def _load_state(path: Path) -> tuple[MockSystem, np.ndarray, dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as d:
        data = dict(d)
    system = MockSystem(float(data.pop("box_nm")), data.pop("ras_states"), data.pop("channel"))
    return system, data.pop("xy_nm"), data


# ------------------------------------------------------------------ dynamics
class Dynamics:
    """Overdamped Langevin integrator of a :class:`MockSystem`."""

    def __init__(
        self,
        system: MockSystem,
        settings: MockEngineSettings,
        truth: TruthPotentials,
        temperature_K: float,
        dt_ns: float,
    ) -> None:
        self.m, self.n = system.n_ras, system.n_particles
        self.box = system.box_nm
        kT = KB_KJ_MOL_K * temperature_K
        diff = np.concatenate(
            [
                np.full(self.m, settings.ras_diffusion_nm2_per_ns),
                np.full(len(system.channel), settings.lipid_diffusion_nm2_per_ns),
            ]
        )
        self.mobility_dt = (diff / kT * dt_ns)[:, None]
        self.noise = np.sqrt(2 * diff * dt_ns)[:, None]
        # piecewise-linear V: constant force -dV/dr on each table segment, 0 beyond
        table = truth.table()
        self.h = float(truth.r_nm[1])
        self.n_r = table.shape[1]
        seg = -np.diff(table, axis=1) / self.h
        self.force_table = np.concatenate([seg, np.zeros((N_CHANNELS, 1))], axis=1).ravel()
        self.table_base = system.channel.astype(np.int64) * self.n_r
        self.eps, self.sigma = settings.lipid_repulsion_kj_mol, settings.lipid_size_nm
        self.skin = 0.5 * self.sigma
        self.ras_sigma = settings.ras_size_nm
        inner = np.flatnonzero(system.channel < N_INNER) + self.m
        outer = np.flatnonzero(system.channel >= N_INNER) + self.m
        self.leaflets = [idx for idx in (inner, outer) if len(idx) > 1]

    def _image(self, d: np.ndarray) -> np.ndarray:
        d -= self.box * np.rint(d / self.box)
        return d

    def _pairs(self, xy: np.ndarray) -> np.ndarray:
        """Lipid pairs within sigma + skin, per leaflet (global indices, deterministic order)."""
        found = [np.empty((0, 2), dtype=np.int64)]
        for idx in self.leaflets:
            tree = cKDTree(xy[idx], boxsize=self.box)
            pairs = tree.query_pairs(self.sigma + self.skin, output_type="ndarray")
            found.append(idx[np.sort(pairs, axis=1)])
        pairs = np.concatenate(found)
        return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]

    def forces(self, xy: np.ndarray, pairs: np.ndarray) -> np.ndarray:
        m, forces = self.m, np.zeros_like(xy)
        # RAS-lipid: the truth
        d = self._image(xy[None, m:, :] - xy[:m, None, :])  # (m, n_lipids, 2), RAS -> lipid
        r = np.sqrt(d[..., 0] ** 2 + d[..., 1] ** 2)
        k = np.minimum((r / self.h).astype(np.int64), self.n_r - 1)
        f = self.force_table[self.table_base[None, :] + k] / np.maximum(r, 1e-9)
        on_lipid = f[..., None] * d
        forces[m:] += on_lipid.sum(axis=0)
        forces[:m] -= on_lipid.sum(axis=1)
        # RAS-RAS and lipid-lipid: soft repulsion
        if m > 1:
            i, j = np.triu_indices(m, 1)
            self._soft(xy, np.stack([i, j], axis=1), RAS_REPULSION_KJ_MOL, self.ras_sigma, forces)
        if self.eps > 0 and len(pairs):
            self._soft(xy, pairs, self.eps, self.sigma, forces)
        return forces

    def _soft(self, xy: np.ndarray, pairs: np.ndarray, eps: float, sigma: float, forces: np.ndarray) -> None:
        i, j = pairs[:, 0], pairs[:, 1]
        d = self._image(xy[i] - xy[j])
        r = np.sqrt(d[:, 0] ** 2 + d[:, 1] ** 2)
        coef = np.where(r < sigma, 2 * eps * (1 - r / sigma) / sigma / np.maximum(r, 1e-9), 0.0)
        for axis in (0, 1):
            fa = coef * d[:, axis]
            forces[:, axis] += np.bincount(i, fa, minlength=self.n) - np.bincount(j, fa, minlength=self.n)

    def advance(self, xy: np.ndarray, n_steps: int, rng: np.random.Generator) -> None:
        """Move ``xy`` (in place) by ``n_steps`` steps.

        The neighbour list is rebuilt at every call and whenever a bead moved more
        than half the skin, so the path depends only on the state at the call: a
        restart at a call boundary reproduces an uninterrupted run exactly.
        """
        use_pairs = self.eps > 0 and self.leaflets
        self._wrap(xy)
        pairs = self._pairs(xy) if use_pairs else np.empty((0, 2), dtype=np.int64)
        ref = xy.copy()
        for _ in range(n_steps):
            if use_pairs and np.max(np.abs(self._image(xy - ref))) > self.skin / 2:
                self._wrap(xy)
                pairs, ref = self._pairs(xy), xy.copy()
            xy += self.mobility_dt * self.forces(xy, pairs) + self.noise * rng.standard_normal(xy.shape)
        self._wrap(xy)

    def _wrap(self, xy: np.ndarray) -> None:
        """Put ``xy`` back in [0, box) (forces use minimum images, so only outputs and the tree need it)."""
        xy -= self.box * np.floor(xy / self.box)
        xy[xy >= self.box] = 0.0  # a tiny negative coordinate can round up to the box edge


# ------------------------------------------------------------------- the engine
class MockEngine:
    """The mock engine behind the :class:`~mummi.adapters.md_engine.MDEngine` interface."""

    name = "mock"

    @staticmethod
    def dt_ns(spec: CampaignSpec) -> float:
        ms = spec.sim.mock
        return spec.sim.length_ns / (ms.frames * ms.steps_per_frame)

    def _dynamics(self, system: MockSystem, spec: CampaignSpec) -> Dynamics:
        ms = spec.sim.mock
        return Dynamics(system, ms, truth_potentials(ms.truth), spec.macro.temperature_K, self.dt_ns(spec))

    def setup(self, sim_dir: Path, membrane: Membrane, spec: CampaignSpec, seed: int) -> dict[str, object]:
        sim_dir = Path(sim_dir)
        rng = np.random.default_rng(seed)
        keep = _subsample(membrane.channel, spec.sim.mock.beads_per_lipid_type, rng)
        system = MockSystem(membrane.box_nm, membrane.ras_states, membrane.channel[keep])
        facts: dict[str, object] = {"particles": system.n_particles, "lipids": len(system.channel), "ras": system.n_ras}
        if (sim_dir / EQ_STATE).exists() and (sim_dir / EQ_STRUCTURE).exists():
            return facts
        xy = np.vstack([membrane.ras_xy_nm, membrane.xy_nm[keep]]).astype(np.float64)
        n_steps = max(1, round(spec.createsim.equilibration_ns / self.dt_ns(spec)))
        self._dynamics(system, spec).advance(xy, n_steps, rng)
        universe = system.universe()
        universe.atoms.positions = 10 * np.column_stack([xy, system.z_nm()])
        write_gro(sim_dir / EQ_STRUCTURE, universe)
        _save_state(sim_dir / EQ_STATE, system, xy)
        log.info("mock createsim %s: %d particles equilibrated for %d steps", sim_dir.name, system.n_particles, n_steps)
        return facts | {"equilibration_steps": n_steps}

    def trajectory(self, sim_dir: Path) -> tuple[Path, Path]:
        return Path(sim_dir) / EQ_STRUCTURE, Path(sim_dir) / TRAJECTORY

    def production(self, sim_dir: Path, spec: CampaignSpec, seed: int, deadline: float | None) -> bool:
        sim_dir = Path(sim_dir)
        ms = spec.sim.mock
        system, xy, _ = _load_state(sim_dir / EQ_STATE)
        xtc, checkpoint = sim_dir / TRAJECTORY, sim_dir / CHECKPOINT
        rng = np.random.default_rng(seed)
        frame = 0
        if checkpoint.exists():
            _, xy, saved = _load_state(checkpoint)
            frame = int(saved["frame"])
            rng.bit_generator.state = json.loads(str(saved["rng_state"]))
            _truncate(xtc, int(saved["xtc_bytes"]))
            log.info("mock sim %s: resuming at frame %d of %d", sim_dir.name, frame, ms.frames)
        else:
            xtc.unlink(missing_ok=True)
        dynamics = self._dynamics(system, spec)
        universe = system.universe()
        z = system.z_nm()
        frame_ps = 1000 * spec.sim.length_ns / ms.frames
        while frame < ms.frames:
            if deadline is not None and time.monotonic() >= deadline:
                log.info("mock sim %s: stopping at frame %d before the deadline", sim_dir.name, frame)
                return False
            block = np.empty((min(ms.checkpoint_every_frames, ms.frames - frame), system.n_particles, 2))
            for i in range(len(block)):
                dynamics.advance(xy, ms.steps_per_frame, rng)
                block[i] = xy
            first = frame + 1
            _append_frames(xtc, universe, block, z, first, frame_ps, ms.steps_per_frame)
            frame += len(block)
            _save_state(
                checkpoint,
                system,
                xy,
                frame=frame,
                rng_state=np.array(json.dumps(rng.bit_generator.state)),
                xtc_bytes=xtc.stat().st_size,
            )
        return True


def _subsample(channel: np.ndarray, cap: int | None, rng: np.random.Generator) -> np.ndarray:
    """Indices of at most ``cap`` lipids per channel (all when ``cap`` is None), in order."""
    if cap is None:
        return np.arange(len(channel))
    keep = [rng.permutation(np.flatnonzero(channel == c))[:cap] for c in range(N_CHANNELS)]
    return np.sort(np.concatenate(keep))


def _append_frames(
    xtc: Path, universe, block: np.ndarray, z: np.ndarray, first: int, frame_ps: float, steps_per_frame: int
) -> None:
    """Append frames ``first, first + 1, ...`` to ``xtc``: XTC frames are independent
    records, so a file written by MDAnalysis' XTC writer can be concatenated."""
    from MDAnalysis.coordinates.XTC import XTCWriter

    part = xtc.with_name(f".{xtc.name}.part-{os.getpid()}")
    ts = universe.trajectory.ts
    try:
        with XTCWriter(str(part), n_atoms=block.shape[1]) as writer:
            for i, xy in enumerate(block):
                ts.positions = 10 * np.column_stack([xy, z])
                ts.time = (first + i) * frame_ps
                ts.data["step"] = (first + i) * steps_per_frame
                writer.write(universe)
        with open(xtc, "ab") as out, open(part, "rb") as src:
            out.write(src.read())
            out.flush()
            os.fsync(out.fileno())
    finally:
        part.unlink(missing_ok=True)


def _truncate(path: Path, size: int) -> None:
    """Cut ``path`` back to ``size`` bytes (frames written after the checkpoint)."""
    actual = path.stat().st_size if path.exists() else 0
    if actual < size:
        raise RuntimeError(
            f"{path} has {actual} bytes but its checkpoint recorded {size}: the "
            f"trajectory was damaged; remove {CHECKPOINT} to restart the sim"
        )
    if actual > size:
        log.info("%s: dropping %d bytes written after the last checkpoint", path, actual - size)
        with open(path, "r+b") as fh:
            fh.truncate(size)
