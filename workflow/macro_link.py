"""What the coordinator needs of the macro model's files: parameter versions, potentials, profiles.

The one place where the workflow reads and writes the macro model's outputs, so
the coordinator and the feedback stay independent of the model's internals.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mummi.adapters.membrane import CHANNEL_NAMES
from mummi.workflow.campaign import CampaignDir
from mummi.workflow.spec import CampaignSpec


def params_dir(cdir: CampaignDir) -> Path:
    return cdir.macro / "params"


def latest_version(cdir: CampaignDir) -> int:
    from mummi.macro.params import latest_version as latest

    return latest(params_dir(cdir))


def potentials(cdir: CampaignDir, version: int) -> np.ndarray:
    """The RAS–lipid potential tables of a parameter version, shape (..., 14, n_r) in kJ/mol."""
    from mummi.macro.params import load_parameters

    return np.array(load_parameters(params_dir(cdir), version).ras_lipid_potentials, dtype=np.float64)


def write_potentials(cdir: CampaignDir, version: int, table: np.ndarray) -> int:
    """Write a new parameter version equal to ``version`` but for its RAS–lipid potentials; returns its number."""
    from mummi.macro.params import load_parameters, write_parameters

    params = load_parameters(params_dir(cdir), version)
    return write_parameters(params_dir(cdir), params.with_ras_lipid_potentials(table))


def macro_profile(spec: CampaignSpec, cdir: CampaignDir, version: int, max_frames: int = 10) -> tuple[np.ndarray, np.ndarray] | None:
    """The macro model's g(r) around RAS on its potential table radii, from its latest frames with ``version``.

    None when no frame has used that version yet.
    """
    from mummi.macro.frames import frames_with_version
    from mummi.macro.params import load_parameters
    from mummi.macro.profiles import radial_profiles

    frames = frames_with_version(cdir.macro / "frames", version)[-max_frames:]
    if not frames:
        return None
    r_nm = np.asarray(load_parameters(params_dir(cdir), version).r_nm)
    return r_nm, radial_profiles(frames, r_nm)


def feedback_channels(spec: CampaignSpec) -> list[int]:
    """Channels the feedback corrects: those the in situ analysis measures (the inner leaflet by default)."""
    n_inner = 8
    if spec.analysis.leaflet == "inner":
        return list(range(n_inner))
    if spec.analysis.leaflet == "outer":
        return list(range(n_inner, len(CHANNEL_NAMES)))
    return list(range(len(CHANNEL_NAMES)))


def channel_names() -> tuple[str, ...]:
    return CHANNEL_NAMES
