"""The campaign folder layout (DESIGN.md, "Campaign directory"): one definition for every reader and writer.

::

    ROOT/
      campaign.db                  state store
      campaign.yaml                the resolved spec of the latest run
      macro/frames/frame-<t>.h5    macro frames (one per output interval)
      macro/params/params-v<k>.npz parameter versions; the feedback adds new ones
      macro/checkpoint.npz         the macro model's latest checkpoint
      macro/macro.status.json      the macro job's status record
      patches/patches-<t>.h5       the patches of frame <t>
      patches/latents/             the encoder's latents of each patch file
      sampler/                     sampler checkpoints, event history, the trained encoder
      sims/<sim-id>/               one folder per simulation (:mod:`mummi.core.simdir`)
      feedback/                    one file per feedback round, plots
      logs/                        job logs, backend state
      precampaign/                 the uncoupled macro run that trains the encoder (same layout)

The pre-campaign macro run uses the same layout rooted at ``ROOT/precampaign``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

SUBDIRS: tuple[str, ...] = ("macro", "patches", "sampler", "sims", "feedback", "logs")
DB_NAME = "campaign.db"
SPEC_NAME = "campaign.yaml"


@dataclass(frozen=True)
class CampaignLayout:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def db(self) -> Path:
        return self.root / DB_NAME

    @property
    def spec_copy(self) -> Path:
        return self.root / SPEC_NAME

    @property
    def macro(self) -> Path:
        return self.root / "macro"

    @property
    def macro_frames(self) -> Path:
        return self.macro / "frames"

    @property
    def macro_params(self) -> Path:
        return self.macro / "params"

    @property
    def macro_checkpoint(self) -> Path:
        return self.macro / "checkpoint.npz"

    @property
    def macro_status(self) -> Path:
        return self.macro / "macro.status.json"

    @property
    def patches(self) -> Path:
        return self.root / "patches"

    @property
    def latents(self) -> Path:
        return self.patches / "latents"

    @property
    def sampler(self) -> Path:
        return self.root / "sampler"

    @property
    def sampler_history(self) -> Path:
        return self.sampler / "history.csv"

    @property
    def encoder(self) -> Path:
        """Where the campaign trains its encoder when the spec names none."""
        return self.sampler / "encoder"

    @functools.cached_property
    def sims(self) -> Path:
        return self.root / "sims"

    @property
    def feedback(self) -> Path:
        return self.root / "feedback"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def precampaign(self) -> CampaignLayout:
        return CampaignLayout(self.root / "precampaign")

    def sim(self, sim_id: str) -> Path:
        return self.sims / sim_id

    def feedback_round(self, round_no: int) -> Path:
        return self.feedback / f"round-{round_no:03d}.npz"

    def holds_campaign(self) -> bool:
        return self.db.is_file()

    def create(self) -> None:
        """Make the campaign's folders."""
        self.root.mkdir(parents=True, exist_ok=True)
        for sub in SUBDIRS:
            (self.root / sub).mkdir(exist_ok=True)

    def create_macro_dirs(self) -> None:
        """Make the folders the macro job writes into (it may run before the campaign's are made)."""
        for d in (self.macro_frames, self.macro_params, self.patches):
            d.mkdir(parents=True, exist_ok=True)
