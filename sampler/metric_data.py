"""Labelled native patches for the learned metric: constellation classes and no-protein control patches.

Seed 002 labels each patch with its protein constellation y and trains on four
types (no protein, 1 RAS, 1 RAS–RAF, the rest). Our macro model has RAS only, in
states, so the classes (:func:`constellation_class`) are

* 0: no protein, the control: patches centred on random grid points with no RAS
  inside the patch square (:func:`control_patches`);
* for a patch around a RAS in state s with k RAS in the patch (itself included):
  ``1 + 3 s + min(k, 3) − 1``, i.e. one, two, three-or-more RAS, per central state.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mummi.core.spec import PatchSettings
from mummi.macro.frames import Frame, read_frame
from mummi.macro.patches import PatchSet, extract_patches, read_patches

log = logging.getLogger(__name__)

CONTROL = 0
"""The class of the no-protein control patches."""
MAX_COUNT = 3
"""Patches with this many RAS or more share a class."""


def constellation_class(n_ras: np.ndarray | int, central_state: np.ndarray | int) -> np.ndarray:
    """The class of patches with ``n_ras`` RAS inside (0: a control patch) around a RAS in ``central_state``."""
    n = np.asarray(n_ras, dtype=np.int64)
    s = np.asarray(central_state, dtype=np.int64)
    if np.any(n < 0) or np.any(s < 0):
        msg = f"RAS counts and states must be non-negative, got {n_ras} and {central_state}"
        raise ValueError(msg)
    return np.where(n == 0, CONTROL, 1 + MAX_COUNT * s + np.minimum(n, MAX_COUNT) - 1)


def patch_labels(patches: PatchSet) -> np.ndarray:
    """The constellation class of every patch of a frame (each is centred on a RAS)."""
    others = np.diff(patches.constellation_start)
    return constellation_class(1 + others, patches.central_states)


def control_points(frame: Frame, count: int, reach_nm: float, rng: np.random.Generator) -> np.ndarray:
    """Up to ``count`` distinct random grid points (nm) with no RAS within ``reach_nm`` on either axis (minimum
    image): the centres of control patches, none of them the same patch twice."""
    if count <= 0:
        return np.zeros((0, 2))
    n, h = frame.grid_points, frame.spacing_nm
    ras = np.asarray(frame.ras_positions_nm, dtype=np.float64).reshape(-1, 2)
    chosen: dict[int, None] = {}  # flat grid indices, in the order drawn
    for _ in range(20):  # draw in rounds; a crowded membrane may leave fewer than asked
        flat = rng.integers(0, n * n, 4 * count)
        trial = np.stack([flat % n, flat // n], axis=1) * h  # (x, y) of grid point (ix, iy)
        d = trial[:, None, :] - ras[None, :, :]
        d -= frame.box_nm * np.round(d / frame.box_nm)
        inside = np.all(np.abs(d) <= reach_nm, axis=2)  # (trial, RAS): that RAS is inside the trial's patch
        for k in flat[~np.any(inside, axis=1)]:
            chosen.setdefault(int(k), None)
        if len(chosen) >= count:
            break
    flat = np.fromiter(chosen, dtype=np.int64)[:count]
    return np.stack([flat % n, flat // n], axis=1).astype(np.float64) * h


def control_patches(frame: Frame, count: int, settings: PatchSettings, rng: np.random.Generator) -> np.ndarray:
    """Native patches (m ≤ count, P, P, 14) centred on random points of ``frame`` with no RAS inside the patch."""
    reach = settings.native_points * frame.spacing_nm / 2
    points = control_points(frame, count, reach, rng)
    if len(points) == 0:
        return np.zeros((0, settings.native_points, settings.native_points, frame.fields.shape[0]), np.float32)
    fake = replace(
        frame,
        ras_positions_nm=points,
        ras_states=np.zeros(len(points), np.int64),
        ras_ids=np.arange(len(points)),
    )
    return extract_patches(fake, settings).native


@dataclass(frozen=True)
class LabelledPatches:
    """Native patches with their constellation classes."""

    native: np.ndarray  # (n, P, P, 14) float32
    labels: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> dict[int, int]:
        values, counts = np.unique(self.labels, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts)}


def labelled_frames(
    frames: Sequence[Frame], settings: PatchSettings, control_fraction: float, seed: int
) -> LabelledPatches:
    """The RAS patches of ``frames`` and about ``control_fraction`` control patches per RAS patch, frame by frame."""
    rng = np.random.default_rng(seed)
    natives, labels = [], []
    for frame in frames:
        patches = extract_patches(frame, settings)
        natives.append(patches.native)
        labels.append(patch_labels(patches))
        control = control_patches(frame, round(control_fraction * len(patches)), settings, rng)
        natives.append(control)
        labels.append(np.full(len(control), CONTROL, np.int64))
    return _joined(natives, labels, settings.native_points)


def read_labelled(
    patch_files: Sequence[Path],
    frame_files: Sequence[Path] = (),
    control_fraction: float = 0.25,
    seed: int = 0,
    settings: PatchSettings | None = None,
) -> LabelledPatches:
    """The native patches of ``patch_files`` with their classes, and control patches cut from ``frame_files``.

    The control patches number about ``control_fraction`` times the RAS patches,
    spread evenly over the frames. ValueError when a patch file holds no native
    patches (written with ``native=False``) or their size is not ``settings``'.
    """
    settings = settings if settings is not None else PatchSettings()
    natives, labels = [], []
    for path in patch_files:
        patches = read_patches(path, native=True)
        if len(patches) and patches.native.shape[1] == 0:
            msg = f"{path}: holds no native patches (written with native=False); the metric needs them"
            raise ValueError(msg)
        natives.append(patches.native)
        labels.append(patch_labels(patches))
    n_ras = sum(len(lab) for lab in labels)
    sizes = {a.shape[1] for a in natives if len(a)}
    if sizes - {settings.native_points}:
        msg = f"native patches of {sorted(sizes)} points, but patches.native_points is {settings.native_points}"
        raise ValueError(msg)
    if frame_files and control_fraction > 0:
        rng = np.random.default_rng(seed)
        per_frame = np.diff(np.round(np.linspace(0, control_fraction * n_ras, len(frame_files) + 1)).astype(int))
        for path, count in zip(frame_files, per_frame):
            control = control_patches(read_frame(path), int(count), settings, rng)
            natives.append(control)
            labels.append(np.full(len(control), CONTROL, np.int64))
    return _joined(natives, labels, settings.native_points)


def _joined(natives: list[np.ndarray], labels: list[np.ndarray], size: int) -> LabelledPatches:
    if not natives:
        return LabelledPatches(np.zeros((0, size, size, 14), np.float32), np.zeros(0, np.int64))
    return LabelledPatches(
        np.ascontiguousarray(np.concatenate(natives), dtype=np.float32), np.concatenate(labels).astype(np.int64)
    )
