"""ddcMD: inputs for a known system, its particle files (a real one from ddcMD's examples, binary
subset files from ddcMD's layout), the launch command, restarts, and the in situ analysis following
and resuming a run (a fake ddcMD executable that writes real-format files)."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import struct
import sys
import threading
import time
from pathlib import Path

import MDAnalysis as mda
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from micro_helpers import make_spec

from mummi.adapters.ddcmd import SNAPSHOT, DdcmdEngine, latest_checkpoint, parse_topology, write_inputs
from mummi.adapters.ddcmd_snapshot import (
    FORMAT,
    Snapshot,
    complete_frames,
    frame_positions,
    is_complete,
    parse_header,
    particle_file_contents,
    read_snapshot,
    subset_file_contents,
    write_file_set,
)
from mummi.adapters.md_engine import open_universe
from mummi.analysis.insitu import analyse_sim
from mummi.core.simdir import FEATURES, RDF_COUNTS, read_status, write_status
from mummi.core.states import Outcome
from mummi.core.unreadable import UnreadableFileError

DATA = Path(__file__).parent / "data" / "ddcmd"
WATERBOX = DATA / "waterbox" / "atoms#000000"
SECTIONS = {
    "createsim": {"engine": "gromacs"},
    "sim": {"engine": "ddcmd", "length_ns": 0.1, "output_interval_ps": 10.0, "ddcmd": {"checkpoint_every_frames": 2}},
    "analysis": {"leaflet": "both", "write_every_frames": 2, "poll_interval_s": 0.02, "r_max_nm": 2.0, "bin_nm": 0.1},
}
NSTEPS, CHECKPOINT_EVERY, OUTPUT_EVERY, DT_FS = 5000, 1000, 500, 20.0  # 0.1 ns at 20 fs, 10 ps frames
N_FRAMES = NSTEPS // OUTPUT_EVERY

# Stands in for ddcMD. Records how it was called, then runs from the loop its restart link
# names to maxloop as ddcMD's loop does: at each checkpointrate loop a checkpoint directory
# (atoms#000000 in ASCII, restart) and the restart link moved to it, then at each outputrate
# loop the subsetWrite file (binary, ddcMD's layout), written in place in two halves.
# Positions are the initial ones moved by a function of the loop, so a rerun rewrites the
# same frames. FAKE_DDCMD_CHECKPOINTS=N: the allocation ends after N checkpoints;
# FAKE_DDCMD_OUTPUTS_AFTER_LAST=K: then K more outputs, the last cut short (killed mid-write);
# FAKE_DDCMD_DELAY: seconds between the halves of a file; FAKE_DDCMD_HANG=1: hangs.
FAKE = r"""#!{python}
import json, os, re, sys, time
from pathlib import Path

import numpy as np

from mummi.adapters.ddcmd_snapshot import (
    Snapshot, particle_file_contents, read_object_file, read_snapshot, subset_file_contents, write_file_set,
)

if os.environ.get("FAKE_DDCMD_HANG") == "1":
    time.sleep(600)
objects = {name: keys for name, _, keys in read_object_file(Path("object.data"))}
simulate, output = objects["simulate"], objects["writeCharmm"]
maxloop, dt_fs, checkpoint_rate = int(simulate["maxloop"]), float(simulate["dt"]), int(simulate["checkpointrate"])
output_rate, name = int(output["outputrate"]), output.get("filename", "subset")
start = int(re.search(r"loop=(\d+)", Path("restart").read_text()).group(1))
with open("calls.jsonl", "a") as fh:
    call = {"argv": sys.argv[1:], "launcher": os.environ.get("LAUNCHED_BY"), "start": start,
            "restart": os.readlink("restart")}
    fh.write(json.dumps(call) + "\n")
initial = read_snapshot("snapshot.000000000000/atoms#000000")
checkpoints_left = int(os.environ.get("FAKE_DDCMD_CHECKPOINTS", "1000000"))
outputs_after_last = int(os.environ.get("FAKE_DDCMD_OUTPUTS_AFTER_LAST", "0"))
delay = float(os.environ.get("FAKE_DDCMD_DELAY", "0"))


