"""mummi-run and mummi-status from the command line, and the campaign directory they manage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from mummi.core.exit_codes import EXIT_OK, EXIT_USAGE, EXIT_WORKDIR
from mummi.core.layout import SUBDIRS
from mummi.core.spec_loader import default_spec_path, load_spec
from mummi.workflow.campaign import CampaignError, prepare
from mummi.workflow.cli import run_main, status_main


def spec_file(tmp_path: Path, name: str = "tiny", workdir: str = "run") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"campaign:\n  name: {name}\n  workdir: {workdir}\n")
    return path


def console_script(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is not installed (pip install -e .)"
    return found


def test_validate_prints_resolved_settings(capsys):
    assert run_main([str(default_spec_path()), "--validate"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "valid" in out and "candidate_cap: 35000" in out and "block_widths: [7, 7, 9, 7, 7]" in out


def test_invalid_spec_exits_2_through_the_console_script(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("campaign:\n  name: x\n  workdir: w\nsampler:\n  candidate_cap: -5\n")
    out = subprocess.run(
        [console_script("mummi-run"), str(bad), "--validate"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == EXIT_USAGE
    assert f"{bad}:5: sampler.candidate_cap: Input should be greater than 0 (got -5)" in out.stderr
    assert not (tmp_path / "w").exists()


def test_a_spec_whose_allocation_holds_no_sim_is_refused_before_anything_is_written(tmp_path, capsys):
    laptop = yaml.safe_load(default_spec_path().read_text())
    laptop["campaign"]["workdir"] = "w"
    laptop["macro"]["resources"] = {"gpus_per_task": 1}
    laptop["sim"]["resources"] = {"gpus_per_task": 2}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(laptop, sort_keys=False))
    line = next(i for i, text in enumerate(bad.read_text().splitlines(), 1) if "gpus_per_task: 2" in text)
    for extra in (["--validate"], ["--dry-run"], []):
        assert run_main([str(bad), *extra]) == EXIT_USAGE
        err = capsys.readouterr().err
        assert f"{bad}:{line}: sim.resources.gpus_per_task: the allocation leaves no room for one sim" in err
        assert "lower sim.resources.gpus_per_task" in err
        assert not (tmp_path / "w").exists()


def saved_metric_model(directory: Path) -> Path:
    """A small learned-metric model saved in ``directory`` (as a campaign saves the one it trains)."""
    from mummi.sampler.metric import MetricArchitecture, MetricEncoder, PatchMetricNet
    from mummi.sampler.patchdata import ChannelRange

    scaling = ChannelRange(low=np.zeros(14, np.float32), span=np.ones(14, np.float32))
    return MetricEncoder(PatchMetricNet(MetricArchitecture(grid=9)), scaling).save(directory)


def test_a_saved_encoder_of_another_kind_is_refused_before_anything_is_written(tmp_path, capsys):
    saved = saved_metric_model(tmp_path / "run" / "sampler" / "encoder")
    vae = spec_file(tmp_path)  # encoder.kind: vae, the default
    for extra in (["--validate"], ["--dry-run"]):
        assert run_main([str(vae), *extra]) == EXIT_USAGE
        err = capsys.readouterr().err
        assert f"{vae}: encoder.kind: the campaign's saved model {saved / 'encoder.json'} was trained for " in err
        assert "encoder.kind 'metric', but the spec asks for 'vae'" in err
        assert f"delete the model ({saved}) to train a 'vae' one, or set encoder.kind: metric" in err
        assert not (tmp_path / "run" / "campaign.db").exists()
    given = tmp_path / "given.yaml"
    given.write_text(f"campaign:\n  name: tiny\n  workdir: elsewhere\nencoder: {{model: {saved}}}\n")
    assert run_main([str(given), "--validate"]) == EXIT_USAGE
    assert "set encoder.kind: metric, or give a 'vae' model" in capsys.readouterr().err
    metric = tmp_path / "metric.yaml"
    metric.write_text("campaign:\n  name: tiny\n  workdir: run\nencoder: {kind: metric}\n")
    assert run_main([str(metric), "--validate"]) == EXIT_OK


def test_fresh_force_validates_a_spec_whose_campaign_it_deletes_with_its_saved_encoder(tmp_path):
    vae = spec_file(tmp_path)
    prepare(load_spec(vae))[1].close()
    saved_metric_model(tmp_path / "run" / "sampler" / "encoder")
    assert run_main([str(vae), "--validate"]) == EXIT_USAGE
    assert run_main([str(vae), "--fresh", "--force", "--validate"]) == EXIT_OK


def test_missing_spec_exits_2(tmp_path, capsys):
    assert run_main([str(tmp_path / "none.yaml")]) == EXIT_USAGE
    assert "no such file" in capsys.readouterr().err


def test_force_without_fresh_is_a_usage_error(tmp_path):
    assert run_main([str(spec_file(tmp_path)), "--force"]) == EXIT_USAGE


def test_prepare_creates_the_layout_then_resumes(tmp_path):
    spec = load_spec(spec_file(tmp_path))
    cdir, store, resuming = prepare(spec)
    store.close()
    assert not resuming
    assert all((cdir.root / sub).is_dir() for sub in SUBDIRS)
    assert load_spec(cdir.spec_copy) == spec
    cdir, store, resuming = prepare(spec)
    with store:
        assert resuming and store.get_meta("runs") == 2
        assert [e.kind for e in store.events("campaign.resumed")] == ["campaign.resumed"]


def test_fresh_refuses_an_existing_campaign_and_leaves_it_intact(tmp_path, capsys):
    path = spec_file(tmp_path)
    cdir, store, _ = prepare(load_spec(path))
    store.add_patches([("p1", 0.0, 0, "f.h5")])
    store.close()
    (cdir.sims / "sim-1").mkdir()
    assert run_main([str(path), "--fresh"]) == EXIT_WORKDIR
    assert "already holds a campaign" in capsys.readouterr().err
    assert (cdir.sims / "sim-1").is_dir()
    _, store, resuming = prepare(load_spec(path))
    with store:
        assert resuming and store.patch_counts()["seen"] == 1


def test_fresh_force_replaces_only_the_campaign_files(tmp_path):
    spec = load_spec(spec_file(tmp_path))
    cdir, store, _ = prepare(spec)
    store.add_patches([("p1", 0.0, 0, "f.h5")])
    store.close()
    (cdir.sims / "sim-1").mkdir()
    (cdir.root / "notes.txt").write_text("mine")
    _, store, resuming = prepare(spec, fresh=True, force=True)
    with store:
        assert not resuming and store.patch_counts()["seen"] == 0
    assert not (cdir.sims / "sim-1").exists()
    assert (cdir.root / "notes.txt").read_text() == "mine"


def test_another_campaigns_workdir_is_refused(tmp_path):
    prepare(load_spec(spec_file(tmp_path, "first")))[1].close()
    with pytest.raises(CampaignError, match="holds campaign 'first', but the spec names 'second'"):
        prepare(load_spec(spec_file(tmp_path, "second")))


def test_status_table_and_json(tmp_path, capsys):
    spec = load_spec(spec_file(tmp_path))
    cdir, store, _ = prepare(spec)
    with store:
        store.add_patches([("p1", 0.0, 0, "f.h5"), ("p2", 0.0, 1, "f.h5")])
        store.record_selection("p1", "sim-000001", 1.5)
        round_no = store.start_feedback_round(1)
        store.finish_feedback_round(round_no, parameter_version=1, distance=0.25)
    assert status_main([str(cdir.root), "--json"]) == EXIT_OK
    status = json.loads(capsys.readouterr().out)
    assert status["campaign"] == "tiny"
    assert status["patches"] == {"seen": 1, "candidate": 0, "selected": 1, "discarded": 0, "total": 2}
    assert status["sims"]["selected"] == 1
    assert status["feedback_rounds"][0]["distance"] == 0.25
    env = {**os.environ, "COLUMNS": "120"}
    out = subprocess.run(
        [console_script("mummi-status"), str(cdir.root)], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "tiny" in out.stdout and "selected 1" in out.stdout and "0.25" in out.stdout


def test_status_of_a_folder_without_a_campaign(tmp_path, capsys):
    assert status_main([str(tmp_path)]) == EXIT_USAGE
    assert "no campaign database" in capsys.readouterr().err


def test_a_workdir_whose_store_is_not_a_campaigns_is_refused_and_left_as_it_is(tmp_path):
    from mummi.workflow.cli import run_main

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "campaign.db").write_bytes(b"someone else's file\n")
    spec = tmp_path / "c.yaml"
    spec.write_text("campaign:\n  name: x\n  workdir: run\n")
    assert run_main([str(spec), "--dry-run"]) == EXIT_WORKDIR
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["campaign.db"]
    assert (tmp_path / "run" / "campaign.db").read_bytes() == b"someone else's file\n"


def test_a_second_coordinator_on_a_running_campaign_is_refused(tmp_path, capsys):
    path = spec_file(tmp_path)
    cdir, store, _ = prepare(load_spec(path))
    store.close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from mummi.workflow.run_lock import hold; hold(sys.argv[1]); "
         "print('held', flush=True); time.sleep(120)", str(cdir.root)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        before = (cdir.db.stat().st_mtime_ns, cdir.db.stat().st_size)
        assert run_main([str(path)]) == EXIT_WORKDIR
        message = capsys.readouterr().err
        assert f"pid {holder.pid}" in message and "another mummi-run" in message and str(cdir.root) in message
        assert (cdir.db.stat().st_mtime_ns, cdir.db.stat().st_size) == before
        assert run_main([str(path), "--fresh", "--force"]) == EXIT_WORKDIR  # nor deleted under its feet
        assert cdir.db.is_file()
    finally:
        holder.kill()
        holder.wait()
    _, store, resuming = prepare(load_spec(path))  # a killed holder's lock dies with it
    store.close()
    assert resuming
