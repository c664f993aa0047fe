"""Shared test helpers.

Tests that need an external program (GROMACS, Slurm, Flux) call ``require_program``:
they skip when it is absent, except under ``MUMMI_REQUIRE_EXTERNAL=1`` (set by
CI), where they fail instead, so CI can never go green by skipping them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

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


#: Each "node" of the Flux test instance: 2 cores, 2 fake GPUs (flux-core's resource config).
FLUX_NODES, FLUX_CORES_PER_NODE, FLUX_GPUS_PER_NODE = 4, 2, 2


@pytest.fixture(scope="session")
def flux_instance() -> Iterator[str]:
    """A 4-broker Flux instance on this machine (nodes node[0-3], 8 fake GPUs); yields its URI."""
    require_program("flux", "flux-core is needed (.ci/run builds it into /opt/flux)")
    from mummi.adapters.flux import local_instance

    with local_instance(FLUX_NODES, FLUX_CORES_PER_NODE, FLUX_GPUS_PER_NODE) as uri:
        yield uri


#: GPUs of the one-node test cluster (.ci/slurm-cluster.sh).
SLURM_GPUS = 4


@pytest.fixture(scope="module")
def slurm_allocation() -> Iterator[str]:
    """A whole-node allocation on the test cluster, held for one test module; yields its job id."""
    salloc = require_program("salloc", "a Slurm cluster is needed (.ci/slurm-cluster.sh start)")
    done = subprocess.run(
        [salloc, "--no-shell", "-N1", "--exclusive", f"--gres=gpu:{SLURM_GPUS}", "--time=30", "-J", "mummi-tests"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    match = re.search(r"Granted job allocation (\d+)", done.stdout + done.stderr)
    if match is None:
        pytest.fail(f"salloc failed: {done.stderr.strip()}")
    job_id = match.group(1)
    yield job_id
    subprocess.run(["scancel", job_id], capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module: on a small, shared box two spinning threads are slower than one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def finished_dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    """The tiny campaign (campaign_helpers.SPEC) run once to its end with ``--dry-run``: its folder (the spec is
    ``tiny.yaml``, the run ``run/``), exit code and output. Tests that read a finished campaign share it; tests
    that kill, fill or otherwise disturb one run their own."""
    from campaign_helpers import SPEC, finish, mummi

    folder = tmp_path_factory.mktemp("dry-run")
    (folder / "tiny.yaml").write_text(SPEC)
    code, out = finish(mummi("tiny.yaml", "--dry-run", cwd=folder))
    return folder, code, out
