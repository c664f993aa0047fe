"""Where the campaign's patches come from: the macro model's patch files, or a synthetic stream for replays.

:class:`Ingest` takes frames of patches, as latent vectors, from a source and
never asks which. :class:`MacroPatches` reads the macro model's patch files
(``patches-<time>.h5``) and encodes them with the trained encoder.
:class:`SyntheticPatches` is the macro model of a replay on the simulated backend
(``resources.simulated.patches``): it runs no model and needs no encoder; frames
of ``per_frame`` patches arrive every ``frame_interval_min`` of campaign (virtual)
time, as latent vectors around a centre that drifts smoothly through the latent
space, each a pure function of the seed and the frame's number, until ``total``
patches have arrived.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mummi.core.layout import CampaignLayout
from mummi.core.lipids import N_CHANNELS
from mummi.core.patch_input import COARSE_CELLS, PatchInput
from mummi.core.spec import CampaignSpec
from mummi.macro.patches import list_patch_files, read_patches
from mummi.sampler.encoder import Encoder


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


class MacroPatches(PatchSource):
    """The macro model's patch files, encoded by the campaign's encoder."""

    needs_encoder = True

    def __init__(self, cdir: CampaignLayout, encoder: Encoder) -> None:
        self.directory, self.encoder = cdir.patches, encoder

    def due(self, taken: int, is_taken: Callable[[str], bool]) -> list[str]:
        return [p.name for p in list_patch_files(self.directory) if not is_taken(p.name)]

    def read(self, name: str) -> PatchFrame:
        patches = read_patches(self.directory / name, native=False)
        latents = np.ascontiguousarray(self.encoder.encode(patches.coarse), dtype=np.float32)
        return PatchFrame(name, float(patches.time_ns), [str(i) for i in patches.ids], patches.ras_ids, latents)

    def patch_input(self, name: str, patch_id: str) -> PatchInput:
        patches = read_patches(Path(self.directory) / Path(name).name, native=False)
        p = patches.ids.index(patch_id)
        offsets, states = patches.constellation(p)
        return PatchInput(patch_id, patches.coarse[p], offsets, states, int(patches.central_states[p]))


class SyntheticPatches(PatchSource):
    """Frames of synthetic latents at the paper's rates, on the campaign's clock."""

    _MODES = 3
    """Sine components of each latent dimension's drift."""

    def __init__(self, spec: CampaignSpec, clock: Callable[[], float], start_s: float) -> None:
        self.settings = spec.resources.simulated.patches
        self.seed, self.dim = spec.campaign.seed, spec.encoder.latent_dim
        self.clock, self.start_s = clock, start_s
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
        rng = np.random.default_rng([self.seed, 1, k])
        latents = (centre + s.spread * rng.standard_normal((n, self.dim))).astype(np.float32)
        ras = np.arange(n, dtype=np.int64)
        time_ns = float(k * s.frame_interval_min * s.macro_ns_per_min)
        return PatchFrame(name, time_ns, [f"{name}-r{r:04d}" for r in ras], ras, latents)

    def patch_input(self, name: str, patch_id: str) -> PatchInput:
        """A uniform membrane (the simulated createsim does not read it)."""
        coarse = np.full((COARSE_CELLS, COARSE_CELLS, N_CHANNELS), 1.0 / N_CHANNELS)
        return PatchInput(patch_id, coarse, np.zeros((0, 2)), np.zeros(0, dtype=np.int64))

    @staticmethod
    def _name(k: int) -> str:
        return f"synthetic-{k:08d}"

    @staticmethod
    def _number(name: str) -> int:
        return int(Path(name).name.removeprefix("synthetic-"))
