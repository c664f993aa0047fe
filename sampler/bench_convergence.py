"""dynim-convergence: the paper's synthetic convergence study (seed 000, Fig. 6).

2-D data: two Gaussians of 4,800 points each and 400 uniform points
(:func:`~mummi.sampler.streams.two_gaussians_and_uniform`), all candidates from the
start. 500 selection events of 2 samples each, DynIm (exact, k = 10, the first 2
picks random) against uniformly random picks, 25 repeats. Densities are Gaussian
KDEs (Scott's bandwidth, binned on a 100 x 100 grid over the data's range); along
the way the KL divergences KL(sampled || reference) of (1) random vs uniform,
(2) random vs true, (3) DynIm vs uniform and (4) weighted DynIm vs true, the
weights being DynIm's. Writes ``convergence.json`` and ``convergence.png`` to
``--out`` and reports where curves (3) and (4) cross (the paper: about 470 samples).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from mummi.core.spec import SamplerSettings
from mummi.sampler.dynim import DynimSampler
from mummi.sampler.streams import two_gaussians_and_uniform

CURVES = ("random_vs_uniform", "random_vs_true", "dynim_vs_uniform", "weighted_dynim_vs_true")
GRID = 100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--per-event", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--every", type=int, default=5, help="evaluate the densities every this many events")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("dynim-convergence"))


class Grid:
    """Binned Gaussian KDEs on a fixed grid, normalised to sum 1."""

    def __init__(self, data: np.ndarray) -> None:
        self.lo, self.hi = data.min(axis=0), data.max(axis=0)
        self.cell = (self.hi - self.lo) / (GRID - 1)

    def density(self, x: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=float)
        idx = np.clip(np.rint((x - self.lo) / self.cell).astype(int), 0, GRID - 1)
        hist = np.zeros((GRID, GRID))
        np.add.at(hist, (idx[:, 0], idx[:, 1]), w)
        # Scott's rule with the effective sample size of weighted data, per axis.
        n_eff = w.sum() ** 2 / (w**2).sum()
        mean = (w[:, None] * x).sum(0) / w.sum()
        std = np.sqrt((w[:, None] * (x - mean) ** 2).sum(0) / w.sum())
        sigma = np.maximum(n_eff ** (-1 / 6) * std / self.cell, 0.5)
        z = gaussian_filter(hist, sigma, mode="constant", truncate=5.0)
        z = np.maximum(z, 0)
        return z / z.sum()


def kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) on the grid; cells where q vanishes are floored at 1e-300."""
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-300))))


def one_repeat(args: argparse.Namespace, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    data = two_gaussians_and_uniform(rng)
    grid = Grid(data)
    true, uniform = grid.density(data), np.full((GRID, GRID), 1.0 / GRID**2)
    ids = [str(i) for i in range(len(data))]
    settings = SamplerSettings(k=args.k, candidate_cap=len(data), warmup=args.per_event)
    sampler = DynimSampler(2, settings, seed=int(rng.integers(2**31)))
    sampler.add_candidates(ids, data)
    random_order = rng.permutation(len(data))
    counts, values = [], []
    for event in range(1, args.events + 1):
        sampler.select(args.per_event)
        if event % args.every:
            continue
        n = event * args.per_event
        chosen = data[np.array(sampler.selected_ids, dtype=int)]
        rand = data[random_order[:n]]
        dyn_density = grid.density(chosen)
        rand_density = grid.density(rand)
        weighted = grid.density(chosen, sampler.weight_array())
        counts.append(n)
        values.append([kl(rand_density, uniform), kl(rand_density, true), kl(dyn_density, uniform), kl(weighted, true)])
    return np.array(counts), np.array(values)


def crossing(counts: np.ndarray, below: np.ndarray, above: np.ndarray) -> float | None:
    """First sample count where ``below`` rises to ``above`` (linear interpolation), or None."""
    diff = below - above
    for i in range(1, len(diff)):
        if diff[i - 1] < 0 <= diff[i]:
            t = -diff[i - 1] / (diff[i] - diff[i - 1])
            return float(counts[i - 1] + t * (counts[i] - counts[i - 1]))
    return None


def plot(path: Path, counts: np.ndarray, mean: np.ndarray, std: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    styles = [("#de2d26", "--"), ("#a50f15", "-"), ("#2ca25f", "--"), ("#006d2c", "-")]
    labels = ["(1) random vs uniform", "(2) random vs true", "(3) DynIm vs uniform", "(4) weighted DynIm vs true"]
    for i, ((color, style), label) in enumerate(zip(styles, labels)):
        ax.fill_between(counts, mean[:, i] - std[:, i], mean[:, i] + std[:, i], color=color, alpha=0.3)
        ax.plot(counts, mean[:, i], color=color, linestyle=style, label=label)
    ax.set_xlabel("number of samples selected")
    ax.set_ylabel("KL divergence")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def run(args: argparse.Namespace) -> dict[str, object]:
    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    runs = [one_repeat(args, rng) for _ in range(args.repeats)]
    counts = runs[0][0]
    values = np.stack([v for _, v in runs])  # (repeats, points, 4)
    mean, std = values.mean(axis=0), values.std(axis=0)
    cross = crossing(counts, mean[:, 2], mean[:, 3])
    args.out.mkdir(parents=True, exist_ok=True)
    table = {"samples": counts.tolist(), **{f"{c}_mean": mean[:, i].round(5).tolist() for i, c in enumerate(CURVES)}}
    table.update({f"{c}_std": std[:, i].round(5).tolist() for i, c in enumerate(CURVES)})
    (args.out / "convergence.json").write_text(json.dumps(table, indent=1))
    plot(args.out / "convergence.png", counts, mean, std)
    return {
        "repeats": args.repeats,
        "events": args.events,
        "per_event": args.per_event,
        "crossing_dynim_vs_uniform_over_weighted_vs_true_samples": None if cross is None else round(cross, 1),
        "paper_crossing_samples": 470,
        "final_kl": {c: round(float(mean[-1, i]), 4) for i, c in enumerate(CURVES)},
        "numbers": str(args.out / "convergence.json"),
        "plot": str(args.out / "convergence.png"),
        "seconds": round(time.perf_counter() - start, 2),
    }
