"""The bad-input corpus (``tests/data/bad-specs``): each spec is refused with exit 2, and nothing is made or changed.

Each file's first line says ``# expect: TEXT``: what the message must contain (the key at fault, or the
problem). The message must also name the file.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from mummi.core.exit_codes import EXIT_USAGE
from mummi.workflow.cli import run_main

CORPUS = Path(__file__).parent / "data" / "bad-specs"
SPECS = sorted(CORPUS.glob("*.yaml"))


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}  # fmt: skip


def test_the_corpus_is_large_enough() -> None:
    assert len(SPECS) >= 40


@pytest.mark.parametrize("original", SPECS, ids=lambda p: p.stem)
def test_a_bad_spec_exits_2_names_file_and_key_and_changes_nothing(
    original: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / original.name
    shutil.copy(original, spec)
    if original.with_suffix(".d").is_dir():  # files the spec names
        shutil.copytree(original.with_suffix(".d"), tmp_path / original.with_suffix(".d").name)
    expect = original.read_text().splitlines()[0].removeprefix("# expect: ")
    before = tree(tmp_path)
    assert run_main([str(spec), "--validate"]) == EXIT_USAGE  # the checks a run makes before it touches anything
    message = capsys.readouterr().err
    assert str(spec) in message and expect in message, message
    assert "Traceback" not in message
    assert tree(tmp_path) == before
