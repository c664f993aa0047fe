"""A dry run with the learned metric of seed 002 in place of the VAE: the same end-of-campaign checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from campaign_helpers import SPEC, check_campaign, finish, mummi

from mummi.core.exit_codes import EXIT_USAGE

METRIC_SPEC = SPEC.replace("encoder:\n  training: {", "encoder:\n  kind: metric\n  training: {batch_size: 64, ")


@pytest.mark.slow
def test_dry_run_with_the_learned_metric_completes_the_whole_loop(tmp_path: Path) -> None:
    assert "kind: metric" in METRIC_SPEC
    (tmp_path / "tiny.yaml").write_text(METRIC_SPEC)
    code, out = finish(mummi("tiny.yaml", "--dry-run", cwd=tmp_path))
    assert code == 0, out[-4000:]
    run = tmp_path / "run"
    check_campaign(run)
    manifest = json.loads((run / "sampler" / "encoder" / "encoder.json").read_text())
    assert manifest["kind"] == "metric" and manifest["architecture"]["latent_dim"] == 9
    assert manifest["architecture"]["grid"] == 37  # trained on the native patches
    report = json.loads((run / "sampler" / "encoder" / "training.json").read_text())
    assert report["classes"].get("0", 0) > 0  # control patches from the pre-campaign frames
    caches = sorted((run / "patches" / "latents").glob("*.npz"))
    assert caches
    with np.load(caches[-1], allow_pickle=False) as cached:
        assert cached["latents"].shape[1] == 9 and np.isfinite(cached["latents"]).all()
    (tmp_path / "vae.yaml").write_text(SPEC)  # the same workdir, whose saved model is the metric
    code, out = finish(mummi("vae.yaml", "--validate", cwd=tmp_path))
    assert code == EXIT_USAGE and "delete the model" in out and "or set encoder.kind: metric" in out, out[-2000:]