def state(loop):
    moved = initial.positions + 3.0 * np.sin(0.001 * loop + np.arange(len(initial.ids))[:, None] * [0.7, 1.3, 2.1])
    in_box = initial.corner + np.mod(moved - initial.corner, np.diag(initial.h))  # backInBox
    return Snapshot(loop, loop * dt_fs, initial.h, initial.ids, in_box, initial.species, initial.groups)


def snapshot_dir(loop):
    path = Path(f"snapshot.{loop:012d}")
    path.mkdir(exist_ok=True)
    return path


def write_checkpoint(snap):
    d = snapshot_dir(snap.loop)
    write_file_set(d / "atoms#", particle_file_contents(snap))
    (d / "restart").write_text(f"simulate SIMULATE {{ loop={snap.loop}; time={snap.time_fs:f} fs;}}\n")
    Path("restart").unlink()
    Path("restart").symlink_to(d / "restart")


def write_output(snap, torn=False):
    (content,) = subset_file_contents(snap)
    with open(snapshot_dir(snap.loop) / f"{name}#000000", "wb") as f:
        f.write(content[: len(content) // 2])
        f.flush()
        if torn:
            return
        time.sleep(delay)
        f.write(content[len(content) // 2 :])


for loop in range(start + output_rate, maxloop + 1, output_rate):
    snap = state(loop)
    if checkpoints_left == 0:
        if outputs_after_last == 0:
            break
        outputs_after_last -= 1
        write_output(snap, torn=outputs_after_last == 0)
        continue
    if loop % checkpoint_rate == 0:
        write_checkpoint(snap)
        checkpoints_left -= 1
    write_output(snap)
"""


def _sim_dir(root: Path, name: str = "sim-0001") -> Path:
    sim_dir = root / "sims" / name
    sim_dir.mkdir(parents=True)
    for file in ("topol_pp.top", "eq.gro"):
        shutil.copyfile(DATA / "known" / file, sim_dir / file)
    return sim_dir


def _records(path: Path) -> list[list[str]]:
    """The record lines of an ASCII particle file, split into words, read without the reader under test."""
    lines = path.read_text().splitlines()
    return [line.split() for line in lines[lines.index("") + 1 :]]


# ----------------------------------------------------------------- inputs
def test_inputs_for_a_known_system_match_the_expected_files(tmp_path) -> None:
    spec, _ = make_spec(tmp_path, SECTIONS)
    workdir = tmp_path / "ddcmd"
    write_inputs(workdir, DATA / "known", spec, seed=7)
    expected = DATA / "expected"
    for name in ("object.data", "martini.data", "molecule.data"):
        assert (workdir / name).read_text() == (expected / name).read_text(), name
    for name in ("restart", "atoms#000000"):
        assert (workdir / SNAPSHOT.format(loop=0) / name).read_text() == (expected / "snapshot" / name).read_text(), (
            name
        )


def test_unsupported_topology_sections_are_named() -> None:
    with pytest.raises(NotImplementedError, match="dihedrals"):
        parse_topology("[ moleculetype ]\n X 1\n[ dihedrals ]\n 1 2 3 4 1 0 1 1\n")
    with pytest.raises(ValueError, match="preprocessed"):
        parse_topology('#include "martini.itp"\n')


def test_the_inputs_read_back_as_the_equilibrated_structure_in_topology_order(tmp_path) -> None:
    spec, _ = make_spec(tmp_path, SECTIONS)
    write_inputs(tmp_path / "ddcmd", DATA / "known", spec, seed=7)
    atoms = tmp_path / "ddcmd" / SNAPSHOT.format(loop=0) / "atoms#000000"
    snapshot = read_snapshot(atoms)
    shuffled = tmp_path / "shuffled#000000"
    order = np.random.default_rng(1).permutation(len(snapshot.ids))
    reordered = Snapshot(0, 0.0, snapshot.h, snapshot.ids[order], snapshot.positions[order], snapshot.species[order],
                         snapshot.groups[order], snapshot.velocities[order])  # fmt: skip
    write_file_set(shuffled, particle_file_contents(reordered))
    gro = open_universe(DATA / "known" / "eq.gro")
    for path in (atoms, shuffled):
        u = mda.Universe(str(DATA / "known" / "eq.gro"), str(path), format=FORMAT)
        np.testing.assert_allclose(u.atoms.positions, gro.atoms.positions, atol=1e-4)
        np.testing.assert_allclose(u.atoms.velocities, gro.atoms.velocities, atol=1e-4)
        np.testing.assert_allclose(u.dimensions, gro.dimensions)


# ------------------------------------------------------ the particle files
def test_the_waterbox_snapshot_from_ddcmds_examples_reads_as_written() -> None:
    records = _records(WATERBOX)
    snapshot = read_snapshot(WATERBOX)
    assert len(snapshot.ids) == len(records) == 6173 and is_complete(WATERBOX)
    np.testing.assert_array_equal(snapshot.h, np.diag([93.858] * 3))
    np.testing.assert_array_equal(snapshot.ids, np.arange(6173, dtype=np.uint64) << np.uint64(32))
    for i in (0, -1):
        np.testing.assert_array_equal(snapshot.positions[i], [float(x) for x in records[i][4:7]])
    assert snapshot.species[0] == records[0][2] == "WxW" and snapshot.species[-1] == records[-1][2] == "WFxWF"
    assert (snapshot.loop, snapshot.time_fs, set(snapshot.groups)) == (0, 0.0, {"group"})

    u = mda.Universe.empty(6173, trajectory=False)
    u.load_new(str(WATERBOX), format=FORMAT)
    assert len(u.trajectory) == 1 and u.trajectory.time == 0.0
    np.testing.assert_allclose(u.dimensions, [93.858] * 3 + [90.0] * 3, rtol=1e-6)
    for i in (0, -1):  # centred on 0 in the file; from the box corner (-L/2), wrapped into [0, L), for MDAnalysis
        expected = np.mod(np.array([float(x) for x in records[i][4:7]]) + 93.858 / 2, 93.858)
        np.testing.assert_allclose(u.atoms.positions[i], expected, atol=1e-4)
    assert u.atoms.positions.min() >= 0 and u.atoms.positions.max() < 93.858


def _frame(n: int = 60, seed: int = 3) -> Snapshot:
    """A frame whose positions minus the box corner are float32 values, so a binary file holds them exactly."""
    rng = np.random.default_rng(seed)
    h = np.diag([40.0, 48.0, 100.0])
    relative = (rng.uniform(0, 1, (n, 3)) * np.diag(h)).astype(np.float32).astype(np.float64)
    ids = (rng.permutation(n).astype(np.uint64) << np.uint64(32)) + rng.integers(0, 4, n).astype(np.uint64)
    species = rng.choice(["RASxBB1", "POPCxNC3", "CHOLxROH"], n)
    groups = rng.choice(["group", "free"], n)
    return Snapshot(2500, 50000.0, h, ids, relative - np.diag(h) / 2, species, groups)


@pytest.mark.parametrize("nfiles, byteorder", [(1, "<"), (3, "<"), (2, ">")])
def test_a_binary_subset_file_holds_ddcmds_layout(tmp_path, nfiles, byteorder) -> None:
    frame = _frame()
    contents = subset_file_contents(frame, nfiles=nfiles, byteorder=byteorder)
    header = parse_header(contents[0])
    assert (header.name, header.datatype, header.lrec, header.nrecord, header.nfiles) == (
        "subset",
        "FIXRECORDBINARY",
        24,
        len(frame.ids),
        nfiles,
    )
    assert header.field_names == ("id", "pinfo", "rx", "ry", "rz")
    assert header.field_types == ("u8", "u4", "f4", "f4", "f4")
    assert header.field_units == ("1", "1", "Ang", "Ang", "Ang")
    assert header.byteorder == byteorder and contents[0][: header.length].endswith(b"}\n \n\n")
    pinfo = header.groups.index(frame.groups[0]) + len(header.groups) * header.species.index(frame.species[0])
    first = struct.pack(f"{byteorder}QIfff", int(frame.ids[0]), pinfo, *(frame.positions[0] - frame.corner))
    assert contents[0][header.length : header.length + 24] == first
    assert sum(len(c) for c in contents) == header.length + 24 * len(frame.ids)


@pytest.mark.parametrize("nfiles, byteorder", [(1, "<"), (3, "<"), (2, ">")])
@pytest.mark.parametrize("datatype", ["VARRECORDASCII", "FIXRECORDASCII"])
def test_a_binary_subset_file_reads_as_the_same_frame_written_as_ascii(tmp_path, nfiles, byteorder, datatype) -> None:
    frame = _frame()
    write_file_set(tmp_path / "subset#", subset_file_contents(frame, nfiles=nfiles, byteorder=byteorder))
    write_file_set(tmp_path / "atoms#", particle_file_contents(frame, datatype, nfiles=2))
    binary, ascii_ = read_snapshot(tmp_path / "subset#000000"), read_snapshot(tmp_path / "atoms#")
    assert is_complete(tmp_path / "subset#000000") and is_complete(tmp_path / "atoms#000000")
    for got in (binary, ascii_):
        np.testing.assert_array_equal(got.ids, frame.ids)
        np.testing.assert_array_equal(got.species, frame.species)
        np.testing.assert_array_equal(got.groups, frame.groups)
        np.testing.assert_allclose(got.positions, frame.positions, rtol=0, atol=1e-12)
        assert (got.loop, got.time_fs) == (frame.loop, frame.time_fs)
    np.testing.assert_array_equal(frame_positions(binary), frame_positions(ascii_))
    universes = []
    for path in ("subset#000000", "atoms#000000"):
        universes.append(mda.Universe.empty(len(frame.ids), trajectory=False))
        universes[-1].load_new(str(tmp_path / path), format=FORMAT)
    np.testing.assert_array_equal(universes[0].atoms.positions, universes[1].atoms.positions)
    assert universes[0].trajectory.time == universes[1].trajectory.time == 50.0  # ps
    order = np.argsort(frame.ids)  # atoms in id order, from the box corner
    np.testing.assert_allclose(universes[0].atoms.positions, (frame.positions - frame.corner)[order], atol=1e-5)


def _subset_bytes() -> bytes:
    return subset_file_contents(_frame(n=10))[0]


BROKEN = {
    "records cut short": lambda b: b[:-5],
    "a record too many": lambda b: b + b[-24:],
    "header cut short": lambda b: b[:40],
    "no nrecord": lambda b: b.replace(b"nrecord=10; ", b""),
    "foreign endian_key": lambda b: b.replace(b"endian_key=875770417", b"endian_key=12345"),
    "unknown datatype": lambda b: b.replace(b"FIXRECORDBINARY", b"VARRECORDBINARY"),
    "unknown field type": lambda b: b.replace(b" u8 u4", b" i8 u4"),
    "more part files than there are": lambda b: b.replace(b"nfiles=1;", b"nfiles=3;"),
    "pinfo past the species": lambda b: re.sub(rb"species = [^;]*;", b"species = X ;", b),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_particle_file_is_refused_naming_the_file(tmp_path, kind) -> None:
    path = tmp_path / "subset#000000"
    path.write_bytes(BROKEN[kind](_subset_bytes()))
    with pytest.raises(UnreadableFileError, match=re.escape(str(path))):
        read_snapshot(path)
    if kind in ("records cut short", "header cut short", "more part files than there are"):
        assert not is_complete(path)  # being written: wait for it


def test_a_short_ascii_record_is_refused(tmp_path) -> None:
    (content,) = particle_file_contents(_frame(n=5))
    lines = content.decode().split("\n")
    lines[-3] = " ".join(lines[-3].split()[:6])
    path = tmp_path / "atoms#000000"
    path.write_text("\n".join(lines))
    with pytest.raises(UnreadableFileError, match="record 3 has 6 fields"):
        read_snapshot(path)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_damaged_subset_file_reads_or_is_refused(tmp_path, data) -> None:
    content = bytearray(_subset_bytes())
    cut = data.draw(st.integers(0, len(content)))
    for _ in range(data.draw(st.integers(0, 4))):
        content[data.draw(st.integers(0, len(content) - 1))] = data.draw(st.integers(0, 255))
    path = tmp_path / "subset#000000"
    path.write_bytes(bytes(content[:cut]))
    try:
        is_complete(path)
        read_snapshot(path)
    except UnreadableFileError:
        pass


# ------------------------------------------------------------- running ddcMD
@pytest.fixture(scope="module")
def fake_ddcmd(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bin") / "fake_ddcMD"
    path.write_text(FAKE.replace("{python}", sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _spec(tmp_path: Path, fake: Path, **ddcmd):
    sim = SECTIONS["sim"] | {"ddcmd": {"executable": str(fake), "checkpoint_every_frames": 2, **ddcmd}}
    return make_spec(tmp_path, SECTIONS | {"sim": sim})[0]


def _calls(sim_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (sim_dir / "ddcmd" / "calls.jsonl").read_text().splitlines()]


def test_launch_command_and_restart_from_the_newest_checkpoint(tmp_path, fake_ddcmd, monkeypatch) -> None:
    spec = _spec(tmp_path, fake_ddcmd, launcher=["env", "LAUNCHED_BY=env"])
    sim_dir = _sim_dir(tmp_path)
    engine = DdcmdEngine()
    monkeypatch.setenv("FAKE_DDCMD_CHECKPOINTS", "2")  # the allocation ends after two checkpoints
    assert engine.production(sim_dir, spec, seed=7, deadline=None) is False
    assert latest_checkpoint(sim_dir / "ddcmd")[0] == 2 * CHECKPOINT_EVERY
    monkeypatch.delenv("FAKE_DDCMD_CHECKPOINTS")
    assert engine.production(sim_dir, spec, seed=7, deadline=None) is True
    assert engine.production(sim_dir, spec, seed=7, deadline=None) is True  # finished: no third launch
    calls = _calls(sim_dir)
    assert [c["start"] for c in calls] == [0, 2 * CHECKPOINT_EVERY]
    assert [c["restart"] for c in calls] == ["snapshot.000000000000/restart", "snapshot.000000002000/restart"]
    assert all(c["argv"] == ["-o", "object.data", "molecule.data"] and c["launcher"] == "env" for c in calls)
    assert latest_checkpoint(sim_dir / "ddcmd")[0] == NSTEPS


def test_a_run_past_its_deadline_is_stopped(tmp_path, fake_ddcmd, monkeypatch) -> None:
    spec = _spec(tmp_path, fake_ddcmd)
    sim_dir = _sim_dir(tmp_path)
    monkeypatch.setenv("FAKE_DDCMD_HANG", "1")
    start = time.monotonic()
    assert DdcmdEngine().production(sim_dir, spec, seed=7, deadline=time.monotonic() + 1.0) is False
    assert time.monotonic() - start < 30
    assert os.path.islink(sim_dir / "ddcmd" / "restart")


def _finish(sim_dir: Path, spec) -> None:
    assert DdcmdEngine().production(sim_dir, spec, seed=7, deadline=None) is True
    write_status(sim_dir, "sim", Outcome.DONE, engine="ddcmd")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, fake_ddcmd):
    """An uninterrupted ddcMD run, analysed after it finished."""
    root = tmp_path_factory.mktemp("reference")
    spec = _spec(root, fake_ddcmd)
    sim_dir = _sim_dir(root)
    _finish(sim_dir, spec)
    return spec, sim_dir, analyse_sim(sim_dir, spec)


def test_the_frames_of_a_ddcmd_run_are_its_subset_files_in_loop_order(reference) -> None:
    _, sim_dir, counts = reference
    frames = complete_frames(sim_dir / "ddcmd")
    assert [f.parent.name for f in frames] == [SNAPSHOT.format(loop=OUTPUT_EVERY * (i + 1)) for i in range(N_FRAMES)]
    u = open_universe(*DdcmdEngine().trajectory(sim_dir))
    assert len(u.trajectory) == N_FRAMES == counts.frames_done
    assert [ts.time for ts in u.trajectory] == pytest.approx([OUTPUT_EVERY * (i + 1) * DT_FS / 1000 for i in range(10)])
    # ddcMD keeps the system centred on its box corner (-L/2); the frames line up with eq.gro again
    gro = open_universe(sim_dir / "eq.gro").atoms.positions
    u.trajectory[0]
    assert np.abs(u.atoms.positions - gro).max() < 3.0 + 1e-3
    with np.load(sim_dir / FEATURES) as f:
        np.testing.assert_allclose(f["time_ps"], [10.0 * (i + 1) for i in range(N_FRAMES)])
    assert read_status(sim_dir, "analysis")["frames"] == N_FRAMES


def _assert_same_analysis(sim_dir: Path, reference) -> None:
    _, ref_dir, counts = reference
    with np.load(sim_dir / RDF_COUNTS) as d:
        assert int(d["frames_done"]) == counts.frames_done == N_FRAMES
        np.testing.assert_array_equal(d["counts"], counts.counts)
        np.testing.assert_allclose(d["pair_density"], counts.pair_density)
    with np.load(sim_dir / FEATURES) as got, np.load(ref_dir / FEATURES) as want:
        for key in want.files:
            np.testing.assert_array_equal(got[key], want[key])
    assert read_status(sim_dir, "analysis")["state"] == Outcome.DONE


def test_the_analysis_follows_a_running_ddcmd(tmp_path, reference, monkeypatch) -> None:
    spec = reference[0]
    sim_dir = _sim_dir(tmp_path)
    errors: list[BaseException] = []

    def follow() -> None:
        try:
            analyse_sim(sim_dir, spec, follow=True)
        except BaseException as err:  # reported by the test thread
            errors.append(err)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    monkeypatch.setenv("FAKE_DDCMD_DELAY", "0.05")  # the follower sees files half written
    _finish(sim_dir, spec)
    follower.join(timeout=120)
    assert not follower.is_alive() and not errors, errors
    _assert_same_analysis(sim_dir, reference)


def test_a_killed_ddcmd_is_analysed_after_its_restart_without_losing_or_recounting_frames(
    tmp_path, reference, monkeypatch
) -> None:
    spec = reference[0]
    sim_dir = _sim_dir(tmp_path)
    monkeypatch.setenv("FAKE_DDCMD_CHECKPOINTS", "2")  # checkpoint at loop 2000, outputs 2500 and 3000, 3500 cut
    monkeypatch.setenv("FAKE_DDCMD_OUTPUTS_AFTER_LAST", "3")
    assert DdcmdEngine().production(sim_dir, spec, seed=7, deadline=None) is False
    frames = complete_frames(sim_dir / "ddcmd")
    assert len(frames) == 6 and (sim_dir / "ddcmd" / SNAPSHOT.format(loop=3500) / "subset#000000").exists()
    analyse_sim(sim_dir, spec)  # leaves the newest complete frame for later: five, loop 2500 past the checkpoint
    with np.load(sim_dir / RDF_COUNTS) as d:
        assert int(d["frames_done"]) == 5
    monkeypatch.delenv("FAKE_DDCMD_CHECKPOINTS")
    monkeypatch.delenv("FAKE_DDCMD_OUTPUTS_AFTER_LAST")
    _finish(sim_dir, spec)  # reruns from loop 2000 and rewrites 2500 ...
    assert [c["start"] for c in _calls(sim_dir)] == [0, 2 * CHECKPOINT_EVERY]
    analyse_sim(sim_dir, spec)
    _assert_same_analysis(sim_dir, reference)
