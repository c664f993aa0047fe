"""The package layout: imports run down only, and the shared vocabulary is defined once."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import get_args

from mummi.adapters.backend import BACKENDS
from mummi.adapters.md_engine import ENGINES
from mummi.core import spec

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "adapters", "jobs", "macro", "sampler", "analysis", "workflow")
BELOW_WORKFLOW = ("adapters", "jobs", "macro", "sampler", "analysis")


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Every module named by an import anywhere in ``path`` (also inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_scan_sees_every_package_and_catches_an_upward_import(tmp_path: Path) -> None:
    assert all(modules(p) for p in PACKAGES)
    upward = tmp_path / "m.py"
    upward.write_text("def f():\n    from mummi.workflow.store import StateStore\n")
    assert "mummi.workflow.store" in imported(upward)


def test_core_imports_no_other_part_of_mummi() -> None:
    bad = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in modules("core")
        for name in imported(path)
        if (name == "mummi" or name.startswith("mummi.")) and not name.startswith("mummi.core")
    }
    assert not bad, f"core/ must import only itself: {sorted(bad)}"


def test_nothing_below_the_coordinator_imports_it() -> None:
    bad = {
        f"{path.relative_to(ROOT)}: {name}"
        for package in BELOW_WORKFLOW
        for path in modules(package)
        for name in imported(path)
        if name == "mummi.workflow" or name.startswith("mummi.workflow.")
    }
    assert not bad, f"these import mummi.workflow, which sits above them: {sorted(bad)}"


def test_the_lipid_channel_table_has_one_definition() -> None:
    inner = r'"POPC",\s*"PAPC",\s*"POPE",\s*"DIPE",\s*"DPSM",\s*"PAPS",\s*"PAP6",\s*"CHOL"'
    outer = r'"POPC",\s*"PAPC",\s*"POPE",\s*"DIPE",\s*"DPSM",\s*"CHOL"'
    defining = {
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in modules(package)
        if re.search(inner, path.read_text()) or re.search(outer, path.read_text())
    }
    assert defining == {"core/lipids.py"}
    assigned = {
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in modules(package)
        for node in ast.parse(path.read_text()).body
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name) and target.id in {"CHANNELS", "CHANNEL_NAMES", "INNER_LIPIDS", "OUTER_LIPIDS"}
    }
    assert assigned == {"core/lipids.py"}


def test_exit_code_75_has_one_definition() -> None:
    defining = {
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in modules(package)
        if re.search(r"=\s*75\b", path.read_text())
    }
    assert defining == {"core/exit_codes.py"}


def test_every_backend_and_engine_the_spec_accepts_has_an_implementation() -> None:
    assert set(BACKENDS) == set(spec.BACKENDS)
    assert set(get_args(spec.SimEngine)) <= set(ENGINES)
    assert set(get_args(spec.SetupEngine)) <= set(ENGINES)
    assert set(spec.SETUP_ENGINE) == set(get_args(spec.SimEngine))
    assert set(spec.SETUP_ENGINE.values()) <= set(get_args(spec.SetupEngine))
