"""ddcMD engine: inputs for a known system, the launch command, restarts (fake ddcMD executable)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import time
from pathlib import Path

import pytest
from micro_helpers import make_spec

from mummi.adapters.ddcmd import SNAPSHOT, DdcmdEngine, latest_checkpoint, parse_topology, write_inputs

DATA = Path(__file__).parent / "data" / "ddcmd"
SECTIONS = {
    "createsim": {"engine": "gromacs"},
    "sim": {"engine": "ddcmd", "length_ns": 0.1, "output_interval_ps": 10.0, "ddcmd": {"checkpoint_every_frames": 2}},
}
NSTEPS, CHECKPOINT_EVERY = 5000, 1000  # 0.1 ns at 20 fs; 2 frames of 500 steps

# Stands in for ddcMD: records how it was called, then writes a checkpoint directory
# (restart + atoms file) every checkpointrate loops from the one its restart link names,
# up to maxloop, or only FAKE_DDCMD_CHECKPOINTS of them; FAKE_DDCMD_HANG=1 makes it hang.
FAKE = """#!{python}
import json, os, re, sys, time
from pathlib import Path
if os.environ.get("FAKE_DDCMD_HANG") == "1":
    time.sleep(600)
obj = Path("object.data").read_text()
maxloop = int(re.search(r"maxloop = (\\d+)", obj).group(1))
rate = int(re.search(r"checkpointrate = (\\d+)", obj).group(1))
start = int(re.search(r"loop=(\\d+)", Path("restart").read_text()).group(1))
with open("calls.jsonl", "a") as fh:
    call = {{"argv": sys.argv[1:], "launcher": os.environ.get("LAUNCHED_BY"), "start": start,
            "restart": os.readlink("restart")}}
    fh.write(json.dumps(call) + "\\n")
limit = int(os.environ.get("FAKE_DDCMD_CHECKPOINTS", "1000000"))
for loop in range(start + rate, maxloop + 1, rate)[:limit]:
    d = Path(f"snapshot.{{loop:012d}}")
    d.mkdir()
    (d / "atoms#000000").write_text(Path("snapshot.000000000000/atoms#000000").read_text())
    (d / "restart").write_text(f"simulate SIMULATE {{{{ loop={{loop}}; time=0 ;}}}}\\n")
"""


def _sim_dir(tmp_path: Path) -> Path:
    sim_dir = tmp_path / "sims" / "sim-0001"
    sim_dir.mkdir(parents=True)
    for name in ("topol_pp.top", "eq.gro"):
        shutil.copyfile(DATA / "known" / name, sim_dir / name)
    return sim_dir


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


@pytest.fixture
def fake_ddcmd(tmp_path) -> Path:
    path = tmp_path / "fake_ddcMD"
    path.write_text(FAKE.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _calls(sim_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (sim_dir / "ddcmd" / "calls.jsonl").read_text().splitlines()]


def test_launch_command_and_restart_from_the_newest_checkpoint(tmp_path, fake_ddcmd, monkeypatch) -> None:
    spec, _ = make_spec(
        tmp_path,
        SECTIONS
        | {
            "sim": SECTIONS["sim"]
            | {
                "ddcmd": {
                    "executable": str(fake_ddcmd),
                    "launcher": ["env", "LAUNCHED_BY=env"],
                    "checkpoint_every_frames": 2,
                }
            }
        },
    )
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
    spec, _ = make_spec(tmp_path, SECTIONS | {"sim": SECTIONS["sim"] | {"ddcmd": {"executable": str(fake_ddcmd)}}})
    sim_dir = _sim_dir(tmp_path)
    monkeypatch.setenv("FAKE_DDCMD_HANG", "1")
    start = time.monotonic()
    assert DdcmdEngine().production(sim_dir, spec, seed=7, deadline=time.monotonic() + 1.0) is False
    assert time.monotonic() - start < 30
    assert os.path.islink(sim_dir / "ddcmd" / "restart")
