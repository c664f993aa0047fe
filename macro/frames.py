"""Macro frames: one HDF5 file per output time, written atomically.

A frame holds the 14 lipid fields (float32, ``fields[channel, iy, ix]``; grid point
(ix, iy) sits at (ix·h, iy·h)), the RAS positions (nm), states and ids, the time,
the step and the parameter version that produced it. File names sort by time:
``frame-<time_ns as 12 digits>.h5``.

:func:`radial_profiles` gives the macro model's own radially averaged
concentration around RAS, c_i(r)/c̄_i, which the feedback compares with the RDFs of
the micro simulations.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from mummi.core.atomic import atomic_path
from mummi.core.lipids import CHANNEL_NAMES
from mummi.core.unreadable import reading

log = logging.getLogger(__name__)

FORMAT = "mummi-macro-frame/1"


@dataclass(frozen=True)
class Frame:
    time_ns: float
    step: int
    fields: np.ndarray  # (14, N, N) float32, areal densities (nm⁻²)
    ras_positions_nm: np.ndarray  # (n, 2) in [0, box)
    ras_states: np.ndarray  # (n,)
    ras_ids: np.ndarray  # (n,) stable ids
    box_nm: float
    param_version: int

    @property
    def grid_points(self) -> int:
        return self.fields.shape[-1]

    @property
    def spacing_nm(self) -> float:
        return self.box_nm / self.grid_points


def frame_name(time_ns: float) -> str:
    return f"frame-{time_ns:012.0f}.h5"


def write_frame(directory: str | Path, frame: Frame) -> Path:
    """Write ``frame`` into ``directory`` (temporary name, then renamed); returns its path."""
    path = Path(directory) / frame_name(frame.time_ns)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update(
            format=FORMAT,
            time_ns=frame.time_ns,
            step=frame.step,
            box_nm=frame.box_nm,
            param_version=frame.param_version,
            channels=list(CHANNEL_NAMES),
            layout="channel,y,x",
        )
        f.create_dataset("fields", data=np.asarray(frame.fields, dtype=np.float32))
        f.create_dataset("ras/positions_nm", data=np.asarray(frame.ras_positions_nm, dtype=np.float64).reshape(-1, 2))
        f.create_dataset("ras/states", data=np.asarray(frame.ras_states, dtype=np.int32))
        f.create_dataset("ras/ids", data=np.asarray(frame.ras_ids, dtype=np.int32))
    return path


def read_frame(path: str | Path) -> Frame:
    with reading(path, "macro frame"), h5py.File(path, "r") as f:
        if f.attrs.get("format") != FORMAT:
            raise ValueError(f"{path}: not a macro frame (format {f.attrs.get('format')!r}, expected {FORMAT!r})")
        a = f.attrs
        return Frame(
            float(a["time_ns"]),
            int(a["step"]),
            f["fields"][...],
            f["ras/positions_nm"][...],
            f["ras/states"][...],
            f["ras/ids"][...],
            float(a["box_nm"]),
            int(a["param_version"]),
        )


def list_frames(directory: str | Path) -> list[Path]:
    """Complete frame files in ``directory``, oldest first."""
    directory = Path(directory)
    return sorted(directory.glob("frame-*.h5")) if directory.is_dir() else []


def radial_profiles(frame: Frame, r_edges_nm: np.ndarray, state: int | None = None) -> np.ndarray:
    """c_i(r)/c̄_i around the RAS (all, or those in ``state``), per channel and radial bin.

    Grid points are binned by their distance to each RAS (minimum image); each bin
    averages the concentrations of all its points over all RAS and divides by the
    channel's mean over the whole membrane. Returns (14, len(r_edges)-1); bins that
    no grid point falls in are NaN.
    """
    edges = np.asarray(r_edges_nm, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0) or edges[0] < 0:
        raise ValueError("r_edges_nm must be increasing, non-negative, with at least two edges")
    if edges[-1] >= frame.box_nm / 2:
        raise ValueError(f"r_edges_nm reach {edges[-1]} nm, beyond half the box ({frame.box_nm / 2} nm)")
    fields = np.asarray(frame.fields, dtype=np.float64)
    n, h = frame.grid_points, frame.spacing_nm
    chosen = np.ones(len(frame.ras_states), bool) if state is None else np.asarray(frame.ras_states) == state
    pos = np.asarray(frame.ras_positions_nm, dtype=np.float64)[chosen]
    bins = edges.size - 1
    sums = np.zeros((fields.shape[0], bins))
    counts = np.zeros(bins)
    m = int(math.ceil(edges[-1] / h)) + 1
    span = np.arange(-m, m + 1)
    flat = fields.reshape(fields.shape[0], -1)
    for p in pos:
        centre = np.round(p / h).astype(int)
        gy, gx = centre[1] + span, centre[0] + span
        dy = (gy * h - p[1])[:, None]
        dx = (gx * h - p[0])[None, :]
        k = np.digitize(np.hypot(dx, dy), edges) - 1
        inside = (k >= 0) & (k < bins)
        idx = ((gy[:, None] % n) * n + (gx[None, :] % n))[inside]
        kk = k[inside]
        counts += np.bincount(kk, minlength=bins)
        for ch in range(flat.shape[0]):
            sums[ch] += np.bincount(kk, flat[ch, idx], minlength=bins)
    mean = flat.mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[None, :] / mean[:, None]
