"""Macro model throughput: lipid steps/s (each with its RAS substeps), RAS substeps/s, memory.

``mummi-bench macro --grid 1200 --steps 20 --ras 300`` runs the full-scale membrane
(1 µm², 14 species, 300 RAS) from the default parameters; the box follows the grid
at the paper's spacing (1000 nm / 1200 points). The first ``--warmup`` steps are
not timed.
"""

from __future__ import annotations

import argparse
import resource
import time
from typing import Any

from mummi.core.spec import MacroSettings
from mummi.macro.backend import tune_allocator
from mummi.macro.model import MacroModel
from mummi.macro.params import default_parameters

SPACING_NM = 1000.0 / 1200.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--grid", type=int, default=120, help="grid points per edge (120, 600, 1200)")
    parser.add_argument("--steps", type=int, default=20, help="timed lipid steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed lipid steps first")
    parser.add_argument("--ras", type=int, default=None, help="RAS particles (default: 300 per µm², at least 8)")
    parser.add_argument("--compute", choices=("numpy", "torch"), default="numpy")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--no-noise", action="store_true", help="switch the conserved lipid noise off")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> dict[str, Any]:
    tune_allocator()
    box = args.grid * SPACING_NM
    n_ras = args.ras if args.ras is not None else max(8, round(300 * (box / 1000.0) ** 2))
    settings = MacroSettings(box_nm=box, grid_points=args.grid, n_ras=n_ras, noise=not args.no_noise)
    t0 = time.perf_counter()
    model = MacroModel(
        default_parameters(settings.temperature_K), settings, seed=args.seed, compute=args.compute, dtype=args.dtype
    )
    setup_s = time.perf_counter() - t0
    for _ in range(args.warmup):
        model.step()
    model.timings.clear()
    _sync(model)
    t0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        model.step()
    _sync(model)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    substeps = args.steps * model.substeps
    ras_s = model.timings["ras_substeps"]
    return {
        "grid": args.grid,
        "box_nm": box,
        "species": int(model.params.mean_concentration_per_nm2.size),
        "ras": n_ras,
        "compute": model.backend.name,
        "device": model.backend.device,
        "dtype": args.dtype,
        "noise": settings.noise,
        "steps": args.steps,
        "dt_ns": settings.dt_ns,
        "ras_substeps_per_step": model.substeps,
        "setup_s": round(setup_s, 3),
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "lipid_steps_per_s": round(args.steps / wall, 3),
        "ras_substeps_per_s": round(substeps / wall, 1),
        "ras_substeps_per_s_ras_only": round(substeps / ras_s, 1) if ras_s else None,
        "macro_us_per_day": round(args.steps / wall * settings.dt_ns * 86400 / 1000, 1),
        "minutes_for_575_steps": round(575 * wall / args.steps / 60, 2),
        "seconds_by_phase_per_step": {k: round(v / args.steps, 4) for k, v in model.timings.items()},
        "positivity_fixes": model.positivity_fixes,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "gpu_peak_mb": _gpu_peak_mb(model),
    }


def _sync(model: MacroModel) -> None:
    if model.backend.device == "cuda":
        model.backend.torch.cuda.synchronize()  # type: ignore[attr-defined]


def _gpu_peak_mb(model: MacroModel) -> float | None:
    if model.backend.device != "cuda":
        return None
    return round(model.backend.torch.cuda.max_memory_allocated() / 2**20, 1)  # type: ignore[attr-defined]
