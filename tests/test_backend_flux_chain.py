"""Chained allocations on Flux: a campaign in short `flux batch` jobs, each submitting the next, ends by itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from campaign_helpers import SPEC, check_campaign, events, follow_chain
from conftest import FLUX_CORES_PER_NODE, FLUX_GPUS_PER_NODE

pytestmark = [pytest.mark.external, pytest.mark.slow]


def test_a_campaign_chains_its_flux_batch_jobs_until_it_is_done(tmp_path: Path, flux_instance: str) -> None:
    flux = shutil.which("flux") or "flux"
    resources = (
        f"resources: {{backend: flux, nodes: 2, cores_per_node: {FLUX_CORES_PER_NODE}, "
        f"gpus_per_node: {FLUX_GPUS_PER_NODE}}}"
    )
    spec = SPEC.replace("resources: {cores_per_node: 8, gpus_per_node: 2}", resources)
    spec = spec.replace("  seed: 11\n", "  seed: 11\n  chain: 15\n")
    # One-minute batch jobs of which the campaign uses the first 21 s: it needs two or more.
    (tmp_path / "tiny.yaml").write_text(spec + "checkpoint: {end_margin_min: 0.65}\n")
    script = tmp_path / "campaign.sh"
    script.write_text(f"#!/bin/bash\nexec {sys.executable} -m mummi.workflow.cli tiny.yaml\n")
    env = {**os.environ, "FLUX_URI": flux_instance}
    first = subprocess.run(
        [flux, "batch", "-N2", "-t", "1m", f"--output={tmp_path}/chain-{{{{id}}}}.out", str(script)],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    db = tmp_path / "run" / "campaign.db"
    chained = follow_chain(
        db, lambda ids: subprocess.run([flux, "cancel", first, *ids], env=env, capture_output=True, timeout=60)
    )
    check_campaign(tmp_path / "run")
    stops = events(db, "campaign.stopped")
    assert len(stops) >= 2, "the campaign should have needed more than one batch job"
    assert len(chained) == len(stops) - 1, "each resumable stop submitted exactly one follow-up"
