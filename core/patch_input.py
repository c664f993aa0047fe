"""The patch-input record: what a simulation needs of one selected patch, from the macro side to createsim.

The coordinator builds a :class:`PatchInput` from the macro model's patch file and
writes it into the sim folder (:func:`write_patch_input`); createsim reads it back
(:func:`read_patch_input`) and builds the membrane from it. One record all the
way: constructing it validates it, so a bad patch is refused before anything is
written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mummi.core.atomic import atomic_savez_unsynced
from mummi.core.lipids import N_CHANNELS
from mummi.core.unreadable import UnreadableFileError, reading

#: Cells per edge of a coarse patch (5 x 5 cells of 14 channels).
COARSE_CELLS = 5


@dataclass(frozen=True)
class PatchInput:
    """One selected patch: its coarse composition and the RAS constellation around its central RAS."""

    patch_id: str
    coarse: np.ndarray
    """(5, 5, 14) concentrations, finite and non-negative, arbitrary positive units."""
    offsets_nm: np.ndarray
    """(m, 2) positions of the other RAS relative to the central one."""
    states: np.ndarray
    """(m,) their states."""
    central_state: int = 0
    """State of the RAS the patch is centred on."""

    def __post_init__(self) -> None:
        patch_id = str(self.patch_id)
        coarse = np.asarray(self.coarse, dtype=np.float64)
        shape = (COARSE_CELLS, COARSE_CELLS, N_CHANNELS)
        if coarse.shape != shape:
            raise ValueError(f"patch {patch_id}: coarse concentrations must have shape {shape}, got {coarse.shape}")
        if not np.all(np.isfinite(coarse)) or np.any(coarse < 0):
            raise ValueError(f"patch {patch_id}: coarse concentrations must be finite and non-negative")
        offsets = np.asarray(self.offsets_nm, dtype=np.float64).reshape(-1, 2)
        states = np.asarray(self.states).reshape(-1)
        if len(states) != len(offsets):
            raise ValueError(f"patch {patch_id}: {len(offsets)} constellation offsets but {len(states)} states")
        for name, value in (("patch_id", patch_id), ("coarse", coarse), ("offsets_nm", offsets), ("states", states),
                            ("central_state", int(self.central_state))):  # fmt: skip
            object.__setattr__(self, name, value)


def write_patch_input(path: str | Path, patch: PatchInput) -> Path:
    """Write the createsim input of one patch atomically (the coordinator calls this).

    Not fsynced: it is derived from the patch, and written again when a createsim finds it unreadable
    (a crash of the machine lost it).
    """
    return atomic_savez_unsynced(
        path,
        patch_id=np.array(patch.patch_id),
        coarse=patch.coarse,
        constellation_offsets_nm=patch.offsets_nm,
        constellation_states=patch.states,
        central_state=patch.central_state,
    )


def patch_input_readable(path: str | Path) -> bool:
    try:
        read_patch_input(path)
    except (OSError, UnreadableFileError):
        return False
    return True


def read_patch_input(path: str | Path) -> PatchInput:
    with reading(path, "patch input"), np.load(path, allow_pickle=False) as data:
        central = int(data["central_state"]) if "central_state" in data else 0
        return PatchInput(
            str(data["patch_id"]),
            data["coarse"],
            data["constellation_offsets_nm"],
            data["constellation_states"],
            central,
        )
