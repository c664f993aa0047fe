"""Before the campaign proper: an uncoupled pre-campaign macro run, and the encoder trained on its patches.

As in the paper, unless the spec names a trained encoder, the campaign first runs
the macro model alone for ``encoder.training.pre_campaign_ns`` and trains the VAE
on the patches it produced. Both are jobs, so the coordinator stays responsive;
the trained model is saved in the workdir and reused on resume.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mummi.workflow.campaign import CampaignDir
from mummi.workflow.jobrunner import JobRunner
from mummi.workflow.spec import CampaignSpec, JobResources
from mummi.workflow.states import JobState

PRECAMPAIGN, TRAIN = "precampaign", "train"


def encoder_dir(spec: CampaignSpec, cdir: CampaignDir) -> Path:
    return spec.encoder.model if spec.encoder.model is not None else cdir.sampler / "encoder"


def precampaign_dir(cdir: CampaignDir) -> Path:
    return cdir.root / "precampaign"


def model_exists(path: Path) -> bool:
    from mummi.sampler.encoder import Encoder

    return Encoder.exists(path)


def load_encoder(path: Path) -> Any:
    from mummi.sampler.encoder import Encoder

    return Encoder.load(path)


def macro_command(spec: CampaignSpec, cdir: CampaignDir, workdir: Path, *, until_ns: float | None, uncoupled: bool) -> list[str]:
    command = [sys.executable, "-m", "mummi.jobs.macro", "--spec", str(cdir.spec_copy), "--workdir", str(workdir)]
    if until_ns is not None:
        command += ["--until-ns", f"{until_ns:g}"]
    if uncoupled:
        command.append("--uncoupled")
    elif spec.macro.pace_ns_per_s is not None:
        command += ["--pace-ns-per-s", f"{spec.macro.pace_ns_per_s:g}"]
    return command


def advance(spec: CampaignSpec, cdir: CampaignDir, runner: JobRunner) -> None:
    """Submit the next pre-campaign job when the previous one is done (called every turn)."""
    if runner.active(PRECAMPAIGN) or runner.active(TRAIN):
        return
    pre = precampaign_dir(cdir)
    if not runner.store.jobs(states=[JobState.DONE], kind=PRECAMPAIGN):
        command = macro_command(spec, cdir, pre, until_ns=spec.encoder.training.pre_campaign_ns, uncoupled=True)
        runner.submit(PRECAMPAIGN, PRECAMPAIGN, command, spec.macro.resources, pre, cdir.logs / "precampaign.log")
        return
    if runner.store.jobs(states=[JobState.DONE], kind=TRAIN):
        return
    command = [
        sys.executable, "-m", "mummi.sampler.train", "--spec", str(cdir.spec_copy),
        "--out", str(encoder_dir(spec, cdir)), "--seed", str(spec.campaign.seed),
        *[str(p) for p in sorted((pre / "patches").glob("*.h5"))],
    ]  # fmt: skip
    cores = spec.macro.resources.cores_per_task
    resources = JobResources(cores_per_task=cores, gpus_per_task=spec.macro.resources.gpus_per_task, walltime_min=240)
    runner.submit(TRAIN, TRAIN, command, resources, cdir.sampler, cdir.logs / "train-encoder.log")
