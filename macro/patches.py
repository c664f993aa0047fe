"""Patches: the neighbourhood of each RAS in a frame (seed 000, Methods, "Patches").

For every RAS a patch holds

* the native patch: ``native_points``² grid points (37×37 at the paper's spacing,
  30 nm) × 14 channels, centred on the grid point nearest the RAS, wrapped
  periodically; ``native[p, iy, ix, channel]``;
* the coarse patch: block means of the native one over widths 7, 7, 9, 7, 7 on
  both axes, ``coarse[p, iy, ix, channel]`` (5×5×14, the encoder's input);
* the constellation: the offsets (nm, minimum image) and states of the *other*
  RAS inside the patch's square (|dx|, |dy| ≤ half its edge), and the state of the
  central one.

A frame's patches are stored in one HDF5 file, ``patches-<time_ns>.h5``, with
stable ids ``f<time_ns as 12 digits>-r<ras id as 4 digits>``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from mummi.core.atomic import atomic_path
from mummi.core.spec import PatchSettings
from mummi.core.unreadable import reading
from mummi.macro.frames import Frame

log = logging.getLogger(__name__)

FORMAT = "mummi-patches/1"


def patch_id(time_ns: float, ras_id: int) -> str:
    return f"f{time_ns:012.0f}-r{ras_id:04d}"


def patches_name(time_ns: float) -> str:
    return f"patches-{time_ns:012.0f}.h5"


@dataclass(frozen=True)
class PatchSet:
    """All patches of one frame; row p of every array belongs to ``ids[p]``."""

    ids: list[str]
    time_ns: float
    param_version: int
    spacing_nm: float
    ras_ids: np.ndarray  # (n,)
    centres_nm: np.ndarray  # (n, 2) positions of the central RAS
    central_states: np.ndarray  # (n,)
    native: np.ndarray  # (n, P, P, 14) float32
    coarse: np.ndarray  # (n, 5, 5, 14) float32
    constellation_start: np.ndarray  # (n + 1,) rows of patch p: [start[p], start[p+1])
    constellation_offsets_nm: np.ndarray  # (m, 2) other RAS relative to the central one
    constellation_states: np.ndarray  # (m,)
    constellation_ras_ids: np.ndarray  # (m,)

    def __len__(self) -> int:
        return len(self.ids)

    def constellation(self, p: int) -> tuple[np.ndarray, np.ndarray]:
        """(offsets_nm (k, 2), states (k,)) of the other RAS in patch ``p``."""
        lo, hi = self.constellation_start[p], self.constellation_start[p + 1]
        return self.constellation_offsets_nm[lo:hi], self.constellation_states[lo:hi]


def extract_patches(frame: Frame, settings: PatchSettings | None = None) -> PatchSet:
    """The patches of every RAS in ``frame``."""
    settings = settings if settings is not None else PatchSettings()
    size = settings.native_points
    n, h = frame.grid_points, frame.spacing_nm
    if size > n:
        raise ValueError(f"native patches of {size} points do not fit the {n}-point grid")
    pos = np.asarray(frame.ras_positions_nm, dtype=np.float64).reshape(-1, 2)
    half = size // 2
    centre = np.round(pos / h).astype(np.int64)
    span = np.arange(-half, half + 1)
    rows = (centre[:, 1:2] + span[None]) % n
    cols = (centre[:, 0:1] + span[None]) % n
    native = np.asarray(frame.fields, dtype=np.float32)[:, rows[:, :, None], cols[:, None, :]]  # (14, n, P, P)
    native = np.ascontiguousarray(np.moveaxis(native, 0, -1))
    edges = np.concatenate([[0], np.cumsum(settings.block_widths)[:-1]])
    widths = np.asarray(settings.block_widths, dtype=np.float32)
    coarse = np.add.reduceat(np.add.reduceat(native, edges, axis=1), edges, axis=2)
    coarse /= (widths[:, None] * widths[None, :])[None, :, :, None]

    reach = size * h / 2
    starts, offsets, states, others = [0], [], [], []
    for a in range(len(pos)):
        d = pos - pos[a]
        d -= frame.box_nm * np.round(d / frame.box_nm)
        inside = np.flatnonzero((np.abs(d) <= reach).all(axis=1) & (np.arange(len(pos)) != a))
        offsets.append(d[inside])
        states.append(np.asarray(frame.ras_states)[inside])
        others.append(np.asarray(frame.ras_ids)[inside])
        starts.append(starts[-1] + inside.size)
    ras_ids = np.asarray(frame.ras_ids, dtype=np.int64)
    return PatchSet(
        ids=[patch_id(frame.time_ns, int(r)) for r in ras_ids],
        time_ns=frame.time_ns,
        param_version=frame.param_version,
        spacing_nm=h,
        ras_ids=ras_ids,
        centres_nm=pos,
        central_states=np.asarray(frame.ras_states, dtype=np.int64),
        native=native,
        coarse=coarse.astype(np.float32),
        constellation_start=np.asarray(starts, dtype=np.int64),
        constellation_offsets_nm=np.concatenate(offsets).reshape(-1, 2) if offsets else np.zeros((0, 2)),
        constellation_states=np.concatenate(states).astype(np.int64) if states else np.zeros(0, np.int64),
        constellation_ras_ids=np.concatenate(others).astype(np.int64) if others else np.zeros(0, np.int64),
    )


def write_patches(directory: str | Path, patches: PatchSet, native: bool = True) -> Path:
    """Write a frame's patches into ``directory`` atomically; ``native=False`` leaves the native patches out."""
    path = Path(directory) / patches_name(patches.time_ns)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update(
            format=FORMAT, time_ns=patches.time_ns, param_version=patches.param_version, spacing_nm=patches.spacing_nm
        )
        f.create_dataset("ids", data=np.array(patches.ids, dtype="S"))
        for name in (
            "ras_ids",
            "centres_nm",
            "central_states",
            "coarse",
            "constellation_start",
            "constellation_offsets_nm",
            "constellation_states",
            "constellation_ras_ids",
        ):
            f.create_dataset(name, data=getattr(patches, name))
        if native:
            f.create_dataset(
                "native", data=patches.native, chunks=(1,) + patches.native.shape[1:] if len(patches) else None
            )
    return path


def read_patches(path: str | Path, native: bool = True) -> PatchSet:
    """A patch file back as a :class:`PatchSet` (``native`` False, or absent in the file: an empty native array)."""
    with reading(path, "patch file"), h5py.File(path, "r") as f:
        if f.attrs.get("format") != FORMAT:
            raise ValueError(f"{path}: not a patch file (format {f.attrs.get('format')!r}, expected {FORMAT!r})")
        arrays = {
            k: f[k][...]
            for k in (
                "ras_ids",
                "centres_nm",
                "central_states",
                "coarse",
                "constellation_start",
                "constellation_offsets_nm",
                "constellation_states",
                "constellation_ras_ids",
            )
        }
        ids = [s.decode() for s in f["ids"][...]]
        nat = (
            f["native"][...]
            if native and "native" in f
            else np.zeros((len(ids), 0, 0, arrays["coarse"].shape[-1]), np.float32)
        )
        return PatchSet(
            ids=ids,
            time_ns=float(f.attrs["time_ns"]),
            param_version=int(f.attrs["param_version"]),
            spacing_nm=float(f.attrs["spacing_nm"]),
            native=nat,
            **arrays,
        )


def list_patch_files(directory: str | Path) -> list[Path]:
    """Complete patch files in ``directory``, oldest first."""
    directory = Path(directory)
    return sorted(directory.glob("patches-*.h5")) if directory.is_dir() else []
