"""The learned patch metric of seed 002 against its baselines, by the paper's Table 1 criteria, and its speed.

Data: an uncoupled macro run (``--grid``, ``--ras``; a frame every
``--interval-ns``) gives the pre-campaign patches the models train on; a second
run with another seed, after ``--burn-in-ns``, gives the held-out patches they are
judged on. Each set has its RAS patches plus ``--control-fraction`` no-protein
control patches per RAS patch (:mod:`mummi.sampler.metric_data`).

Models: the metric with the spec's defaults (the paper's selected losses), the
ablation without the invariance loss (``w_inv = 0``), any further ``--ablations``,
and the VAE of seed 000 on the coarse patches. Baselines without training: ℓ2 on
the standardised images, on their mean concentrations, and on Υ.

Table: overlap %, MARE (with λ_rad; and ``mare_fit``, with each space's own λ, in
units of d_Υ) and PR AUC on the held-out patches (:mod:`mummi.sampler.metric_eval`).
Speed: training seconds per epoch, inference patches/s on this CPU, and the
margin over the full-scale macro model, timed here (``--macro-grid`` 1200 with
``--macro-ras`` 300): its seconds per frame against the seconds to encode the
frame's 300 patches, in wall time (``margin``) and in CPU time (``margin_cpu``,
which a busy shared machine disturbs less).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch

from mummi.core.spec import EncoderSettings, EncoderTrainingSettings, MacroSettings, PatchSettings
from mummi.macro.model import MacroModel
from mummi.macro.params import default_parameters
from mummi.sampler import metric_eval
from mummi.sampler.metric import LossWeights, MetricEncoder, radial_profiles
from mummi.sampler.metric_data import LabelledPatches, labelled_frames
from mummi.sampler.metric_train import loss_weights, train_metric
from mummi.sampler.train import train_encoder

PAPER = {"overlap_percent": 0.05, "mare": 0.26, "pr_auc": 0.61}
"""Seed 002's selected model (Table 1, Section 5.1)."""
ABLATIONS: dict[str, dict[str, float]] = {
    "no_inv": {"w_inv": 0.0},
    "inv_only": {"w_rad": 0.0, "w_lab": 0.0},
    "rad_only": {"w_inv": 0.0, "w_lab": 0.0},
    "lab_only": {"w_inv": 0.0, "w_rad": 0.0},
}
SPACING_NM = 1000.0 / 1200.0


