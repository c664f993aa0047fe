"""Helpers of the micro-scale tests (test_micro_*.py, test_analysis_*.py): specs and sim folders."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from mummi.core.patch_input import PatchInput, write_patch_input
from mummi.core.spec import CampaignSpec


def deep_update(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = deep_update(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def make_spec(tmp_path: Path, sections: dict[str, Any]) -> tuple[CampaignSpec, Path]:
    """A validated spec and the same spec as a YAML file (for the job entry points)."""
    import yaml

    data = deep_update({"campaign": {"name": "micro", "workdir": str(tmp_path / "w"), "seed": 5}}, sections)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return CampaignSpec.model_validate(data), path


def make_sim_dir(
    root: Path, sim_id: str = "sim-0001", coarse: np.ndarray | None = None, offsets_nm: np.ndarray | None = None
) -> Path:
    """A sim folder holding a patch input (random composition unless given)."""
    sim_dir = root / "sims" / sim_id
    sim_dir.mkdir(parents=True)
    coarse = np.random.default_rng(11).uniform(0.2, 1.0, (5, 5, 14)) if coarse is None else coarse
    offsets = np.zeros((0, 2)) if offsets_nm is None else offsets_nm
    write_patch_input(
        sim_dir / "patch_input.npz", PatchInput("patch-1", coarse, offsets, np.ones(len(offsets), dtype=np.int64))
    )
    return sim_dir


def job(name: str, spec_path: Path, sim_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", f"mummi.jobs.{name}", "--spec", str(spec_path), "--sim-dir", str(sim_dir), *extra]


def kill_when(cmd: list[str], ready: Path, after_s: float = 0.0, timeout_s: float = 60.0) -> None:
    """Start ``cmd`` in its own process group; SIGKILL the whole group once ``ready`` exists (+ ``after_s``)."""
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + timeout_s
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > end:
                raise AssertionError(f"{cmd} ended or stalled before {ready} appeared")
            time.sleep(0.01)
        time.sleep(after_s)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def copy_setup(src: Path, dst: Path) -> Path:
    """A copy of a set-up sim folder (createsim outputs only), under the same sim id."""
    keep = shutil.ignore_patterns(
        "md.*",
        "md_*",
        "*.part*",
        "sim.status.json",
        "analysis.status.json",
        "rdf_counts.npz",
        "features.npz",
        ".md.xtc*",
    )
    shutil.copytree(src, dst, ignore=keep)
    return dst
