"""In situ analysis beside a running sim: follow its trajectory, accumulate RDF counts.

``select_membrane`` reads the equilibrated structure once: one head atom per lipid
(its residue's first atom), the lipid's channel (leaflet found with MDAnalysis'
LeafletFinder, the inner leaflet being the one on the protein's side), and the
proteins (the setup's ``Protein_k`` index groups, else residues named ``RAS``).
``LateralRDF`` (an MDAnalysis ``AnalysisBase``) turns frames into counts and
per-frame features. ``analyse_sim`` drives it over the growing trajectory and
commits ``features.npz`` then ``rdf_counts.npz`` every
``analysis.write_every_frames`` frames; ``frames_done`` in the counts file is the
commit point, so a restarted analysis resumes there and never loses or recounts
a frame. While the sim runs, the newest frame is left for the next poll (it may
be half written); once the sim's status says done, every frame is read.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from MDAnalysis.analysis.base import AnalysisBase

from mummi.adapters.gromacs import protein_groups
from mummi.adapters.md_engine import get_engine, open_universe
from mummi.analysis.rdf import RDFCounts, frame_counts, lateral_distances
from mummi.core.atomic import atomic_savez
from mummi.core.lipids import N_CHANNELS, PROTEIN_NAME, channel_of, leaflet_channels
from mummi.core.simdir import FEATURES, RDF_COUNTS, is_done, write_status
from mummi.core.spec import AnalysisSettings, CampaignSpec
from mummi.core.states import Outcome

log = logging.getLogger(__name__)

FEATURE_KEYS = ("time_ps", "contacts", "ras_depth_nm", "ras_tilt_deg")


@dataclass(frozen=True)
class MembraneSelection:
    """Atom indices the analysis needs, found once from the equilibrated structure."""

    head_index: np.ndarray  # (n,) one atom per analysed lipid
    channel: np.ndarray  # (n,) its channel
    protein_index: tuple[np.ndarray, ...]  # atom indices of each RAS
    inner_heads: np.ndarray  # head atoms of the inner leaflet (all channels)
    outer_heads: np.ndarray
    channel_mask: np.ndarray  # (14,) channels analysed


def select_membrane(
    universe, settings: AnalysisSettings, proteins: tuple[np.ndarray, ...] | None = None
) -> MembraneSelection:
    """Heads, channels and proteins of ``universe`` (a topology with coordinates).

    ``proteins``: atom indices of each protein copy (a real protein's residues are amino acids); without them,
    each residue named ``RAS`` is one.
    """
    if proteins is None:
        proteins = tuple(res.atoms.indices for res in universe.select_atoms(f"resname {PROTEIN_NAME}").residues)
    lipids = [
        res
        for res in universe.residues
        if channel_of("inner", res.resname) >= 0 or channel_of("outer", res.resname) >= 0
    ]
    heads = np.array([res.atoms.indices[0] for res in lipids], dtype=np.int64)
    if len(heads) < 2:
        raise ValueError(
            f"found {len(heads)} lipids of the 14 patch channels; residue names must be lipid names (POPC, ..., CHOL)"
        )
    inner = _leaflets(universe, heads, settings.leaflet_cutoff_nm)  # the lower one, unless the protein says otherwise
    if proteins:
        heads_z = universe.atoms.positions[heads, 2]
        protein_z = np.mean([universe.atoms.positions[p, 2].mean() for p in proteins])
        if abs(protein_z - heads_z[~inner].mean()) < abs(protein_z - heads_z[inner].mean()):
            inner = ~inner
    channel = np.array(
        [channel_of("inner" if i else "outer", res.resname) for res, i in zip(lipids, inner)], dtype=np.int64
    )
    mask = np.isin(np.arange(N_CHANNELS), leaflet_channels(settings.leaflet))
    keep = (channel >= 0) & mask[np.maximum(channel, 0)]
    dropped = int(np.sum(channel < 0))
    if dropped:
        log.warning("%d lipids sit in a leaflet whose channels do not include their type and are not analysed", dropped)
    return MembraneSelection(heads[keep], channel[keep], proteins, heads[inner], heads[~inner], mask)


def _leaflets(universe, heads: np.ndarray, cutoff_nm: float) -> np.ndarray:
    """Boolean per head: True for the leaflet with the lower mean z.

    MDAnalysis' LeafletFinder gives the two largest connected head-group sheets;
    heads in neither (isolated lipids, sparse test systems) join the sheet whose
    mean z is nearer. Without networkx, or without two sheets, heads are split at
    their mean z.
    """
    z = universe.atoms.positions[heads, 2]
    centres = None
    try:
        from MDAnalysis.analysis.leaflet import LeafletFinder

        finder = LeafletFinder(universe, universe.atoms[heads], cutoff=10 * cutoff_nm, pbc=True)
        groups = [g for g in finder.groups() if len(g) > 0][:2]
        if len(groups) == 2 and sum(len(g) for g in groups) >= 0.5 * len(heads):
            centres = sorted(float(g.positions[:, 2].mean()) for g in groups)
    except ImportError:
        log.info("networkx is missing: leaflets are split at the mean head-group height")
    if centres is None:
        return z < z.mean()
    return np.abs(z - centres[0]) < np.abs(z - centres[1])


class LateralRDF(AnalysisBase):
    """Protein-lipid lateral distance counts per channel, plus per-frame features.

    Science parameters here; frames in ``run()``. ``results.counts`` (14, n_bins)
    and ``results.pair_density`` (14,) are sums over the frames run;
    ``results.features`` holds one row per frame.
    """

    def __init__(
        self, universe, selection: MembraneSelection, bin_nm: float, r_max_nm: float, contact_nm: float, **kwargs
    ) -> None:
        super().__init__(universe.trajectory, **kwargs)
        if not selection.protein_index:
            raise ValueError(f"no protein (Protein_k index group or resname {PROTEIN_NAME}) to centre the RDF on")
        if not 0 < bin_nm < r_max_nm:
            raise ValueError(f"need 0 < bin_nm < r_max_nm, got bin_nm={bin_nm}, r_max_nm={r_max_nm}")
        self.sel = selection
        self.bin_nm = bin_nm
        self.edges = RDFCounts.empty(bin_nm, r_max_nm).edges_nm
        self.contact_nm = contact_nm
        self.n_per_channel = np.bincount(selection.channel, minlength=N_CHANNELS)

    def _prepare(self) -> None:
        m = len(self.sel.protein_index)
        self.results.counts = np.zeros((N_CHANNELS, len(self.edges) - 1), dtype=np.int64)
        self.results.pair_density = np.zeros(N_CHANNELS)
        self.results.features = {
            "time_ps": np.zeros(self.n_frames),
            "contacts": np.zeros((self.n_frames, N_CHANNELS), dtype=np.int32),
            "ras_depth_nm": np.zeros((self.n_frames, m)),
            "ras_tilt_deg": np.zeros((self.n_frames, m)),
        }

    def _single_frame(self) -> None:
        pos = self._ts.positions / 10.0  # nm
        box = self._ts.dimensions[:3] / 10.0
        centres = np.array([_centre(pos[idx], box) for idx in self.sel.protein_index])
        r = lateral_distances(centres[:, :2], pos[self.sel.head_index, :2], box[:2])
        self.results.counts += frame_counts(r, self.sel.channel, self.bin_nm, len(self.edges) - 1)
        self.results.pair_density += len(centres) * self.n_per_channel / (box[0] * box[1])
        f, i = self.results.features, self._frame_index
        f["time_ps"][i] = self._ts.time
        close = r < self.contact_nm
        f["contacts"][i] = np.bincount(np.broadcast_to(self.sel.channel, r.shape)[close], minlength=N_CHANNELS)
        # depth: RAS centre beyond the inner head-group plane, positive towards the cytoplasm
        inner_z = pos[self.sel.inner_heads, 2].mean()
        outward = np.sign(inner_z - pos[self.sel.outer_heads, 2].mean()) or 1.0
        f["ras_depth_nm"][i] = (centres[:, 2] - inner_z) * outward
        f["ras_tilt_deg"][i] = [_tilt(pos[idx], box) for idx in self.sel.protein_index]


def _centre(xyz: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Centre of a group made whole by minimum image around its first atom."""
    d = xyz - xyz[0]
    d -= box * np.rint(d / box)
    return xyz[0] + d.mean(axis=0)


def _tilt(xyz: np.ndarray, box: np.ndarray) -> float:
    """Angle (degrees, 0-90) between the group's principal axis and the membrane normal; NaN for one bead."""
    if len(xyz) < 2:
        return float("nan")
    d = xyz - xyz[0]
    d -= box * np.rint(d / box)
    d -= d.mean(axis=0)
    axis = np.linalg.svd(d, full_matrices=False)[2][0]
    return float(np.degrees(np.arccos(min(1.0, abs(axis[2])))))


# ----------------------------------------------------------------- the driver
def analyse_sim(sim_dir: str | Path, spec: CampaignSpec, follow: bool = False) -> RDFCounts:
    """Bring the analysis of ``sim_dir`` up to date; with ``follow``, keep going until the sim is done.

    Writes ``analysis.status.json`` (done) once every frame of a finished sim is counted.
    """
    sim_dir = Path(sim_dir)
    settings = spec.analysis
    topology, trajectory = get_engine(spec.sim.engine).trajectory(sim_dir)
    while not topology.exists():
        if not follow:
            raise FileNotFoundError(f"{topology}: the sim's structure is missing; has createsim finished?")
        time.sleep(settings.poll_interval_s)
    selection = select_membrane(open_universe(topology), settings, protein_groups(sim_dir))
    counts, features = _resume(sim_dir, settings, selection)
    while True:
        sim_done = is_done(sim_dir, "sim")
        n_frames = _count_frames(topology, trajectory)
        usable = _usable(n_frames, sim_done)
        try:
            universe = open_universe(topology, trajectory) if counts.frames_done < usable else None
            if universe is not None:  # a restarted sim may have cut frames since they were counted
                usable = min(usable, _usable(len(universe.trajectory), sim_done))
            while counts.frames_done < usable:
                stop = min(usable, counts.frames_done + settings.write_every_frames)
                rdf = LateralRDF(universe, selection, settings.bin_nm, settings.r_max_nm, settings.contact_nm)
                rdf.run(start=counts.frames_done, stop=stop)
                new = rdf.results.features
                features = new if features is None else {k: np.concatenate([features[k], new[k]]) for k in FEATURE_KEYS}
                counts.counts += rdf.results.counts
                counts.pair_density += rdf.results.pair_density
                counts.frames_done = stop
                _save_features(sim_dir / FEATURES, features)
                counts.save(sim_dir / RDF_COUNTS)  # the commit point
        except (OSError, EOFError, ValueError) as err:  # a restarted sim truncated the trajectory under us
            if not follow:
                raise
            log.info("%s: trajectory changed while reading (%s); retrying", sim_dir.name, err)
        if sim_done and counts.frames_done >= n_frames:
            write_status(sim_dir, "analysis", Outcome.DONE, frames=counts.frames_done)
            log.info("analysis of %s done: %d frames", sim_dir.name, counts.frames_done)
            return counts
        if not follow:
            return counts
        time.sleep(settings.poll_interval_s)


def _usable(n_frames: int, sim_done: bool) -> int:
    """Frames safe to read: all once the sim is done, else all but the newest (it may be half written)."""
    return n_frames if sim_done else max(0, n_frames - 1)


def _count_frames(topology: Path, trajectory: Path) -> int:
    if not trajectory.exists() or trajectory.stat().st_size == 0:
        return 0
    try:
        return len(open_universe(topology, trajectory).trajectory)
    except (OSError, EOFError, ValueError) as err:  # a block being appended or truncated
        log.info("%s: not readable yet (%s)", trajectory, err)
        return 0


def _resume(
    sim_dir: Path, settings: AnalysisSettings, selection: MembraneSelection
) -> tuple[RDFCounts, dict[str, np.ndarray] | None]:
    """Counts and features up to the last commit, or empty counts and no features."""
    fresh = RDFCounts.empty(settings.bin_nm, settings.r_max_nm, selection.channel_mask)
    path = sim_dir / RDF_COUNTS
    if not path.exists():
        return fresh, None
    counts = RDFCounts.load(path)
    if not np.allclose(counts.edges_nm, fresh.edges_nm) or not np.array_equal(counts.channel_mask, fresh.channel_mask):
        raise ValueError(
            f"{path} was made with other bins or leaflets than analysis settings ask for; remove it to start over"
        )
    with np.load(sim_dir / FEATURES, allow_pickle=False) as d:
        features = {k: d[k][: counts.frames_done] for k in FEATURE_KEYS}
    if len(features["time_ps"]) < counts.frames_done:
        raise ValueError(f"{sim_dir / FEATURES} has fewer frames than {path}; remove both to start over")
    log.info("%s: resuming analysis after %d frames", sim_dir.name, counts.frames_done)
    return counts, features


def _save_features(path: Path, features: dict[str, np.ndarray]) -> None:
    atomic_savez(path, **features)
