"""The campaign spec: defaults, strictness and error messages that say where and how to fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from mummi.core.spec import BACKENDS, CampaignSpec
from mummi.core.spec_loader import SpecError, default_spec_path, load_spec

MINIMAL = "campaign:\n  name: tiny\n  workdir: run\n"


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return str(info.value)


def test_laptop_spec_is_valid_and_round_trips(tmp_path):
    spec = load_spec(default_spec_path())
    assert spec.campaign.name == "laptop"
    assert spec.resources.backend == "local"
    again = write(tmp_path, spec.to_yaml())
    assert load_spec(again) == spec


def test_every_example_spec_is_valid(monkeypatch):
    monkeypatch.setenv("USER", "someone")
    specs = sorted(default_spec_path().parent.glob("*.yaml"))
    assert {p.name for p in specs} >= {"laptop.yaml", "slurm.yaml", "flux.yaml", "parsl.yaml"}
    for path in specs:
        load_spec(path)


def test_minimal_spec_gets_laptop_defaults(tmp_path):
    spec = load_spec(write(tmp_path, MINIMAL))
    assert spec.sampler.k == 10 and spec.sampler.candidate_cap == 35_000
    assert spec.patches.block_widths == [7, 7, 9, 7, 7] and spec.patches.coarse_points == 5
    assert spec.encoder.latent_dim == 15
    assert spec.analysis.bin_nm == 0.02 and spec.analysis.r_max_nm == 12.0


def test_relative_paths_resolve_against_the_spec_file(tmp_path, monkeypatch):
    sub = tmp_path / "specs"
    sub.mkdir()
    monkeypatch.chdir(tmp_path)
    (sub / "p").mkdir()
    (sub / "p" / "params.npz").write_bytes(b"")
    spec = load_spec(write(sub, MINIMAL + "macro:\n  parameters: p/params.npz\n"))
    assert spec.campaign.workdir == sub / "run"
    assert spec.macro.parameters == sub / "p" / "params.npz"


def test_dry_run_forces_local_backend_and_mock_engines(tmp_path):
    spec = load_spec(write(tmp_path, MINIMAL + "sim:\n  engine: gromacs\ncreatesim:\n  engine: gromacs\n"))
    dry = spec.for_dry_run()
    assert (dry.resources.backend, dry.sim.engine, dry.createsim.engine) == ("local", "mock", "mock")
    assert (spec.sim.engine, spec.createsim.engine) == ("gromacs", "gromacs")


def test_missing_file(tmp_path):
    msg = error_of(tmp_path / "nope.yaml")
    assert "nope.yaml" in msg and "no such file" in msg


def test_directory(tmp_path):
    assert "is a directory" in error_of(tmp_path)


def test_empty_file(tmp_path):
    msg = error_of(write(tmp_path, ""))
    assert "empty" in msg and "campaign" in msg


def test_malformed_yaml_names_line_and_column(tmp_path):
    msg = error_of(write(tmp_path, "campaign:\n  name: [unclosed\n  workdir: x\n"))
    assert "c.yaml:3:" in msg and "not valid YAML" in msg


def test_top_level_must_be_a_mapping(tmp_path):
    assert "top level must be a mapping" in error_of(write(tmp_path, "- a\n- b\n"))


def test_unknown_key_is_an_error_with_its_path_and_line(tmp_path):
    msg = error_of(write(tmp_path, MINIMAL + "sampler:\n  k: 5\n  candidate_capp: 100\n"))
    assert "c.yaml:6: sampler.candidate_capp: unknown key" in msg


def test_wrong_type_names_key_line_and_value(tmp_path):
    msg = error_of(write(tmp_path, MINIMAL + "sampler:\n  candidate_cap: lots\n"))
    assert "c.yaml:5: sampler.candidate_cap:" in msg
    assert "valid integer" in msg and "'lots'" in msg


def test_negative_count_says_what_is_allowed(tmp_path):
    msg = error_of(write(tmp_path, MINIMAL + "macro:\n  n_ras: -3\n"))
    assert "c.yaml:5: macro.n_ras:" in msg and "greater than or equal to 0" in msg and "-3" in msg


def test_unknown_backend_lists_the_allowed_ones(tmp_path):
    msg = error_of(write(tmp_path, MINIMAL + "resources:\n  backend: pbs\n"))
    assert "c.yaml:5: resources.backend:" in msg and "'pbs'" in msg
    for backend in BACKENDS:
        assert f"'{backend}'" in msg


def test_missing_required_key(tmp_path):
    msg = error_of(write(tmp_path, "campaign:\n  name: tiny\n"))
    assert "campaign.workdir: required key is missing" in msg


def test_all_problems_are_reported_at_once(tmp_path):
    msg = error_of(write(tmp_path, MINIMAL + "sampler:\n  k: 0\n  warmup: -1\n"))
    assert "2 problems" in msg and "sampler.k" in msg and "sampler.warmup" in msg


def test_cross_field_rules(tmp_path):
    assert "block_widths must sum to native_points" in error_of(
        write(tmp_path, MINIMAL + "patches:\n  block_widths: [7, 7, 7]\n")
    )
    assert "does not match patches.size_nm" in error_of(write(tmp_path, MINIMAL + "macro:\n  box_nm: 500.0\n"))
    assert "more GPUs per node" in error_of(write(tmp_path, MINIMAL + "resources:\n  gpus_per_node: 0\n"))
    assert "at least one of" in error_of(write(tmp_path, MINIMAL + "  stop: {max_sims: null}\n"))


def test_settings_are_immutable():
    spec = CampaignSpec.model_validate(yaml.safe_load(MINIMAL))
    with pytest.raises(ValidationError):
        spec.sampler.k = 3  # type: ignore[misc]


def test_environment_variables_in_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("SCRATCH_DIR", str(tmp_path / "scratch"))
    spec = load_spec(write(tmp_path, "campaign:\n  name: tiny\n  workdir: $SCRATCH_DIR/run\n"))
    assert spec.campaign.workdir == tmp_path / "scratch" / "run"
    monkeypatch.delenv("SCRATCH_DIR")
    assert "campaign.workdir: '$SCRATCH_DIR/run' names an environment variable that is not set" in error_of(
        tmp_path / "c.yaml"
    )
