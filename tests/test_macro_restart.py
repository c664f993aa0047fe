"""Checkpoint/restart, parameter versions and reloads, and the macro job."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from mummi.core.layout import CampaignLayout
from mummi.core.spec import MacroSettings
from mummi.core.spec_loader import load_spec
from mummi.jobs import macro as macro_job
from mummi.macro.driver import MacroRun
from mummi.macro.frames import list_frames, read_frame
from mummi.macro.model import MacroModel
from mummi.macro.params import (
    default_parameters,
    latest_parameters,
    load_parameters,
    parameter_versions,
    save_parameters,
    write_parameters,
)
from mummi.macro.patches import list_patch_files, read_patches

SPEC = {
    "campaign": {"name": "macro-test", "workdir": "W", "seed": 5},
    "macro": {
        "box_nm": 40.0,
        "grid_points": 48,
        "n_ras": 4,
        "ras_dt_ps": 500.0,
        "output_interval_ns": 100.0,
        "reload_interval_ns": 100.0,
        "checkpoint_interval_ns": 200.0,
        "ras_state_changes": True,
    },
}


def small(**kw: object) -> MacroSettings:
    return MacroSettings(**{**SPEC["macro"], **kw})


def snapshot(model: MacroModel) -> tuple[np.ndarray, ...]:
    return model.fields, model.ras_positions.copy(), model.ras_states.copy()


def test_restored_model_continues_bit_for_bit(tmp_path: Path) -> None:
    params = default_parameters()
    straight = MacroModel(params, small(), seed=9)
    straight.run_until(400.0)
    reference = snapshot(straight)

    first = MacroModel(params, small(), seed=9)
    first.run_until(200.0)
    first.checkpoint(tmp_path / "ckpt.npz")
    del first
    resumed = MacroModel.restore(tmp_path / "ckpt.npz", small())
    assert resumed.time_ns == 200.0
    resumed.run_until(400.0)
    for a, b in zip(reference, snapshot(resumed)):
        assert np.array_equal(a, b)
    # the checkpoint holds plain arrays only
    with np.load(tmp_path / "ckpt.npz", allow_pickle=False) as d:
        assert all(d[k].dtype != object for k in d.files)


def test_restore_refuses_other_dynamics(tmp_path: Path) -> None:
    MacroModel(default_parameters(), small(), seed=1).checkpoint(tmp_path / "c.npz")
    with pytest.raises(ValueError, match="dt_ns"):
        MacroModel.restore(tmp_path / "c.npz", small(dt_ns=10.0, output_interval_ns=100.0))


def test_parameter_versions(tmp_path: Path) -> None:
    d = tmp_path / "params"
    assert latest_parameters(d) is None
    p = default_parameters()
    assert write_parameters(d, p) == 1
    stronger = p.replace(pmf_kj_mol=2 * p.pmf_kj_mol)
    assert write_parameters(d, stronger) == 2
    assert parameter_versions(d) == [1, 2]
    latest = latest_parameters(d)
    assert latest is not None and latest.version == 2
    assert np.array_equal(latest.pmf_kj_mol, stronger.pmf_kj_mol)
    assert sorted(f.name for f in d.iterdir()) == ["params-v0001.npz", "params-v0002.npz"]
    with pytest.raises(ValueError, match="symmetric"):
        p.replace(local_kernel_kj_mol_nm2=np.triu(np.ones((14, 14))))
    with pytest.raises(ValueError, match="pmf_kj_mol must have shape"):
        p.replace(pmf_kj_mol=p.pmf_kj_mol[:, :3])
    save_parameters(tmp_path / "x.npz", p)
    assert np.array_equal(load_parameters(tmp_path / "x.npz").diffusion_nm2_per_ns, p.diffusion_nm2_per_ns)


def write_spec(tmp_path: Path, **macro: object) -> Path:
    spec = json.loads(json.dumps(SPEC))
    spec["macro"].update(macro)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_coupled_run_reloads_new_parameter_versions_and_stamps_frames(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path))
    run = MacroRun(spec, tmp_path / "W")
    run.run(until_ns=200.0)
    layout = run.layout
    new = latest_parameters(layout.macro_params)
    assert new is not None and new.version == 1
    write_parameters(layout.macro_params, new.replace(pmf_kj_mol=3 * new.pmf_kj_mol))
    run.run(until_ns=400.0)
    versions = [read_frame(f).param_version for f in list_frames(layout.macro_frames)]
    # t = 0..400 ns; v2 appeared after the reload point at 200 ns, is picked up at 300 ns and used from then on
    assert versions == [1, 1, 1, 1, 2]
    assert [read_patches(f, native=False).param_version for f in list_patch_files(layout.patches)] == versions

    uncoupled = MacroRun(spec, tmp_path / "U", coupled=False)
    write_parameters(uncoupled.layout.macro_params, new.replace(pmf_kj_mol=3 * new.pmf_kj_mol))  # version 2 appears
    uncoupled.run(until_ns=200.0)
    assert {read_frame(f).param_version for f in list_frames(uncoupled.layout.macro_frames)} == {1}


def test_macro_job_runs_resumes_and_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path)
    assert macro_job.main(["--spec", str(spec_path), "--workdir", str(tmp_path / "A"), "--until-ns", "600"]) == 0
    a = CampaignLayout(tmp_path / "A")
    status = json.loads(a.macro_status.read_text())
    assert status["state"] == "done" and status["time_ns"] == 600.0
    assert len(list_frames(a.macro_frames)) == 7 and len(list_patch_files(a.patches)) == 7
    patches = read_patches(list_patch_files(a.patches)[-1])
    assert patches.coarse.shape == (4, 5, 5, 14) and patches.ids[0] == "f000000000600-r0000"
    # a finished job does nothing when run again
    before = {p: p.stat().st_mtime_ns for p in a.macro_frames.iterdir()}
    assert macro_job.main(["--spec", str(spec_path), "--workdir", str(tmp_path / "A"), "--until-ns", "600"]) == 0
    assert before == {p: p.stat().st_mtime_ns for p in a.macro_frames.iterdir()}

    # interrupted at 300 ns (a clean stop), then resumed: the same frames
    spec = load_spec(spec_path)
    stops = iter([False] * 15 + [True])
    assert MacroRun(spec, tmp_path / "B").run(600.0, should_stop=lambda: next(stops)) is False
    assert MacroRun(spec, tmp_path / "B").run(600.0) is True
    b = CampaignLayout(tmp_path / "B")
    for fa, fb in zip(list_frames(a.macro_frames), list_frames(b.macro_frames), strict=True):
        x, y = read_frame(fa), read_frame(fb)
        assert (
            x.time_ns == y.time_ns
            and np.array_equal(x.fields, y.fields)
            and np.array_equal(x.ras_positions_nm, y.ras_positions_nm)
        )


def test_macro_job_reports_a_bad_spec(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("campaign: {name: x, workdir: W}\nmacro: {grid_points: 3}\n")
    assert macro_job.main(["--spec", str(bad)]) == 2
