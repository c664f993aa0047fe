"""mummi.macro: the DDFT macro model of the membrane with RAS particles, and its patches.

Modules: :mod:`.params` (versioned parameter files), :mod:`.ddft` (lipid fields),
:mod:`.ras` (RAS particles), :mod:`.backend` (numpy / torch arrays), :mod:`.model`
(the coupled model, checkpoints), :mod:`.frames` (frame files, radial profiles),
:mod:`.patches` (patch extraction and files), :mod:`.driver` (the campaign job's
loop and directory layout), :mod:`.bench` (``mummi-bench macro``).
"""

from mummi.macro.frames import Frame, list_frames, radial_profiles, read_frame, write_frame
from mummi.macro.model import MacroModel
from mummi.macro.params import (
    MacroParameters,
    default_parameters,
    latest_parameters,
    load_parameters,
    save_parameters,
    write_parameters,
)
from mummi.macro.patches import PatchSet, extract_patches, list_patch_files, read_patches, write_patches

__all__ = [
    "Frame",
    "MacroModel",
    "MacroParameters",
    "PatchSet",
    "default_parameters",
    "extract_patches",
    "latest_parameters",
    "list_frames",
    "list_patch_files",
    "load_parameters",
    "radial_profiles",
    "read_frame",
    "read_patches",
    "save_parameters",
    "write_frame",
    "write_parameters",
    "write_patches",
]
