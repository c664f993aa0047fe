"""``python -m mummi.jobs.train --spec SPEC --out DIR [--kind vae|metric] [--seed N] [--frames F] PATCHES ...``.

Also installed as ``mummi-train-encoder``: train the encoder on patch files (or
every patch file in the given directories) with the spec's ``encoder`` settings
and save it in DIR. ``--kind`` (default: the spec's ``encoder.kind``) chooses the
VAE of seed 000, trained on the coarse patches, or the learned metric of seed 002,
trained on the native patches with their constellation classes; its no-protein
control patches are cut from the macro frames given with ``--frames`` (a file or
a directory, repeatable; none: no control class). When DIR already holds a
complete model of that kind it exits 0 at once, so the coordinator can rerun the
job after a restart. Exit status 2: bad arguments, an unreadable spec or patch
file, no patches, patch files without native patches for the metric, or DIR
holding a model of the other kind.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mummi.core.exit_codes import EXIT_OK
from mummi.core.spec import DEFAULT_LATENT_DIM, DEFAULT_LEARNING_RATE, CampaignSpec, EncoderSettings
from mummi.core.states import JobKind
from mummi.jobs.entry import JobInputError, job_main
from mummi.macro.frames import list_frames
from mummi.macro.patches import list_patch_files, read_patches
from mummi.sampler.encoder import KINDS, Encoder, saved_kind
from mummi.sampler.metric_data import read_labelled
from mummi.sampler.metric_train import train_metric
from mummi.sampler.train import train_encoder

log = logging.getLogger(__name__)


def patch_files(paths: Sequence[str | Path]) -> list[Path]:
    """The given patch files and those in the given directories (JobInputError when there are none)."""
    files: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            files += list_patch_files(item)
        elif item.is_file():
            files.append(item)
        else:
            raise JobInputError(f"{item}: no such patch file or directory")
    if not files:
        raise JobInputError(f"no patch files (patches-*.h5) in {', '.join(map(str, paths)) or 'the arguments'}")
    return files


def frame_files(paths: Sequence[str | Path]) -> list[Path]:
    """The given macro frame files and those in the given directories."""
    files: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            files += list_frames(item)
        elif item.is_file():
            files.append(item)
        else:
            raise JobInputError(f"{item}: no such frame file or directory")
    return files


def settings_of_kind(settings: EncoderSettings, kind: str) -> EncoderSettings:
    """``settings`` for encoder ``kind``; a latent size or learning rate at the other kind's default gets this one's."""
    if settings.kind == kind:
        return settings
    data = settings.model_dump()
    data["kind"] = kind
    if settings.latent_dim == DEFAULT_LATENT_DIM[settings.kind]:
        data["latent_dim"] = DEFAULT_LATENT_DIM[kind]
    if settings.training.learning_rate == DEFAULT_LEARNING_RATE[settings.kind]:
        data["training"]["learning_rate"] = DEFAULT_LEARNING_RATE[kind]
    return EncoderSettings.model_validate(data)


def read_coarse(paths: Sequence[str | Path]) -> tuple[np.ndarray, list[Path]]:
    """The coarse patches (n, 5, 5, 14) of the given patch files and directories of them, and the files read."""
    files = patch_files(paths)
    arrays = []
    for f in files:
        try:
            arrays.append(read_patches(f, native=False).coarse)
        except (OSError, ValueError, KeyError) as err:
            raise JobInputError(f"{f}: cannot read patches: {err}") from err
    coarse = np.concatenate(arrays) if arrays else np.zeros((0, 5, 5, 14), np.float32)
    if len(coarse) == 0:
        raise JobInputError(f"the {len(files)} patch file(s) hold no patches")
    return coarse, files


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="directory to save the trained model in")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the spec's campaign.seed)")
    parser.add_argument("--kind", choices=KINDS, default=None, help="encoder kind (default: the spec's encoder.kind)")
    parser.add_argument(
        "--frames",
        action="append",
        default=[],
        help="a macro frame or a directory of them, for the metric's control patches (repeat for more)",
    )
    parser.add_argument("patches", nargs="*", help="patch files (patches-*.h5) or directories of them")


def _run(spec: CampaignSpec, args: argparse.Namespace) -> int:
    kind = args.kind or spec.encoder.kind
    if Encoder.exists(args.out):
        have = saved_kind(args.out)
        if have != kind:
            raise JobInputError(f"{args.out} already holds a {have!r} encoder, not a {kind!r} one; use another --out")
        log.info("%s already holds a trained encoder; nothing to do", args.out)
        return EXIT_OK
    seed = args.seed if args.seed is not None else spec.campaign.seed
    settings = settings_of_kind(spec.encoder, kind)
    if kind == "metric":
        return _train_metric(spec, settings, args, seed)
    coarse, files = read_coarse(args.patches)
    log.info("read %d patches from %d file(s)", len(coarse), len(files))
    try:
        encoder = train_encoder(coarse, settings, args.out, seed)
    except ValueError as err:
        raise JobInputError(str(err)) from err
    report: dict[str, Any] = encoder.report or {}
    log.info("saved to %s: %s epochs, validation MSE %s (mean predictor %s)",
             args.out, report.get("epochs_run"), report.get("val_mse"), report.get("trivial_val_mse"))  # fmt: skip
    return EXIT_OK


def _train_metric(spec: CampaignSpec, settings: EncoderSettings, args: argparse.Namespace, seed: int) -> int:
    files, frames = patch_files(args.patches), frame_files(args.frames)
    try:
        data = read_labelled(files, frames, settings.metric.control_fraction, seed, spec.patches)
    except (OSError, ValueError, KeyError) as err:
        raise JobInputError(f"cannot read native patches: {err}") from err
    if len(data) == 0:
        raise JobInputError(f"the {len(files)} patch file(s) hold no patches")
    log.info("read %d native patches (classes %s) from %d patch file(s) and %d frame(s)",
             len(data), data.class_counts(), len(files), len(frames))  # fmt: skip
    try:
        encoder = train_metric(data.native, data.labels, settings, args.out, seed)
    except ValueError as err:
        raise JobInputError(str(err)) from err
    report: dict[str, Any] = encoder.report or {}
    log.info("saved to %s: %s epochs, validation loss %s", args.out, report.get("epochs_run"), report.get("val_loss"))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; 0 on success (or when OUT already holds a model), 2 on bad input."""
    description = "Train the patch encoder on macro patch files."
    return job_main(
        JobKind.TRAIN, argv, _run, description=description, add_arguments=_add_arguments, prog="mummi-train-encoder"
    )


if __name__ == "__main__":
    raise SystemExit(main())
