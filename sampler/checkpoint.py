"""Checkpoints as atomic file sets, in generations, with append-only rows written once.

A generation ``g`` is ``manifest-<g>.json`` naming ``state-<g>.npz`` (the arrays
that change) and the row segments ``rows-<start>-<end>.npz`` (rows ``[start, end)``
of the arrays that only grow at the end, such as every latent ever seen): a
generation writes one new segment with the rows added since the generation
before it, so a checkpoint costs what changed, not the campaign's history. Every
file is listed with its size and SHA-256. Arrays are loaded with
``allow_pickle=False`` and everything else is JSON: nothing in a checkpoint can
execute code when loaded.

Files are written under new names first, the manifest last: a crash at any point
leaves the earlier generations loadable. Older generations stay until
:func:`prune` removes them, so a caller that records which generation is current
elsewhere (the campaign's store) moves its record first and prunes after.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mummi.core.atomic import atomic_savez, atomic_write_text, numbered, sha256_of
from mummi.core.unreadable import UnreadableFileError, reading

log = logging.getLogger(__name__)

FORMAT = "mummi-sampler-checkpoint/2"
_MANIFEST = re.compile(r"^manifest-(\d{6})\.json$")
LEGACY_MANIFEST = "manifest.json"
"""The single manifest of format 1 (no generations in names, no segments): still read."""


class CheckpointError(UnreadableFileError):
    """A checkpoint that is missing, incomplete or not ours."""


def save(
    directory: str | Path,
    arrays: Mapping[str, np.ndarray],
    meta: Mapping[str, Any],
    rows: Mapping[str, np.ndarray | Sequence[Any]] | None = None,
    generation: int | None = None,
    base: int | None = None,
) -> int:
    """Write a generation (default: the one after the newest present) into ``directory``; returns it.

    ``rows`` are sequences of one common length that only ever grow at the end:
    only the rows that no segment of generation ``base`` (default: the newest
    present) holds are written.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    newest = generations(directory)
    generation = generation if generation is not None else (newest[-1] + 1 if newest else 1)
    base = base if base is not None else (newest[-1] if newest else None)
    segments = _reusable_segments(directory, base) if base is not None and rows else []
    rows = dict(rows or {})
    n_rows = {len(values) for values in rows.values()}
    if len(n_rows) > 1:
        raise ValueError(f"row arrays of different lengths: { {k: len(v) for k, v in rows.items()} }")
    end = n_rows.pop() if n_rows else 0
    while segments and segments[-1]["end"] > end:
        segments.pop()
    start = segments[-1]["end"] if segments else 0
    if end > start:
        part = {name: np.asarray(values[start:end]) for name, values in rows.items()}
        segments.append({"start": start, "end": end, **_file(directory, f"rows-{start:012d}-{end:012d}.npz", part)})
    manifest = {
        "format": FORMAT,
        "generation": generation,
        "arrays": _file(directory, f"state-{generation:06d}.npz", arrays),
        "rows": sorted(rows),
        "segments": segments,
        "meta": dict(meta),
    }
    atomic_write_text(directory / f"manifest-{generation:06d}.json", json.dumps(manifest, indent=1))
    log.debug("sampler checkpoint generation %d written to %s (%d new rows)", generation, directory, end - start)
    return generation


def load(directory: str | Path, generation: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays (rows joined) and metadata of generation ``generation`` (default: the newest) in ``directory``."""
    directory = Path(directory)
    if generation is None:
        present = generations(directory)
        path = directory / (f"manifest-{present[-1]:06d}.json" if present else LEGACY_MANIFEST)
    else:
        path = directory / f"manifest-{generation:06d}.json"
    manifest = _manifest(path)
    try:
        files = [manifest["arrays"], *manifest.get("segments", [])]
        meta, names = manifest["meta"], manifest.get("rows", [])
        for entry in files:
            _verify(directory, entry)
    except (AttributeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: not a checkpoint manifest ({err!r} missing or wrong)") from err
    arrays = _read(directory / files[0]["file"])
    parts = [_read(directory / entry["file"]) for entry in files[1:]]
    for name in names:
        arrays[name] = np.concatenate([part[name] for part in parts]) if parts else np.empty(0)
    return arrays, meta


def generations(directory: str | Path) -> list[int]:
    """The generations whose manifest is in ``directory``, ascending."""
    return numbered(directory, _MANIFEST)


def prune(directory: str | Path, keep: int) -> None:
    """Remove every generation but ``keep``, and the files only they used."""
    directory = Path(directory)
    used = {f"manifest-{keep:06d}.json"}
    manifest = _manifest(directory / f"manifest-{keep:06d}.json")
    used.update(entry["file"] for entry in [manifest["arrays"], *manifest.get("segments", [])])
    for path in directory.iterdir():
        if path.name not in used and (path.suffix in (".npz", ".json")) and not path.name.startswith("."):
            path.unlink(missing_ok=True)


def _file(directory: Path, name: str, arrays: Mapping[str, Any]) -> dict[str, Any]:
    path = atomic_savez(directory / name, **arrays)
    return {"file": name, "size": path.stat().st_size, "sha256": sha256_of(path)}


def _reusable_segments(directory: Path, generation: int) -> list[dict[str, Any]]:
    """The segments of ``generation`` still present whole-sized, from row 0 without a gap (their checksums are
    checked when loaded)."""
    try:
        segments = _manifest(directory / f"manifest-{generation:06d}.json").get("segments", [])
    except CheckpointError:
        return []
    reusable: list[dict[str, Any]] = []
    for entry in segments:
        path = directory / entry["file"]
        if entry["start"] != (reusable[-1]["end"] if reusable else 0):
            break
        if not path.is_file() or path.stat().st_size != entry["size"]:
            break
        reusable.append(entry)
    return reusable


def _manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise CheckpointError(
            f"{path.parent}: no manifest.json or manifest-*.json; not a sampler checkpoint (or one never completed)"
        ) from err
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(manifest, dict) or manifest.get("format") not in (FORMAT, "mummi-sampler-checkpoint/1"):
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise CheckpointError(f"{path}: format {found!r}, expected {FORMAT!r}")
    if isinstance(manifest.get("arrays"), str):  # format 1: the array file's name, its size and hash beside it
        manifest["arrays"] = {
            "file": manifest["arrays"],
            "size": manifest.get("size"),
            "sha256": manifest.get("sha256"),
        }
    return manifest


def _verify(directory: Path, entry: Mapping[str, Any]) -> None:
    name = entry["file"]
    if not isinstance(name, str) or Path(name).name != name or name.startswith("."):
        raise CheckpointError(f"{directory}: the manifest names {name!r}, not a file of this checkpoint")
    path = directory / name
    if not path.is_file() or path.stat().st_size != entry["size"] or sha256_of(path) != entry["sha256"]:
        raise CheckpointError(f"{path}: missing or does not match its manifest (size/SHA-256)")


def _read(path: Path) -> dict[str, np.ndarray]:
    with reading(path, "sampler checkpoint"), np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}
