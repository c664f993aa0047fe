"""``python -m mummi.jobs.train --spec SPEC --out DIR [--seed N] PATCH_FILE_OR_DIR ...``: train the encoder.

Also installed as ``mummi-train-encoder``. Reads the coarse patches of the given
patch files (or of every patch file in the given directories), trains the VAE
with the spec's ``encoder`` settings and saves it in DIR. When DIR already holds a
complete model it exits 0 at once, so the coordinator can rerun the job after a
restart. Exit status 2: bad arguments, an unreadable spec or patch file, or no
patches.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mummi.core.exit_codes import EXIT_OK
from mummi.core.spec import CampaignSpec
from mummi.core.states import JobKind
from mummi.jobs.entry import JobInputError, job_main
from mummi.macro.patches import list_patch_files, read_patches
from mummi.sampler.encoder import Encoder
from mummi.sampler.train import train_encoder

log = logging.getLogger(__name__)


def read_coarse(paths: Sequence[str | Path]) -> tuple[np.ndarray, list[Path]]:
    """The coarse patches (n, 5, 5, 14) of the given patch files and directories of them, and the files read."""
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
    parser.add_argument("patches", nargs="*", help="patch files (patches-*.h5) or directories of them")


def _run(spec: CampaignSpec, args: argparse.Namespace) -> int:
    if Encoder.exists(args.out):
        log.info("%s already holds a trained encoder; nothing to do", args.out)
        return EXIT_OK
    coarse, files = read_coarse(args.patches)
    seed = args.seed if args.seed is not None else spec.campaign.seed
    log.info("read %d patches from %d file(s)", len(coarse), len(files))
    try:
        encoder = train_encoder(coarse, spec.encoder, args.out, seed)
    except ValueError as err:
        raise JobInputError(str(err)) from err
    report: dict[str, Any] = encoder.report or {}
    log.info("saved to %s: %s epochs, validation MSE %s (mean predictor %s)",
             args.out, report.get("epochs_run"), report.get("val_mse"), report.get("trivial_val_mse"))  # fmt: skip
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; 0 on success (or when OUT already holds a model), 2 on bad input."""
    description = "Train the patch encoder on macro patch files."
    return job_main(
        JobKind.TRAIN, argv, _run, description=description, add_arguments=_add_arguments, prog="mummi-train-encoder"
    )


if __name__ == "__main__":
    raise SystemExit(main())
