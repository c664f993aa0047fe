"""Training the patch VAE, and the ``mummi-train-encoder`` command.

``python -m mummi.sampler.train --spec SPEC --out DIR [--seed N] PATCH_FILE_OR_DIR ...``
reads the coarse patches of the given patch files (or of every patch file in the
given directories), trains the VAE with the spec's ``encoder`` settings and saves it
in DIR. When DIR already holds a complete model it exits 0 at once, so the
coordinator can rerun the job after a restart. Exit status 2: bad arguments, an
unreadable spec or patch file, or no patches.
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from mummi.sampler.encoder import Encoder, resolve_device
from mummi.sampler.patchdata import ChannelRange, check_coarse, with_rotations
from mummi.sampler.vae import RECON_SIGMA, Architecture, PatchVAE, kl_weight_for, vae_loss
from mummi.workflow.spec import EncoderSettings

log = logging.getLogger("mummi.sampler.train")  # also when run as __main__


def split_indices(n: int, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) row indices: a seeded shuffle, at least one validation and two training rows."""
    if n < 3:
        msg = f"need at least 3 patches to train (2 for training, 1 for validation), got {n}"
        raise ValueError(msg)
    n_val = min(max(1, round(validation_fraction * n)), n - 2)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _evaluate(model: PatchVAE, x: torch.Tensor, batch_size: int, kl_weight: float) -> tuple[float, float]:
    """(loss, reconstruction MSE) of ``x`` in eval mode (latent means), averaged over patches."""
    model.eval()
    loss_sum = mse_sum = 0.0
    with torch.inference_mode():
        for lo in range(0, len(x), batch_size):
            batch = x[lo : lo + batch_size]
            recon, mu, log_var = model(batch)
            loss, mse = vae_loss(batch, recon, mu, log_var, kl_weight)
            loss_sum += float(loss) * len(batch)
            mse_sum += float(mse) * len(batch)
    return loss_sum / len(x), mse_sum / len(x)


def train_encoder(
    coarse: np.ndarray, settings: EncoderSettings, out_dir: str | Path | None, seed: int, *, recon_sigma: float = RECON_SIGMA
) -> Encoder:
    """Train the VAE on ``coarse`` (n, 5, 5, 14) raw patches and save it in ``out_dir`` (None: do not save).

    The seeded split holds out ``training.validation_fraction`` of the patches; the
    per-channel normalisation is fitted on the training part, which is then
    augmented with its grid rotations (``training.augment_rotations``). Adam with
    ``training.learning_rate`` runs for at most ``training.epochs`` epochs and stops
    after ``training.patience`` epochs without a better validation loss; the best
    weights are kept. The report (``training.json``; also ``encoder.report``) holds
    the losses of every epoch and the validation MSE of the trivial predictor that
    always answers the training mean. On CPU the result is a deterministic function
    of the data, the settings and ``seed``. ``recon_sigma`` sets the KL weight
    (see :func:`mummi.sampler.vae.kl_weight_for`).
    """
    if settings.kind != "vae":
        msg = f"encoder kind {settings.kind!r} cannot be trained here; allowed: 'vae'"
        raise ValueError(msg)
    started = time.perf_counter()
    tset = settings.training
    coarse = check_coarse(coarse)
    device = resolve_device(settings.device)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)

    train_rows, val_rows = split_indices(len(coarse), tset.validation_fraction, seed)
    scaling = ChannelRange.fit(coarse[train_rows])
    train_np = scaling.apply(coarse[train_rows])
    if tset.augment_rotations:
        train_np = with_rotations(train_np)
    x_train = torch.from_numpy(np.ascontiguousarray(train_np)).to(device)
    x_val = torch.from_numpy(scaling.apply(coarse[val_rows])).to(device)
    trivial_mse = float(torch.mean((x_val - x_train.mean(dim=0, keepdim=True)) ** 2))

    arch = Architecture(grid=coarse.shape[1], channels=coarse.shape[-1], latent_dim=settings.latent_dim)
    kl_weight = kl_weight_for(recon_sigma, arch.inputs)
    model = PatchVAE(arch)
    with torch.no_grad():  # start the decoder at the training mean: the trivial predictor
        model.decoder[-1].bias.copy_(torch.from_numpy(train_np.reshape(len(train_np), -1).mean(axis=0)))
    model = model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=tset.learning_rate)
    batch = min(tset.batch_size, len(x_train))
    log.info("training the VAE on %d patches (%d after augmentation), %d held out, on %s",
             len(train_rows), len(x_train), len(val_rows), device)  # fmt: skip

    history: dict[str, list[float]] = {"train_loss": [], "train_mse": [], "val_loss": [], "val_mse": [], "seconds": []}
    best_loss, best_epoch, best_state = math.inf, 0, copy.deepcopy(model.state_dict())
    for epoch in range(1, tset.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(x_train), generator=generator).to(device)
        loss_sum = mse_sum = 0.0
        seen = 0
        for lo in range(0, len(order), batch):
            idx = order[lo : lo + batch]
            if len(idx) < 2:  # batch norm needs two patches
                continue
            xb = x_train[idx]
            recon, mu, log_var = model(xb)
            loss, mse = vae_loss(xb, recon, mu, log_var, kl_weight)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            loss_sum += float(loss.detach()) * len(idx)
            mse_sum += float(mse.detach()) * len(idx)
            seen += len(idx)
        val_loss, val_mse = _evaluate(model, x_val, settings.batch_size, kl_weight)
        for key, value in zip(history, (loss_sum / seen, mse_sum / seen, val_loss, val_mse, time.perf_counter() - t0)):
            history[key].append(value)
        log.info("epoch %d: train loss %.5f, validation loss %.5f (MSE %.5f; mean predictor %.5f)",
                 epoch, loss_sum / seen, val_loss, val_mse, trivial_mse)  # fmt: skip
        if val_loss < best_loss:
            best_loss, best_epoch, best_state = val_loss, epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= tset.patience:
            log.info("early stop after epoch %d: no improvement since epoch %d", epoch, best_epoch)
            break
    model.load_state_dict(best_state)

    report: dict[str, Any] = {
        "seed": seed,
        "recon_sigma": recon_sigma,
        "kl_weight": kl_weight,
        "device": str(device),
        "patches": len(coarse),
        "train_patches": len(train_rows),
        "train_samples": len(x_train),
        "validation_patches": len(val_rows),
        "epochs_run": len(history["val_loss"]),
        "best_epoch": best_epoch,
        "stopped_early": len(history["val_loss"]) < tset.epochs,
        "val_loss": history["val_loss"][best_epoch - 1],
        "val_mse": history["val_mse"][best_epoch - 1],
        "trivial_val_mse": trivial_mse,
        "val_mse_over_trivial": history["val_mse"][best_epoch - 1] / trivial_mse if trivial_mse > 0 else None,
        "history": history,
        "seconds": time.perf_counter() - started,
        "settings": settings.model_dump(mode="json"),
    }
    encoder = Encoder(model, scaling, device=settings.device, batch_size=settings.batch_size)
    encoder.report = report
    if out_dir is not None:
        encoder.save(out_dir, report=report)
    return encoder


