"""dynim-small: 200,000 candidates in batches of 10,000, 2,000 selections in bursts of 100, ours beside the reference.

Cap 35,000, k = 10, exact index, then the weights. Seconds per phase, once with all
batches added before the selections and once with batches and bursts interleaved
(one burst after each batch, the remaining bursts at the end). LLNL's reference
sampler (:mod:`~mummi.sampler.bench_reference`) runs the identical stream in the
same invocation, alternating with ours over the repeats, and each phase's ratio
(reference / ours) is reported per repeat pair: median, min and max. Note that the
reference picks each burst from one stale ranking, while every pick here is exact
greedy. ``--busy-cores N`` measures everything again while N other processes spin,
and reports each sampler's slowdown against its idle run. Ours runs on
``--threads`` compiled-loop threads (default: every core), as the campaign's
coordinator would with ``resources.wfm_cores`` of them.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

from mummi.core.spec import SamplerSettings
from mummi.sampler.bench_load import busy_cores
from mummi.sampler.bench_reference import REFERENCE_K, drive_reference, load_reference, reference_dir
from mummi.sampler.bench_replay import blas_threads, compile_kernels, drive
from mummi.sampler.dynim import DynimSampler
from mummi.sampler.kernels import sampler_threads
from mummi.sampler.streams import MixtureStream

ORDERINGS = {"adds_then_selections": False, "interleaved": True}
PHASES = ("add_s", "select_s", "weights_s", "total_s")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--candidates", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--selections", type=int, default=2_000)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--cap", type=int, default=35_000)
    parser.add_argument("--k", type=int, default=REFERENCE_K)
    parser.add_argument("--index", choices=("flat", "ivf", "hnsw"), default="flat")
    parser.add_argument("--decay", type=float, default=0.85)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each sampler per ordering and load")
    parser.add_argument("--blas-threads", type=int, default=1, help="numpy BLAS threads (0: leave as is)")
    parser.add_argument("--threads", type=int, default=0, help="our compiled loops' threads (0: every core)")
    parser.add_argument("--busy-cores", type=int, default=0, help="also measure with this many cores kept busy")
    parser.add_argument("--reference", default=None, help="directory holding LLNL's dynim package")
    parser.add_argument("--no-reference", action="store_true", help="time ours only")


def _steps(args: argparse.Namespace) -> list[tuple[np.ndarray, int]]:
    stream = MixtureStream(decay=args.decay, seed=args.seed)
    batches = [stream.draw(min(args.batch, args.candidates - i)) for i in range(0, args.candidates, args.batch)]
    bursts = [args.burst] * (args.selections // args.burst)
    steps = [(x, bursts[i] if i < len(bursts) else 0) for i, x in enumerate(batches)]
    return steps + [(batches[0][:0], b) for b in bursts[len(batches) :]]


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def _side_by_side(args: argparse.Namespace, steps: list, reference) -> dict[str, dict]:
    """Both samplers on ``steps`` in each ordering, alternating which runs first over the repeats."""
    settings = SamplerSettings(k=args.k, candidate_cap=args.cap, index=args.index)
    compile_kernels(15, args.k)
    out: dict[str, dict] = {}
    for ordering, interleave in ORDERINGS.items():
        runs: dict[str, list[dict[str, float]]] = {"ours": [], "reference": []}
        for repeat in range(args.repeats):
            order = ("ours", "reference") if repeat % 2 == 0 else ("reference", "ours")
            for who in order:
                if who == "ours":
                    with blas_threads(args.blas_threads or None):
                        runs["ours"].append(drive(DynimSampler(15, settings, seed=args.seed), steps, interleave))
                elif reference is not None:
                    runs["reference"].append(
                        drive_reference(reference, 15, steps, interleave, args.cap, settings.warmup, args.seed)
                    )
        out[ordering] = {who: {p: _spread([r[p] for r in rs]) for p in PHASES} for who, rs in runs.items() if rs}
        if runs["reference"]:
            out[ordering]["ratio"] = {
                p: _spread([r[p] / max(o[p], 1e-9) for r, o in zip(runs["reference"], runs["ours"])]) for p in PHASES
            }
    return out


def _slowdowns(idle: dict[str, dict], busy: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Median total under load over median total idle, per ordering and sampler."""
    return {
        ordering: {who: round(busy[ordering][who]["total_s"]["median"] / idle[ordering][who]["total_s"]["median"], 2)
                   for who in ("ours", "reference") if who in idle[ordering]}
        for ordering in idle
    }  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, object]:
    steps = _steps(args)
    reference, why = (None, "--no-reference") if args.no_reference else load_reference(reference_dir(args.reference))
    threads = sampler_threads(args.threads or None)
    result: dict[str, object] = {
        "index": args.index, "candidates": args.candidates, "selections": args.selections, "k": args.k,
        "threads": threads, "reference": "LLNL/dynim" if reference is not None else f"not run: {why}",
    }  # fmt: skip
    if reference is not None and args.k != REFERENCE_K:
        result["reference_k"] = REFERENCE_K
    result["idle"] = idle = _side_by_side(args, steps, reference)
    if args.busy_cores:
        with busy_cores(args.busy_cores):
            result[f"busy_{args.busy_cores}"] = busy = _side_by_side(args, steps, reference)
        result["slowdown_vs_idle"] = _slowdowns(idle, busy)
    return result
