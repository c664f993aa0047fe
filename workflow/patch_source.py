"""The macro model as the coordinator sees it: frames of patches, and its g(r) for the feedback.

:class:`Ingest` takes frames of patches, as latent vectors, from a source and
never asks which; the feedback asks the same source for the macro model's g(r).
:class:`MacroPatches` reads the macro model's patch files (``patches-<time>.h5``),
encodes them with the trained encoder, and reads its g(r) from its frames.
:class:`SyntheticPatches` is the macro model of a replay on the simulated backend
(``resources.simulated.patches``): it runs no model and needs no encoder; frames
of ``per_frame`` patches arrive every ``frame_interval_min`` of campaign (virtual)
time, as latent vectors around a centre that drifts smoothly through the latent
space and jumps by ``jump`` after each feedback round (new parameters move the
membrane somewhere new, the peaks of seed 000's Fig. 3), each a pure function of
the seed, the frame's number and the parameter version, until ``total`` patches
have arrived. Its g(r) responds to the parameters as the Boltzmann inversion
assumes (:mod:`mummi.analysis.synthetic_rdf`).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mummi.analysis.synthetic_rdf import HiddenProfiles
from mummi.core.layout import CampaignLayout
from mummi.core.lipids import N_CHANNELS
from mummi.core.patch_input import COARSE_CELLS, PatchInput
from mummi.core.spec import CampaignSpec
from mummi.macro.params import kt_kj_mol
from mummi.macro.patches import list_patch_files, read_patches
from mummi.sampler.encoder import PatchEncoder
from mummi.workflow import macro_link


def synthetic(spec: CampaignSpec) -> bool:
    """Whether the campaign's patches are synthetic: on the simulated backend, whose macro model runs nothing."""
    return spec.resources.backend == "simulated"


@dataclass(frozen=True)
class PatchFrame:
    """The patches of one macro frame, ready for the sampler."""

    name: str
    """Unique; names sort by frame time (the patch file's name for macro frames)."""
    time_ns: float
    ids: list[str]
    ras_ids: np.ndarray
    latents: np.ndarray
    """(n, latent_dim) float32."""


class PatchSource(abc.ABC):
    """Frames of patches as latent vectors, and the patch input of any patch it gave."""

    needs_encoder: bool = False

    @abc.abstractmethod
    def due(self, taken: int, is_taken: Callable[[str], bool]) -> list[str]:
        """Names of the frames ready and not yet taken, oldest first (``taken`` of them were taken before)."""

    @abc.abstractmethod
    def read(self, name: str) -> PatchFrame:
        """The frame ``name``, encoded."""

    @abc.abstractmethod
    def patch_input(self, name: str, patch_id: str) -> PatchInput:
        """What createsim needs of patch ``patch_id`` of frame ``name``."""

    @abc.abstractmethod
    def macro_gr(self, version: int) -> np.ndarray | None:
        """The macro model's g(r) around RAS under parameter ``version`` on the comparison shells, once known."""


class MacroPatches(PatchSource):
    """The macro model's patch files, encoded by the campaign's encoder (native or coarse patches, as it needs)."""

    needs_encoder = True

    def __init__(self, spec: CampaignSpec, cdir: CampaignLayout, encoder: PatchEncoder) -> None:
        self.spec, self.cdir, self.encoder = spec, cdir, encoder
        self.directory = cdir.patches

    def due(self, taken: int, is_taken: Callable[[str], bool]) -> list[str]:
        return [p.name for p in list_patch_files(self.directory) if not is_taken(p.name)]

    def read(self, name: str) -> PatchFrame:
        native = self.encoder.needs_native  # the learned metric reads native patches, the VAE coarse ones
        patches = read_patches(self.directory / name, native=native)
        latents = np.ascontiguousarray(self.encoder.encode(patches.native if native else patches.coarse), np.float32)
        return PatchFrame(name, float(patches.time_ns), [str(i) for i in patches.ids], patches.ras_ids, latents)

    def patch_input(self, name: str, patch_id: str) -> PatchInput:
        patches = read_patches(Path(self.directory) / Path(name).name, native=False)
        p = patches.ids.index(patch_id)
        offsets, states = patches.constellation(p)
        return PatchInput(patch_id, patches.coarse[p], offsets, states, int(patches.central_states[p]))

    def macro_gr(self, version: int) -> np.ndarray | None:
        return macro_link.macro_gr(self.spec, self.cdir, version)


