"""Checkpoints as one atomic file set: ``state-<n>.npz`` plus ``manifest.json``.

Arrays go to an ``.npz`` (loaded with ``allow_pickle=False``), everything else to
JSON; nothing in a checkpoint can execute code when loaded. The array file of a
new generation is written under a new name first, then the manifest naming it (and
its size and SHA-256) replaces the old manifest atomically; only then are older
generations removed. A crash at any point leaves the previous checkpoint loadable.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from mummi.core.atomic import atomic_savez, atomic_write_text, sha256_of

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "mummi-sampler-checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, incomplete or not ours."""


def save(directory: str | Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    """Write a new generation into ``directory``; return the manifest path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    generation = _current_generation(directory) + 1
    name = f"state-{generation:06d}.npz"
    path = atomic_savez(directory / name, **arrays)
    manifest = {
        "format": FORMAT,
        "generation": generation,
        "arrays": name,
        "size": path.stat().st_size,
        "sha256": sha256_of(path),
        "meta": meta,
    }
    atomic_write_text(directory / MANIFEST, json.dumps(manifest, indent=1))
    for old in directory.glob("state-*.npz"):
        if old.name != name:
            old.unlink(missing_ok=True)
    log.debug("sampler checkpoint generation %d written to %s", generation, directory)
    return directory / MANIFEST


def load(directory: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays and metadata of the checkpoint in ``directory``."""
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise CheckpointError(
            f"{directory}: no {MANIFEST}; not a sampler checkpoint (or one that was never completed)"
        ) from err
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{directory / MANIFEST}: not valid JSON ({err})") from err
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{directory / MANIFEST}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    path = directory / manifest["arrays"]
    if not path.exists() or path.stat().st_size != manifest["size"] or sha256_of(path) != manifest["sha256"]:
        raise CheckpointError(f"{path}: missing or does not match its manifest (size/SHA-256)")
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    return arrays, manifest["meta"]


def _current_generation(directory: Path) -> int:
    try:
        return int(json.loads((directory / MANIFEST).read_text(encoding="utf-8"))["generation"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError, ValueError):
        return 0
