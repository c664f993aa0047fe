"""Training the learned patch metric from labelled native patches (the job that runs it is :mod:`mummi.jobs.train`)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mummi.core.spec import EncoderSettings, MetricSettings
from mummi.sampler.encoder import resolve_device
from mummi.sampler.metric import (
    LossWeights,
    MetricArchitecture,
    MetricEncoder,
    PatchMetricNet,
    metric_losses,
    radial_profiles,
)
from mummi.sampler.patchdata import ChannelRange, check_coarse
from mummi.sampler.train import fit, split_indices

log = logging.getLogger(__name__)

PARTS = ("loss", "inv", "rad", "lab")


def loss_weights(settings: MetricSettings) -> LossWeights:
    """The loss weights, margins and λ_rad of the spec's ``encoder.metric`` section."""
    return LossWeights(
        w_inv=settings.w_inv,
        alpha_inv=settings.alpha_inv,
        w_rad=settings.w_rad,
        lambda_rad=settings.lambda_rad,
        w_lab=settings.w_lab,
        alpha_lab=settings.alpha_lab,
    )


def _evaluate(
    model: PatchMetricNet, x: torch.Tensor, u: torch.Tensor, y: torch.Tensor, batch: int, w: LossWeights
) -> dict[str, float]:
    """The loss and its parts on ``x`` in eval mode, batch by batch, averaged over patches."""
    model.eval()
    sums = dict.fromkeys(PARTS, 0.0)
    seen = 0
    with torch.inference_mode():
        for lo in range(0, len(x), batch):
            parts = metric_losses(model, x[lo : lo + batch], u[lo : lo + batch], y[lo : lo + batch], w)
            n = len(x[lo : lo + batch])
            for key in PARTS:
                sums[key] += float(parts[key]) * n
            seen += n
    return {key: value / max(seen, 1) for key, value in sums.items()}


def train_metric(
    native: np.ndarray,
    labels: np.ndarray,
    settings: EncoderSettings,
    out_dir: str | Path | None,
    seed: int,
    *,
    weights: LossWeights | None = None,
) -> MetricEncoder:
    """Train the metric on ``native`` (n, P, P, 14) raw patches of classes ``labels`` (n,); save it in ``out_dir``
    (None: do not save).

    The seeded split holds out ``training.validation_fraction`` of the patches; the
    per-channel standardisation is fitted on the training part; Υ uses the channels
    ``metric.profile_channels``. Adam with ``training.learning_rate`` runs for at most
    ``training.epochs`` epochs of batches of ``training.batch_size`` patches (each
    with its five transformations when ``w_inv > 0``) and stops after
    ``training.patience`` epochs without a better validation loss; the best weights
    are kept. ``weights`` overrides the spec's losses (the benchmark's ablations).
    The report (``training.json``; also ``encoder.report``) holds every epoch's
    losses, their parts and seconds. On CPU the result is a deterministic function
    of the data, the settings and ``seed``.
    """
    started = time.perf_counter()
    tset, mset = settings.training, settings.metric
    w = weights if weights is not None else loss_weights(mset)
    native = np.asarray(native)
    if native.ndim != 4 or native.shape[1] != native.shape[2]:
        msg = f"native patches must have shape (n, P, P, channels), got {native.shape}"
        raise ValueError(msg)
    native = check_coarse(native, (native.shape[1], native.shape[2], native.shape[3]), what="native")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(native),):
        msg = f"need one label per patch: {len(native)} patches, labels of shape {labels.shape}"
        raise ValueError(msg)
    if max(mset.profile_channels) >= native.shape[-1]:
        msg = f"profile_channels {mset.profile_channels} name channels the {native.shape[-1]}-channel patches lack"
        raise ValueError(msg)
    device = resolve_device(settings.device)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)

    train_rows, val_rows = split_indices(len(native), tset.validation_fraction, seed)
    scaling = ChannelRange.standardise(native[train_rows])

    def tensors(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]:
        x = scaling.apply(native[rows])
        u = radial_profiles(x, mset.profile_channels)
        return (torch.from_numpy(x).to(device), torch.from_numpy(u).to(device),
                torch.from_numpy(labels[rows]).to(device), u)  # fmt: skip

    x_train, u_train, y_train, u_np = tensors(train_rows)
    x_val, u_val, y_val, _ = tensors(val_rows)
    sample = u_np[np.random.default_rng(seed).permutation(len(u_np))[:500]].astype(np.float64)
    d_u = np.sqrt(np.maximum(((sample[:, None] - sample[None]) ** 2).sum(-1), 0))[np.triu_indices(len(sample), 1)]

    arch = MetricArchitecture(grid=native.shape[1], channels=native.shape[-1], latent_dim=settings.latent_dim)
    model = PatchMetricNet(arch).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=tset.learning_rate)
    classes = {int(c): int(k) for c, k in zip(*np.unique(labels, return_counts=True))}
    log.info("training the metric on %d patches (classes %s), %d held out, on %s",
             len(train_rows), classes, len(val_rows), device)  # fmt: skip

    def step(idx: torch.Tensor) -> dict[str, torch.Tensor]:
        return metric_losses(model, x_train[idx], u_train[idx], y_train[idx], w)

    def log_epoch(epoch: int, train: dict[str, float], val: dict[str, float], seconds: float) -> None:
        log.info("epoch %d: train loss %.4f, validation loss %.4f (inv %.4f, rad %.4f, lab %.4f), %.1f s", epoch,
                 train["loss"], val["loss"], val["inv"], val["rad"], val["lab"], seconds)  # fmt: skip

    history, best_epoch, best_loss = fit(
        model,
        optimiser,
        len(x_train),
        tset,
        generator,
        parts=PARTS,
        step=step,
        validate=lambda: _evaluate(model, x_val, u_val, y_val, min(tset.batch_size, len(x_train)), w),
        log_epoch=log_epoch,
    )

    report: dict[str, Any] = {
        "kind": "metric",
        "seed": seed,
        "device": str(device),
        "patches": len(native),
        "classes": classes,
        "train_patches": len(train_rows),
        "validation_patches": len(val_rows),
        "loss_weights": {k: float(v) for k, v in w.__dict__.items()},
        "upsilon_distance_range": [float(d_u.min()), float(d_u.max())] if d_u.size else None,
        "epochs_run": len(history["seconds"]),
        "best_epoch": best_epoch,
        "stopped_early": len(history["seconds"]) < tset.epochs,
        "val_loss": best_loss,
        "history": history,
        "seconds": time.perf_counter() - started,
        "settings": settings.model_dump(mode="json"),
    }
    return MetricEncoder.trained(model, scaling, settings, report, out_dir)
