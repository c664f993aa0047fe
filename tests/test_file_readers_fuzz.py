"""Every reader of a file the campaign writes, fed broken files: a result, or the project's own error.

Each reader gets a valid file of its kind cut at every length hypothesis picks,
the same file with bytes overwritten, and arbitrary bytes. It must return (what
it returns is then the reader's business: a status record that is not one reads
as absent) or raise :class:`~mummi.core.unreadable.UnreadableFileError`, never
anything else. HDF5 files are only cut and replaced, not overwritten in place:
the HDF5 library itself is not written to survive arbitrary bit flips.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mummi.analysis.rdf import RDFCounts
from mummi.analysis.rdf_table import RdfShells, RdfTable
from mummi.core.patch_input import PatchInput, read_patch_input, write_patch_input
from mummi.core.states import Outcome
from mummi.core.status_record import read_status_record, write_status_record
from mummi.core.unreadable import UnreadableFileError
from mummi.macro.frames import Frame, read_frame, write_frame
from mummi.macro.params import default_parameters, load_parameters, save_parameters
from mummi.macro.patches import extract_patches, read_patches, write_patches
from mummi.sampler import checkpoint
from mummi.sampler.history import EventHistory, read_history
from mummi.workflow.ingest import read_latents, write_latents

RNG = np.random.default_rng(0)


def _frame() -> Frame:
    fields = RNG.random((14, 40, 40)).astype(np.float32)
    return Frame(100.0, 5, fields, np.array([[10.0, 12.0], [30.0, 31.0]]), np.array([0, 1]), np.array([3, 4]), 40.0, 1)


def _status(path: Path) -> None:
    write_status_record(path, "sim", Outcome.DONE, frames=3)


def _patch_input(path: Path) -> None:
    write_patch_input(path, PatchInput("p-1", RNG.random((5, 5, 14)), np.array([[1.0, 2.0]]), np.array([1])))


def _rdf(path: Path) -> None:
    counts = RDFCounts.empty(0.1, 2.0)
    counts.counts += RNG.integers(0, 5, counts.counts.shape)
    counts.save(path)


def _history(path: Path) -> None:
    history = EventHistory(path)
    for i in range(3):
        history.append("select", f"p-{i}", 0.5 * i, i + 1, 10, i, 20)
    history.flush()


def _checkpoint(path: Path) -> None:
    checkpoint.save(path.parent, {"x": RNG.random((4, 3))}, {"n": 4})


def _rdf_table_ids(path: Path) -> None:
    table = RdfTable(path.parent, RdfShells(np.linspace(0, 2, 21), np.linspace(0, 2, 5)), 14)
    counts = RDFCounts.empty(0.1, 2.0)
    counts.counts += 1
    counts.pair_density += 1.0
    counts.frames_done = 1
    for sim_id in ("sim-000001", "sim-000002"):
        table.add(sim_id, counts)


def _open_rdf_table(path: Path) -> object:
    return RdfTable(path.parent, RdfShells(np.linspace(0, 2, 21), np.linspace(0, 2, 5)), 14)


# name: (file name, writer, reader, may bytes be overwritten in place)
READERS: dict[str, tuple[str, Callable[[Path], object], Callable[[Path], object], bool]] = {
    "status record": ("sim.status.json", _status, read_status_record, True),
    "patch input": ("patch_input.npz", _patch_input, read_patch_input, True),
    "RDF counts": ("rdf_counts.npz", _rdf, RDFCounts.load, True),
    "macro parameters": ("params-v0001.npz", lambda p: save_parameters(p, default_parameters()), load_parameters, True),
    "event history": ("history.csv", _history, read_history, True),
    "checkpoint manifest": ("manifest-000001.json", _checkpoint, lambda p: checkpoint.load(p.parent), True),
    "RDF table ids": ("sims.txt", _rdf_table_ids, _open_rdf_table, True),
    "latent cache": ("frame.npz", lambda p: write_latents(p, ["p-1", "p-2"], RNG.random((2, 15))), read_latents, True),
    "macro frame": ("frame.h5", lambda p: write_frame(p.parent, _frame()).rename(p), read_frame, False),
    "patch file": (
        "patches.h5",
        lambda p: write_patches(p.parent, extract_patches(_frame())).rename(p),
        read_patches,
        False,
    ),
}


def _valid(kind: str) -> bytes:
    name, write, _, _ = READERS[kind]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        write(path)
        return path.read_bytes()


VALID = {kind: _valid(kind) for kind in READERS}


def _read(kind: str, data: bytes) -> None:
    name, write, read, _ = READERS[kind]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        write(path)  # the rest of a file set (a checkpoint's arrays, a table's rows) stays whole
        path.write_bytes(data)
        try:
            read(path)
        except UnreadableFileError as err:
            assert str(path) in str(err) or str(path.parent) in str(err), err


FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("kind", list(READERS))
def test_the_valid_file_reads(kind: str) -> None:
    name, write, read, _ = READERS[kind]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        write(path)
        assert read(path) is not None


@pytest.mark.parametrize("kind", list(READERS))
@FUZZ
@given(data=st.data())
def test_a_file_cut_short_reads_or_is_refused(kind: str, data: st.DataObject) -> None:
    valid = VALID[kind]
    _read(kind, valid[: data.draw(st.integers(0, len(valid) - 1))])


@pytest.mark.parametrize("kind", [kind for kind, (_, _, _, flips) in READERS.items() if flips])
@FUZZ
@given(data=st.data())
def test_a_file_with_bytes_overwritten_reads_or_is_refused(kind: str, data: st.DataObject) -> None:
    damaged = bytearray(VALID[kind])
    for _ in range(data.draw(st.integers(1, 4))):
        damaged[data.draw(st.integers(0, len(damaged) - 1))] = data.draw(st.integers(0, 255))
    _read(kind, bytes(damaged))


@pytest.mark.parametrize("kind", list(READERS))
@FUZZ
@given(junk=st.binary(max_size=600) | st.text(max_size=300).map(str.encode))
def test_arbitrary_bytes_read_or_are_refused(kind: str, junk: bytes) -> None:
    _read(kind, junk)


def test_json_that_is_not_a_record_reads_as_absent(tmp_path: Path) -> None:
    path = tmp_path / "sim.status.json"
    for text in ("[]", '"done"', "{}", json.dumps({"state": "exploded"}), "{"):
        path.write_text(text)
        assert read_status_record(path) is None
