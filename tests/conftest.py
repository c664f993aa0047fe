"""Shared test helpers.

Tests that need an external program (GROMACS, Slurm) call ``require_program``:
they skip when it is absent, except under ``MUMMI_REQUIRE_EXTERNAL=1`` (set by
CI), where they fail instead, so CI can never go green by skipping them.
"""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_EXTERNAL = os.environ.get("MUMMI_REQUIRE_EXTERNAL") == "1"


def require_program(name: str, why: str = "") -> str:
    """Path of executable ``name``; skip (or fail under MUMMI_REQUIRE_EXTERNAL=1) without it."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found on PATH{': ' + why if why else ''}"
        if REQUIRE_EXTERNAL:
            pytest.fail(f"{message} (MUMMI_REQUIRE_EXTERNAL=1 forbids skipping)")
        pytest.skip(message)
    return path


@pytest.fixture
def gmx() -> str:
    return require_program("gmx", "GROMACS is needed (apt-get install gromacs)")
