"""dynim-small: 200,000 candidates in batches of 10,000, 2,000 selections in bursts of 100.

Cap 35,000, k = 10, exact index, then the weights. Seconds per phase, once with all
batches added before the selections and once with batches and bursts interleaved
(one burst after each batch, the remaining bursts at the end). For scale: the
reference implementation (LLNL/dynim) takes about 9.5 s on a 2-core machine
(selection about 7.5 s of it) while picking whole bursts from one stale scoring
pass; every pick here is exact greedy.
"""

from __future__ import annotations

import argparse

import numpy as np

from mummi.core.spec import SamplerSettings
from mummi.sampler.bench_replay import blas_threads, drive
from mummi.sampler.dynim import DynimSampler
from mummi.sampler.streams import MixtureStream

REFERENCE_S = 9.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--candidates", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--selections", type=int, default=2_000)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--cap", type=int, default=35_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--index", choices=("flat", "ivf", "hnsw"), default="flat")
    parser.add_argument("--decay", type=float, default=0.85)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs per ordering")
    parser.add_argument("--blas-threads", type=int, default=1, help="numpy BLAS threads (0: leave as is)")


def _steps(args: argparse.Namespace) -> list[tuple[np.ndarray, int]]:
    stream = MixtureStream(decay=args.decay, seed=args.seed)
    batches = [stream.draw(min(args.batch, args.candidates - i)) for i in range(0, args.candidates, args.batch)]
    bursts = [args.burst] * (args.selections // args.burst)
    steps = [(x, bursts[i] if i < len(bursts) else 0) for i, x in enumerate(batches)]
    return steps + [(batches[0][:0], b) for b in bursts[len(batches) :]]


def run(args: argparse.Namespace) -> dict[str, object]:
    steps = _steps(args)
    settings = SamplerSettings(k=args.k, candidate_cap=args.cap, index=args.index)
    result: dict[str, object] = {"index": args.index, "candidates": args.candidates, "selections": args.selections}
    for name, interleave in (("adds_then_selections", False), ("interleaved", True)):
        with blas_threads(args.blas_threads or None):
            runs = [drive(DynimSampler(15, settings, seed=args.seed), steps, interleave) for _ in range(args.repeats)]
        best = min(runs, key=lambda r: r["total_s"])
        result[name] = {**best, "speedup_vs_reference": round(REFERENCE_S / best["total_s"], 1)}
    result["reference_s"] = REFERENCE_S
    return result
