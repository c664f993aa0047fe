"""Before the campaign proper: an uncoupled pre-campaign macro run, and the encoder trained on its patches.

As in the paper, unless the spec names a trained encoder, the campaign first runs
the macro model alone for ``encoder.training.pre_campaign_ns`` and trains the
encoder (``encoder.kind``: the VAE on the coarse patches, or the learned metric on
the native patches, with control patches cut from the pre-campaign frames) on the
patches it produced. Both are jobs, so the coordinator stays responsive; the
trained model is saved in the workdir and reused on resume.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mummi.core.layout import CampaignLayout
from mummi.core.spec import CampaignSpec, JobResources
from mummi.core.states import JobKind, JobState
from mummi.sampler.encoder import Encoder, PatchEncoder
from mummi.sampler.encoder import load_encoder as load_saved_encoder
from mummi.workflow.jobrunner import JobRunner


def encoder_dir(spec: CampaignSpec, cdir: CampaignLayout) -> Path:
    return spec.encoder.model if spec.encoder.model is not None else cdir.encoder


def model_exists(path: Path) -> bool:
    return Encoder.exists(path)


def load_encoder(path: Path) -> PatchEncoder:
    """The trained encoder in ``path``, of the kind its manifest names."""
    return load_saved_encoder(path)


def macro_command(
    spec: CampaignSpec, cdir: CampaignLayout, macro_dir: CampaignLayout, *, until_ns: float | None, uncoupled: bool
) -> list[str]:
    """The macro job's command line, writing under ``macro_dir`` (the campaign, or its pre-campaign)."""
    command = [
        sys.executable,
        "-m",
        "mummi.jobs.macro",
        "--spec",
        str(cdir.spec_copy),
        "--workdir",
        str(macro_dir.root),
    ]
    if until_ns is not None:
        command += ["--until-ns", f"{until_ns:g}"]
    if uncoupled:
        command.append("--uncoupled")
    elif spec.macro.pace_ns_per_s is not None:
        command += ["--pace-ns-per-s", f"{spec.macro.pace_ns_per_s:g}"]
    return command


def advance(spec: CampaignSpec, cdir: CampaignLayout, runner: JobRunner) -> None:
    """Submit the next pre-campaign job when the previous one is done (called every turn)."""
    if runner.has_active(JobKind.PRECAMPAIGN, JobKind.PRECAMPAIGN.value) or runner.has_active(
        JobKind.TRAIN, JobKind.TRAIN.value
    ):
        return
    pre = cdir.precampaign
    if not runner.store.jobs(states=[JobState.DONE], kind=JobKind.PRECAMPAIGN):
        command = macro_command(spec, cdir, pre, until_ns=spec.encoder.training.pre_campaign_ns, uncoupled=True)
        runner.submit(
            JobKind.PRECAMPAIGN,
            JobKind.PRECAMPAIGN.value,
            command,
            spec.macro.resources,
            pre.root,
            cdir.logs / "precampaign.log",
        )
        return
    if runner.store.jobs(states=[JobState.DONE], kind=JobKind.TRAIN):
        return
    command = [
        sys.executable, "-m", "mummi.jobs.train", "--spec", str(cdir.spec_copy),
        "--out", str(encoder_dir(spec, cdir)), "--seed", str(spec.campaign.seed),
        *[str(p) for p in sorted(pre.patches.glob("*.h5"))],
    ]  # fmt: skip
    if spec.encoder.kind == "metric":  # its no-protein control patches come from the frames
        command += ["--frames", str(pre.macro_frames)]
    cores = spec.macro.resources.cores_per_task
    resources = JobResources(cores_per_task=cores, gpus_per_task=spec.macro.resources.gpus_per_task, walltime_min=240)
    runner.submit(JobKind.TRAIN, JobKind.TRAIN.value, command, resources, cdir.sampler, cdir.logs / "train-encoder.log")
