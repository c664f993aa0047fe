"""A regular (non-editable) install holds every subpackage and the data it needs."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MAPPED = ("workflow", "specs", "macro", "sampler", "jobs", "adapters", "analysis")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(REPO)],
        check=True,
        timeout=300,
    )
    (found,) = out.glob("mummi-*.whl")
    return found


def test_wheel_holds_every_package_and_the_specs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in MAPPED:
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.relative_to(REPO).as_posix()
            assert f"mummi/{rel}" in names, f"{rel} is missing from the wheel: list its package in pyproject.toml"
    assert "mummi/specs/laptop.yaml" in names
    assert not any(n.startswith(("mummi/tests/", "tests/")) for n in names)


def test_installed_wheel_imports_and_finds_its_default_spec(wheel, tmp_path):
    zipfile.ZipFile(wheel).extractall(tmp_path)
    code = (
        "import mummi, mummi.core.spec_loader as s;"
        "print(mummi.__file__); print(s.load_spec(s.default_spec_path()).campaign.name)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    location, name = out.stdout.split()
    assert Path(location).is_relative_to(tmp_path)
    assert name == "laptop"
