"""A process killed while it writes a file of any kind the campaign keeps: the previous version stays and is read.

Each kind is written once (version 1), then a child process writes version 2
and is SIGKILLed inside the write, at the moment it would put a finished file in
place (its n-th ``os.replace``): the latest moment a kill can cut a write short.
A writer that wrote in place would leave version 2, or half of it; the tests
require version 1, whole, and readers that never take the leftover temporary
file for the real one.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mummi.analysis.rdf import RDFCounts
from mummi.core.states import Outcome
from mummi.core.status_record import read_status_record, write_status_record
from mummi.macro import params as macro_params
from mummi.macro.frames import Frame, read_frame, write_frame
from mummi.macro.patches import extract_patches, list_patch_files, read_patches, write_patches
from mummi.sampler import checkpoint
from mummi.workflow.ingest import read_latents, write_latents


def _frame(version: int) -> Frame:
    fields = np.full((14, 40, 40), float(version), dtype=np.float32)
    return Frame(100.0, version, fields, np.array([[10.0, 12.0]]), np.array([0]), np.array([3]), 40.0, version)


def _write_params(d: Path, v: int) -> None:
    params = macro_params.default_parameters()
    macro_params.write_parameters(d, params.replace(noise_scale=float(v)))  # the next version, tagged v


def _read_params(d: Path) -> int:
    latest = macro_params.latest_parameters(d)
    assert latest is not None
    return round(latest.noise_scale)


def _write_patches(d: Path, v: int) -> None:
    write_patches(d, replace(extract_patches(_frame(v)), param_version=v))


def _read_patches(d: Path) -> int:
    (path,) = list_patch_files(d)
    return read_patches(path).param_version


def _write_rdf(d: Path, v: int) -> None:
    counts = RDFCounts.empty(0.1, 2.0)
    counts.frames_done = v
    counts.save(d / "rdf_counts.npz")


# kind: (write version v into folder d, read the version back from d)
KINDS: dict[str, tuple[Callable[[Path, int], object], Callable[[Path], int]]] = {
    "sampler checkpoint": (
        lambda d, v: checkpoint.save(d, {"x": np.full(3, v)}, {"v": v}),
        lambda d: int(checkpoint.load(d)[1]["v"]),
    ),
    "parameter version": (_write_params, _read_params),
    "macro frame": (lambda d, v: write_frame(d, _frame(v)), lambda d: read_frame(next(d.glob("frame-*.h5"))).step),
    "patch file": (_write_patches, _read_patches),
    "RDF counts": (_write_rdf, lambda d: RDFCounts.load(d / "rdf_counts.npz").frames_done),
    "latent cache": (
        lambda d, v: write_latents(d / "frame.npz", ["p-1"], np.full((1, 15), float(v), dtype=np.float32)),
        lambda d: int(read_latents(d / "frame.npz")[1][0, 0]),
    ),
    "status record": (
        lambda d, v: write_status_record(d / "sim.status.json", "sim", Outcome.DONE, v=v),
        lambda d: int((read_status_record(d / "sim.status.json") or {"v": -1})["v"]),
    ),
}
CASES = [(kind, 1) for kind in KINDS] + [("sampler checkpoint", 2)]  # its arrays, then its manifest

CHILD = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
import test_killed_mid_write as t
calls = [0]
real = os.replace
def dying_replace(src, dst):
    calls[0] += 1
    if calls[0] == {at}:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst)
os.replace = dying_replace
t.KINDS[{kind!r}][0](Path({folder!r}), 2)
"""


@pytest.mark.parametrize(("kind", "at"), CASES, ids=[f"{k}-replace{n}" for k, n in CASES])
def test_a_write_killed_midway_leaves_the_previous_version(kind: str, at: int, tmp_path: Path) -> None:
    write, read = KINDS[kind]
    write(tmp_path, 1)
    assert read(tmp_path) == 1
    code = CHILD.format(tests=str(Path(__file__).parent), at=at, kind=kind, folder=str(tmp_path))
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert read(tmp_path) == 1
    leftovers = [p.name for p in tmp_path.rglob("*") if ".tmp-" in p.name]
    assert leftovers, "the kill should leave the unfinished file behind, under its temporary name"
    write(tmp_path, 3)  # the next write is not disturbed by the leftover
    assert read(tmp_path) == 3
