"""Training the patch VAE from coarse patches (the job that runs it is :mod:`mummi.jobs.train`)."""

from __future__ import annotations

import copy
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mummi.core.spec import EncoderSettings
from mummi.sampler.encoder import Encoder, resolve_device
from mummi.sampler.patchdata import ChannelRange, check_coarse, with_rotations
from mummi.sampler.vae import RECON_SIGMA, Architecture, PatchVAE, kl_weight_for, vae_loss

log = logging.getLogger(__name__)


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
    coarse: np.ndarray,
    settings: EncoderSettings,
    out_dir: str | Path | None,
    seed: int,
    *,
    recon_sigma: float = RECON_SIGMA,
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
        msg = (f"train_encoder trains the VAE (encoder.kind 'vae'), not {settings.kind!r}; "
               "the learned metric trains with mummi.sampler.metric_train.train_metric")  # fmt: skip
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
        output_layer = model.decoder[-1]
        assert isinstance(output_layer, torch.nn.Linear)  # PatchVAE's decoder ends with a Linear layer
        output_layer.bias.copy_(torch.from_numpy(train_np.reshape(len(train_np), -1).mean(axis=0)))
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
