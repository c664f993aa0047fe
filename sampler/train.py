"""Training the patch VAE from coarse patches (the job that runs it is :mod:`mummi.jobs.train`)."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mummi.core.spec import EncoderSettings, EncoderTrainingSettings
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


def fit(
    model: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    n_train: int,
    tset: EncoderTrainingSettings,
    generator: torch.Generator,
    *,
    parts: tuple[str, ...],
    step: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    validate: Callable[[], dict[str, float]],
    log_epoch: Callable[[int, dict[str, float], dict[str, float], float], None],
) -> tuple[dict[str, list[float]], int, float]:
    """Train ``model`` epoch by epoch with early stopping and keep its best weights; (history, best epoch, best loss).

    Each epoch shuffles the ``n_train`` training rows with ``generator``, and ``step`` gives the losses ``parts``
    (``loss``, the one minimised, among them) of each batch of ``tset.batch_size`` row indices (at most ``n_train``;
    a last batch of one row is skipped). ``validate`` gives the validation losses after each epoch, and ``log_epoch`` is
    told (epoch, train losses, validation losses, seconds). Training stops after ``tset.epochs`` epochs or
    ``tset.patience`` epochs without a better validation loss; ``model`` is left with the best epoch's weights. The
    history holds ``train_<part>``, ``val_<part>`` and ``seconds`` lists, one value per epoch.
    """
    device = next(model.parameters()).device
    batch = min(tset.batch_size, n_train)
    history: dict[str, list[float]] = {f"{split}_{k}": [] for split in ("train", "val") for k in parts}
    history["seconds"] = []
    best_loss, best_epoch, best_state = math.inf, 0, copy.deepcopy(model.state_dict())
    for epoch in range(1, tset.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(n_train, generator=generator).to(device)
        sums, seen = dict.fromkeys(parts, 0.0), 0
        for lo in range(0, len(order), batch):
            idx = order[lo : lo + batch]
            if len(idx) < 2:  # batch norm (and the metric's pairs) need two patches
                continue
            losses = step(idx)
            optimiser.zero_grad(set_to_none=True)
            losses["loss"].backward()
            optimiser.step()
            for key in parts:
                sums[key] += float(losses[key].detach()) * len(idx)
            seen += len(idx)
        train = {key: value / max(seen, 1) for key, value in sums.items()}
        val = validate()
        for key in parts:
            history[f"train_{key}"].append(train[key])
            history[f"val_{key}"].append(val[key])
        history["seconds"].append(time.perf_counter() - t0)
        log_epoch(epoch, train, val, history["seconds"][-1])
        if val["loss"] < best_loss:
            best_loss, best_epoch, best_state = val["loss"], epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= tset.patience:
            log.info("early stop after epoch %d: no improvement since epoch %d", epoch, best_epoch)
            break
    model.load_state_dict(best_state)
    return history, best_epoch, best_loss


def _evaluate(model: PatchVAE, x: torch.Tensor, batch_size: int, kl_weight: float) -> dict[str, float]:
    """The loss and reconstruction MSE of ``x`` in eval mode (latent means), averaged over patches."""
    model.eval()
    loss_sum = mse_sum = 0.0
    with torch.inference_mode():
        for lo in range(0, len(x), batch_size):
            batch = x[lo : lo + batch_size]
            recon, mu, log_var = model(batch)
            loss, mse = vae_loss(batch, recon, mu, log_var, kl_weight)
            loss_sum += float(loss) * len(batch)
            mse_sum += float(mse) * len(batch)
    return {"loss": loss_sum / len(x), "mse": mse_sum / len(x)}


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
    log.info("training the VAE on %d patches (%d after augmentation), %d held out, on %s",
             len(train_rows), len(x_train), len(val_rows), device)  # fmt: skip

    def step(idx: torch.Tensor) -> dict[str, torch.Tensor]:
        xb = x_train[idx]
        recon, mu, log_var = model(xb)
        loss, mse = vae_loss(xb, recon, mu, log_var, kl_weight)
        return {"loss": loss, "mse": mse}

    def log_epoch(epoch: int, train: dict[str, float], val: dict[str, float], _seconds: float) -> None:
        log.info("epoch %d: train loss %.5f, validation loss %.5f (MSE %.5f; mean predictor %.5f)",
                 epoch, train["loss"], val["loss"], val["mse"], trivial_mse)  # fmt: skip

    history, best_epoch, _ = fit(
        model,
        optimiser,
        len(x_train),
        tset,
        generator,
        parts=("loss", "mse"),
        step=step,
        validate=lambda: _evaluate(model, x_val, settings.batch_size, kl_weight),
        log_epoch=log_epoch,
    )

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
    return Encoder.trained(model, scaling, settings, report, out_dir)
