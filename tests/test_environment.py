"""The external programs the suite relies on are really there and work (CI runs with MUMMI_REQUIRE_EXTERNAL=1)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from conftest import require_program

REPO = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```\n(.*?)\n```", readme, flags=re.S)
    assert len(blocks) == 2, "README holds exactly two commands: set-up + default campaign, and the tests"
    test_command = blocks[1].strip()
    assert test_command in (REPO / ".ci" / "run").read_text().splitlines()


def test_gromacs_runs(gmx):
    out = subprocess.run([gmx, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "GROMACS version" in out.stdout


def test_slurm_schedules_fake_gpus():
    srun = require_program("srun", "a Slurm cluster is needed (.ci/slurm-cluster.sh start)")
    out = subprocess.run(
        [srun, "--gres=gpu:2", "-n1", "--time=1", "printenv", "CUDA_VISIBLE_DEVICES"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip().split(",")) == 2