class SyntheticPatches(PatchSource):
    """Frames of synthetic latents at the paper's rates, on the campaign's clock."""

    _MODES = 3
    """Sine components of each latent dimension's drift."""

    def __init__(self, spec: CampaignSpec, cdir: CampaignLayout, clock: Callable[[], float], start_s: float) -> None:
        self.settings = spec.resources.simulated.patches
        self.spec, self.cdir = spec, cdir
        self.seed, self.dim = spec.campaign.seed, spec.encoder.latent_dim
        self.clock, self.start_s = clock, start_s
        self.truth = HiddenProfiles(self.seed)
        self._first_version = macro_link.first_version(spec, cdir)
        self._jumps: dict[int, np.ndarray] = {self._first_version: np.zeros(self.dim)}
        drift = np.random.default_rng([self.seed, 0])
        days = 86400.0
        self._amplitude = drift.uniform(0.5, 2.0, (self._MODES, self.dim))
        self._omega = 2 * math.pi / (days * drift.uniform(1.0, 10.0, (self._MODES, self.dim)))
        self._phase = drift.uniform(0, 2 * math.pi, (self._MODES, self.dim))

    @property
    def frames(self) -> int:
        return math.ceil(self.settings.total / self.settings.per_frame)

    def due(self, taken: int, is_taken: Callable[[str], bool]) -> list[str]:
        elapsed = self.clock() - self.start_s
        arrived = min(self.frames, int(elapsed // (60 * self.settings.frame_interval_min)) + 1)
        return [self._name(k) for k in range(taken, arrived)]

    def read(self, name: str) -> PatchFrame:
        k = self._number(name)
        s = self.settings
        n = min(s.per_frame, s.total - k * s.per_frame)
        t = self.start_s + k * 60 * s.frame_interval_min
        centre = (self._amplitude * np.sin(self._omega * t + self._phase)).sum(axis=0)
        centre += self._jump(macro_link.latest_version(self.cdir) or self._first_version)
        rng = np.random.default_rng([self.seed, 1, k])
        latents = (centre + s.spread * rng.standard_normal((n, self.dim))).astype(np.float32)
        ras = np.arange(n, dtype=np.int64)
        time_ns = float(k * s.frame_interval_min * s.macro_ns_per_min)
        return PatchFrame(name, time_ns, [f"{name}-r{r:04d}" for r in ras], ras, latents)

    def patch_input(self, name: str, patch_id: str) -> PatchInput:
        """A uniform membrane (the simulated createsim does not read it)."""
        coarse = np.full((COARSE_CELLS, COARSE_CELLS, N_CHANNELS), 1.0 / N_CHANNELS)
        return PatchInput(patch_id, coarse, np.zeros((0, 2)), np.zeros(0, dtype=np.int64))

    def macro_gr(self, version: int) -> np.ndarray:
        """The starting g(r) times exp(-(V - V_first)/kT), V the potentials of the first RAS state."""
        edges = macro_link.comparison_edges(self.spec)
        r_nm = 0.5 * (edges[1:] + edges[:-1])
        params, first = macro_link.load(self.cdir, version), macro_link.load(self.cdir, self._first_version)
        change = params.pmf_kj_mol[0] - first.pmf_kj_mol[0]
        change_on_r = np.stack([np.interp(r_nm, params.pmf_r_nm, row) for row in change])
        return self.truth.macro_start_gr(r_nm) * np.exp(-change_on_r / kt_kj_mol(self.spec.macro.temperature_K))

    def _jump(self, version: int) -> np.ndarray:
        """Where the centre has jumped to by parameter ``version`` (a sum of one random step per round)."""
        if version not in self._jumps:
            step = np.random.default_rng([self.seed, 2, version]).standard_normal(self.dim)
            self._jumps[version] = self._jump(version - 1) + self.settings.jump * step
        return self._jumps[version]

    @staticmethod
    def _name(k: int) -> str:
        return f"synthetic-{k:08d}"

    @staticmethod
    def _number(name: str) -> int:
        return int(Path(name).name.removeprefix("synthetic-"))
