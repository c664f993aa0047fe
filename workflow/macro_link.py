"""What the coordinator needs of the macro model's files: parameter versions and g(r) profiles.

The one place where the workflow reads and writes the macro model's outputs, so
the coordinator and the feedback stay independent of the model's internals.
"""

from __future__ import annotations

import numpy as np

from mummi.core.layout import CampaignLayout
from mummi.core.lipids import leaflet_channels
from mummi.core.spec import CampaignSpec
from mummi.macro import frames as macro_frames
from mummi.macro import params as macro_params


def latest_version(cdir: CampaignLayout) -> int | None:
    versions = macro_params.parameter_versions(cdir.macro_params)
    return versions[-1] if versions else None


def first_version(spec: CampaignSpec, cdir: CampaignLayout) -> int:
    """The first parameter version; written (from ``macro.parameters`` or the defaults) when there is none yet."""
    versions = macro_params.parameter_versions(cdir.macro_params)
    if versions:
        return versions[0]
    return macro_params.write_parameters(cdir.macro_params, macro_params.spec_parameters(spec.macro))


def load(cdir: CampaignLayout, version: int) -> macro_params.MacroParameters:
    return macro_params.load_parameters(macro_params.parameters_path(cdir.macro_params, version))


def write_pmf(cdir: CampaignLayout, params: macro_params.MacroParameters, pmf_kj_mol: np.ndarray) -> int:
    """A new parameter version equal to ``params`` but for its RAS–lipid potentials; returns its number."""
    return macro_params.write_parameters(cdir.macro_params, params.replace(pmf_kj_mol=pmf_kj_mol))


_LOOK_BACK = 50  # frames; a version older than this is relaxed for any sensible relax_ns


def comparison_edges(spec: CampaignSpec) -> np.ndarray:
    """Radial shells on which macro and MD g(r) are compared (``feedback.shell_nm`` wide)."""
    fb = spec.feedback
    width = fb.shell_nm or 2 * spec.macro.box_nm / spec.macro.grid_points
    r_max = min(fb.r_max_nm, spec.analysis.r_max_nm, 0.45 * spec.macro.box_nm, spec.patches.size_nm / 2)
    return np.arange(0.0, r_max + 1e-9, width)


def macro_gr(spec: CampaignSpec, cdir: CampaignLayout, version: int, max_frames: int = 10) -> np.ndarray | None:
    """The macro model's g(r) around RAS (c(r)/c̄ per channel) on :func:`comparison_edges`.

    Averaged over its latest frames computed with parameter ``version``, leaving out
    those within ``feedback.relax_ns`` of the first frame of that version (not yet
    relaxed to it); None before there is such a frame.
    """
    edges = comparison_edges(spec)
    paths = macro_frames.list_frames(cdir.macro_frames)
    frames: list[macro_frames.Frame] = []
    first = -np.inf
    for path in reversed(paths[-_LOOK_BACK:]):
        frame = macro_frames.read_frame(path)
        if frame.param_version < version:
            first = frames[-1].time_ns if frames else np.inf
            break
        if frame.param_version == version:
            frames.append(frame)
    if not frames:
        return None
    relaxed = [f for f in frames if f.time_ns >= first + spec.feedback.relax_ns][:max_frames]
    if not relaxed:
        return None
    return np.nanmean([macro_frames.radial_profiles(f, edges) for f in relaxed], axis=0)


def feedback_channels(spec: CampaignSpec) -> list[int]:
    """Channels the feedback corrects: those the in situ analysis measures (the inner leaflet by default)."""
    return leaflet_channels(spec.analysis.leaflet)