OPTIONS: tuple[tuple[str, type, object, str | None], ...] = (  # flag, type, default, help
    ("--grid", int, 240, "macro grid points per edge for the data (default 240)"),
    ("--ras", int, 32, "RAS in the data's macro runs (default 32)"),
    ("--train-frames", int, 50, "pre-campaign frames (default 50)"),
    ("--heldout-frames", int, 16, "held-out frames (default 16)"),
    ("--interval-ns", float, 200.0, "macro time between frames (default 200)"),
    ("--burn-in-ns", float, 2000.0, "held-out run: time before its first frame"),
    ("--control-fraction", float, 0.25, "control patches per RAS patch"),
    ("--epochs", int, 40, "metric training epochs (default 40, the spec's)"),
    ("--batch-size", int, 256, None),
    ("--vae-epochs", int, 40, "VAE training epochs (default 40, the spec's)"),
    ("--ablations", str, "no_inv", f"comma-separated ablations to train too, of {sorted(ABLATIONS)}"),
    ("--inference-patches", int, 4096, "patches to time inference on"),
    ("--macro-grid", int, 1200, "grid of the macro model timed for the margin"),
    ("--macro-ras", int, 300, "RAS of the macro model timed for the margin"),
    ("--macro-steps", int, 2, "timed macro steps (0: do not time the margin)"),
    ("--patches-per-frame", int, 300, "patches per full-scale frame"),
    ("--threads", int, 1, "torch CPU threads (default 1)"),
    ("--seed", int, 0, None),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for flag, kind, default, help_text in OPTIONS:
        parser.add_argument(flag, type=kind, default=default, help=help_text)


def _macro_model(grid: int, ras: int, seed: int) -> MacroModel:
    """The macro model of ``grid`` points per edge at the full-scale spacing, with ``ras`` RAS."""
    settings = MacroSettings(box_nm=grid * SPACING_NM, grid_points=grid, n_ras=ras)
    return MacroModel(default_parameters(settings.temperature_K), settings, seed=seed, compute="numpy")


def _patches(args: argparse.Namespace, seed: int, count: int, burn_in_ns: float) -> LabelledPatches:
    """The labelled patches of ``count`` frames, every ``--interval-ns`` after ``burn_in_ns``, of a run of ``seed``."""
    model = _macro_model(args.grid, args.ras, seed)
    dt_ns = model.settings.dt_ns
    frames = model.frames(count, max(1, round(args.interval_ns / dt_ns)), round(burn_in_ns / dt_ns))
    return labelled_frames(frames, PatchSettings(), args.control_fraction, seed)


def coarsen(native: np.ndarray, widths: list[int]) -> np.ndarray:
    """Block means of native patches (n, P, P, c) over ``widths`` on both axes, as the macro model's coarse ones."""
    edges = np.concatenate([[0], np.cumsum(widths)[:-1]])
    w = np.asarray(widths, dtype=np.float32)
    sums = np.add.reduceat(np.add.reduceat(native, edges, axis=1), edges, axis=2)
    return (sums / (w[:, None] * w[None, :])[None, :, :, None]).astype(np.float32)


def _training_figures(report: dict[str, Any]) -> dict[str, Any]:
    seconds = report["history"]["seconds"]
    samples = report.get("train_samples", report["train_patches"])
    return {
        "epochs_run": report["epochs_run"],
        "best_epoch": report["best_epoch"],
        "train_patches": report["train_patches"],
        "s_per_epoch": float(np.mean(seconds)),
        "train_patches_per_s": samples / float(np.mean(seconds)),
        "seconds": report["seconds"],
    }


def _inference(encoder: MetricEncoder, native: np.ndarray, n: int, per_frame: int) -> dict[str, float]:
    """Patches/s over ``n`` patches (best of three), and the wall and CPU seconds to encode one frame of
    ``per_frame`` patches, each time a fresh array as a frame read from its file is (median of ten)."""
    x = native[np.arange(n) % len(native)]
    encoder.encode(x[: min(n, 256)])  # warm-up
    rates = []
    for _ in range(3):
        t0 = time.perf_counter()
        encoder.encode(x)
        rates.append(n / (time.perf_counter() - t0))
    wall, cpu = [], []
    for k in range(10):
        frame = np.ascontiguousarray(native[(np.arange(per_frame) + k) % len(native)])
        t0, c0 = time.perf_counter(), time.process_time()
        encoder.encode(frame)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"patches_per_s": max(rates), "frame_s": float(np.median(wall)), "frame_cpu_s": float(np.median(cpu))}


