"""Patch encoder: patches/s encoded on CPU (and GPU when present), training seconds per epoch.

The patches are synthetic (:func:`mummi.sampler.patchdata.synthetic_coarse_patches`),
5×5×14 like the macro model's; the model is the paper's VAE with the spec defaults
(latent 15, batch 256, rotations on: an epoch sees 4 × 0.9 × N patches).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import numpy as np
import torch

from mummi.core.spec import EncoderSettings, EncoderTrainingSettings
from mummi.sampler.patchdata import synthetic_coarse_patches
from mummi.sampler.train import train_encoder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--patches", type=int, default=300_000, help="patches to train on and to encode (default 300,000)"
    )
    parser.add_argument("--epochs", type=int, default=1, help="training epochs to time (default 1)")
    parser.add_argument("--batch-size", type=int, default=256, help="training batch size (default 256, the spec's)")
    parser.add_argument("--no-augment", action="store_true", help="train without the rotated copies")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)


def _measure(x: np.ndarray, device: str, args: argparse.Namespace) -> dict[str, Any]:
    training = EncoderTrainingSettings(epochs=args.epochs, batch_size=args.batch_size, patience=args.epochs + 1,
                                       augment_rotations=not args.no_augment)  # fmt: skip
    settings = EncoderSettings(device=device, training=training)
    with tempfile.TemporaryDirectory() as tmp:
        encoder = train_encoder(x, settings, tmp, seed=args.seed)
    report: dict[str, Any] = encoder.report or {}
    encoder.encode(x[: min(len(x), 4096)])  # warm-up
    if device == "gpu":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    encoder.encode(x)
    if device == "gpu":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {
        "device": report["device"],
        "train_samples_per_epoch": report["train_samples"],
        "train_s_per_epoch": float(np.mean(report["history"]["seconds"])),
        "train_samples_per_s": report["train_samples"] / float(np.mean(report["history"]["seconds"])),
        "val_mse_over_trivial": report["val_mse_over_trivial"],
        "encode_s": seconds,
        "encode_patches_per_s": len(x) / seconds,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.patches < 3 or args.epochs < 1:
        msg = f"--patches must be >= 3 and --epochs >= 1, got {args.patches} and {args.epochs}"
        raise ValueError(msg)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    x = synthetic_coarse_patches(args.patches, seed=args.seed)
    result: dict[str, Any] = {"patches": args.patches, "epochs": args.epochs, "batch_size": args.batch_size,
                              "augment_rotations": not args.no_augment, "torch": torch.__version__,
                              "torch_threads": torch.get_num_threads()}  # fmt: skip
    result["cpu"] = _measure(x, "cpu", args)
    if torch.cuda.is_available():
        result["gpu"] = {"name": torch.cuda.get_device_name(0), **_measure(x, "gpu", args)}
    else:
        result["gpu"] = "unmeasured: torch sees no CUDA device"
    return result