# ----------------------------------------------------------------------- CLI
class UsageError(Exception):
    """A problem with the command line's inputs (exit status 2)."""


def read_coarse(paths: Sequence[str | Path]) -> tuple[np.ndarray, list[Path]]:
    """The coarse patches (n, 5, 5, 14) of the given patch files and directories of them, and the files read."""
    from mummi.macro.patches import list_patch_files, read_patches

    files: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            files += list_patch_files(item)
        elif item.is_file():
            files.append(item)
        else:
            raise UsageError(f"{item}: no such patch file or directory")
    if not files:
        raise UsageError(f"no patch files (patches-*.h5) in {', '.join(map(str, paths)) or 'the arguments'}")
    arrays = []
    for f in files:
        try:
            arrays.append(read_patches(f, native=False).coarse)
        except (OSError, ValueError, KeyError) as err:
            raise UsageError(f"{f}: cannot read patches: {err}") from err
    coarse = np.concatenate(arrays) if arrays else np.zeros((0, 5, 5, 14), np.float32)
    if len(coarse) == 0:
        raise UsageError(f"the {len(files)} patch file(s) hold no patches")
    return coarse, files


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mummi-train-encoder", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, type=Path, help="campaign spec (its 'encoder' section is used)")
    parser.add_argument("--out", required=True, type=Path, help="directory to save the trained model in")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the spec's campaign.seed)")
    parser.add_argument("patches", nargs="*", help="patch files (patches-*.h5) or directories of them")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; 0 on success (or when OUT already holds a model), 2 on bad input."""
    from mummi.workflow.spec import SpecError, load_spec

    args = _parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        spec = load_spec(args.spec)
    except SpecError as err:
        sys.stderr.write(f"mummi-train-encoder: {err}\n")
        return 2
    if Encoder.exists(args.out):
        log.info("%s already holds a trained encoder; nothing to do", args.out)
        return 0
    try:
        coarse, files = read_coarse(args.patches)
        seed = args.seed if args.seed is not None else spec.campaign.seed
        log.info("read %d patches from %d file(s)", len(coarse), len(files))
        encoder = train_encoder(coarse, spec.encoder, args.out, seed)
    except (UsageError, ValueError) as err:
        sys.stderr.write(f"mummi-train-encoder: {err}\n")
        return 2
    report: dict[str, Any] = encoder.report or {}
    log.info("saved to %s: %s epochs, validation MSE %s (mean predictor %s)",
             args.out, report.get("epochs_run"), report.get("val_mse"), report.get("trivial_val_mse"))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