def _macro_frame_s(args: argparse.Namespace) -> dict[str, Any]:
    model = _macro_model(args.macro_grid, args.macro_ras, args.seed)
    settings = model.settings
    model.step()  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(args.macro_steps):
        model.step()
    step_s = (time.perf_counter() - t0) / args.macro_steps
    step_cpu_s = (time.process_time() - c0) / args.macro_steps
    steps = max(1, round(settings.output_interval_ns / settings.dt_ns))
    return {"grid": args.macro_grid, "ras": args.macro_ras, "step_s": step_s, "step_cpu_s": step_cpu_s,
            "steps_per_frame": steps, "frame_s": step_s * steps, "frame_cpu_s": step_cpu_s * steps}  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    ablations = [a for a in args.ablations.split(",") if a]
    unknown = set(ablations) - set(ABLATIONS)
    if unknown:
        msg = f"unknown ablations {sorted(unknown)}; known: {sorted(ABLATIONS)}"
        raise ValueError(msg)
    if min(args.train_frames, args.heldout_frames, args.epochs, args.vae_epochs) < 1:
        msg = "--train-frames, --heldout-frames, --epochs and --vae-epochs must be at least 1"
        raise ValueError(msg)
    torch.set_num_threads(args.threads)
    patch_settings = PatchSettings()
    t0 = time.perf_counter()
    train = _patches(args, args.seed + 1, args.train_frames, 0.0)
    held = _patches(args, args.seed + 2, args.heldout_frames, args.burn_in_ns)
    data_s = time.perf_counter() - t0

    training = EncoderTrainingSettings(epochs=args.epochs, batch_size=args.batch_size, patience=args.epochs)
    settings = EncoderSettings(kind="metric", device="cpu", training=training)
    base = loss_weights(settings.metric)
    weights = {"metric": base, **{name: LossWeights(**{**base.__dict__, **ABLATIONS[name]}) for name in ablations}}
    models: dict[str, MetricEncoder] = {
        name: train_metric(train.native, train.labels, settings, None, args.seed, weights=w)
        for name, w in weights.items()
    }
    vae_settings = EncoderSettings(device="cpu", training=EncoderTrainingSettings(epochs=args.vae_epochs))
    vae = train_encoder(coarsen(train.native, patch_settings.block_widths), vae_settings, None, args.seed)

    metric = models["metric"]
    channels, lam = settings.metric.profile_channels, settings.metric.lambda_rad

    def upsilon(x: np.ndarray) -> np.ndarray:
        return radial_profiles(metric.scaling.apply(x), channels)

    spaces: dict[str, metric_eval.Space] = {name: model.encode for name, model in models.items()}
    spaces["vae"] = lambda x: vae.encode(coarsen(x, patch_settings.block_widths))
    spaces["l2_images"] = lambda x: metric.scaling.apply(x).reshape(len(x), -1)
    spaces["l2_mean"] = lambda x: metric.scaling.apply(x).mean(axis=(1, 2))
    spaces["l2_upsilon"] = upsilon
    pair_upsilon = metric_eval.upper(metric_eval.pairwise(upsilon(held.native)))
    table = {name: metric_eval.evaluate_space(space, held.native, held.labels, pair_upsilon, lam)
             for name, space in spaces.items()}  # fmt: skip

    inference = _inference(metric, held.native, args.inference_patches, args.patches_per_frame)
    speed: dict[str, Any] = {
        "inference_patches_per_s": inference["patches_per_s"],
        "patches_per_frame": args.patches_per_frame,
        "inference_s_per_frame": inference["frame_s"],
        "inference_cpu_s_per_frame": inference["frame_cpu_s"],
    }
    if args.macro_steps > 0:
        macro = _macro_frame_s(args)
        speed["macro"] = macro
        speed["margin"] = macro["frame_s"] / inference["frame_s"]
        speed["margin_cpu"] = macro["frame_cpu_s"] / inference["frame_cpu_s"] if inference["frame_cpu_s"] else None
    targets = {
        "overlap_below_0.5_percent": table["metric"]["overlap_percent"] < 0.5,
        "auc_above_vae": table["metric"]["pr_auc"] > table["vae"]["pr_auc"],
        "inference_margin_at_least_100x": speed.get("margin", 0.0) >= 100 if args.macro_steps > 0 else None,
    }
    if "no_inv" in table:
        targets["mare_below_no_inv"] = table["metric"]["mare"] < table["no_inv"]["mare"]
    return {
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "data": _describe(args, train, held, data_s),
        "lambda_rad": lam,
        "loss_weights": base.__dict__,
        "training": {
            **{name: _training_figures(model.report or {}) for name, model in models.items()},
            "vae": _training_figures(vae.report or {}),
        },
        "table": table,
        "auc_chance": metric_eval.chance_auc(held.labels),
        "paper": PAPER,
        "speed": speed,
        "targets": targets,
    }


def _describe(
    args: argparse.Namespace, train: LabelledPatches, held: LabelledPatches, seconds: float
) -> dict[str, Any]:
    return {
        "macro_grid": args.grid,
        "macro_ras": args.ras,
        "interval_ns": args.interval_ns,
        "train_patches": len(train),
        "train_classes": train.class_counts(),
        "heldout_patches": len(held),
        "heldout_classes": held.class_counts(),
        "heldout_pairs": len(held) * (len(held) - 1) // 2,
        "seconds": seconds,
    }
