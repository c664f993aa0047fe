"""Chained allocations: a campaign on short sbatch allocations, each submitting the next, ends with no human step."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from campaign_helpers import SPEC, check_campaign, events, follow_chain
from conftest import SLURM_GPUS, require_program

pytestmark = [pytest.mark.external, pytest.mark.slow]


def test_a_campaign_chains_its_allocations_until_it_is_done(tmp_path: Path) -> None:
    sbatch = require_program("sbatch", "a Slurm cluster is needed (.ci/slurm-cluster.sh start)")
    resources = f"resources: {{backend: slurm, nodes: 1, cores_per_node: 8, gpus_per_node: {SLURM_GPUS}}}"
    spec = SPEC.replace("resources: {cores_per_node: 8, gpus_per_node: 2}", resources)
    spec = spec.replace("  seed: 11\n", "  seed: 11\n  chain: 15\n")
    # One-minute allocations of which the campaign uses the first 21 s: it needs two or more.
    (tmp_path / "tiny.yaml").write_text(spec + "checkpoint: {end_margin_min: 0.65}\n")
    script = tmp_path / "campaign.sbatch"
    script.write_text(
        "#!/bin/bash\n#SBATCH -N1 --exclusive --gres=gpu:4 -t 1 -J mummi-chain -o chain-%j.out\n"
        f"exec {sys.executable} -m mummi.workflow.cli tiny.yaml\n"
    )
    first = subprocess.run([sbatch, "--parsable", str(script)], cwd=tmp_path, capture_output=True, text=True,
                           check=True, timeout=60).stdout.strip()  # fmt: skip
    db = tmp_path / "run" / "campaign.db"
    chained = follow_chain(db, lambda ids: subprocess.run(["scancel", first, *ids], capture_output=True, timeout=60))
    check_campaign(tmp_path / "run")
    stops = events(db, "campaign.stopped")
    assert len(stops) >= 2, "the campaign should have needed more than one allocation"
    assert len(chained) == len(stops) - 1, "each resumable stop submitted exactly one follow-up"
    runs = [p for p in tmp_path.glob("chain-*.out")]
    assert len(runs) == len(stops), "every allocation ran the campaign once"
