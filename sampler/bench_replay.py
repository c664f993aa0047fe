"""dynim-replay: DynIm at the paper's campaign scale on a synthetic 15-D stream.

2,061,900 candidates arrive in batches; after each batch a burst of selections
(119,686 in all), cap 35,000, k = 10; then the weights. The stream is a mixture of
Gaussian modes plus a uniform part (:class:`~mummi.sampler.streams.MixtureStream`).
The default index is the exact one (``flat``): every arrival batch is searched
group by group, pruned by the triangle inequality (:mod:`~mummi.sampler.groups`),
and selection is exact greedy. ``--index ivf`` or ``hnsw`` runs an approximate
index instead; then, with ``--compare N``, the same schedule scaled down to N
candidates is run with the exact and the approximate index: the k-NN recall of
the approximate index (and how far it overestimates scores), the selections that
differ, and how many points the approximate weights assign to a wrong nearest
selected point. Recall and overestimate are also measured on the full run's final
selection: they fall as S grows.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from mummi.core.spec import SamplerSettings
from mummi.sampler.cells import Cells
from mummi.sampler.dynim import SELECTED, DynimSampler
from mummi.sampler.index import make_index
from mummi.sampler.knn import knn_scores
from mummi.sampler.streams import MixtureStream, schedule

CANDIDATES, SELECTIONS = 2_061_900, 119_686


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--candidates", type=int, default=CANDIDATES)
    parser.add_argument("--selections", type=int, default=SELECTIONS)
    parser.add_argument(
        "--batch", type=int, default=10_000, help="arrivals per batch; a burst of selections follows each"
    )
    parser.add_argument("--cap", type=int, default=35_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--index", choices=("flat", "ivf", "hnsw"), default="flat", help="flat is exact")
    parser.add_argument("--probe", type=int, default=None, help="IVF nprobe / HNSW efSearch")
    parser.add_argument(
        "--decay", type=float, default=0.85, help="per-axis scale ratio of the Gaussian modes (1: isotropic)"
    )
    parser.add_argument("--uniform", type=float, default=0.02, help="fraction of uniform points")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--compare",
        type=int,
        default=200_000,
        help="with an approximate index: candidates of the exact-vs-approximate comparison (0: skip)",
    )
    parser.add_argument("--blas-threads", type=int, default=1, help="numpy BLAS threads (0: leave as is)")


@contextlib.contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Limit numpy's BLAS to ``n`` threads while benchmarking (needs threadpoolctl; ``None``: leave as is).

    The sampler's GEMMs are small; on a shared 2-core machine extra BLAS threads
    mostly spin. FAISS keeps its own OpenMP threads.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        n = None
    if n is None:
        yield
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield


def drive(sampler: DynimSampler, steps: Iterable[tuple[np.ndarray, int]], interleave: bool = True) -> dict[str, float]:
    """Feed (batch, burst) steps to ``sampler``, then weigh; seconds per phase.

    With ``interleave`` False all batches are added before all the selections.
    """
    return timed_phases(sampler.add_candidates, sampler.select, sampler.weight_array, steps, interleave)


def compile_kernels(dim: int, k: int) -> None:
    """Compile every kernel of the sampler (or load it from numba's cache), untimed: a small run in each ordering,
    and the searches of S by cells, which a sampler only uses once S has ``Cells.MIN_POINTS`` points."""
    stream = MixtureStream(dim=dim, seed=1)
    steps = [(stream.draw(2000), 150) for _ in range(3)]
    for interleave in (False, True):
        drive(DynimSampler(dim, SamplerSettings(k=k, candidate_cap=1500)), steps, interleave)
    points, q = stream.draw(600), stream.draw(300)
    cells = Cells(dim)
    dist, pos, _ = cells.search(points[:500], q, k)
    cells.refine(points, q, dist, pos, np.full(len(q), 500))


def timed_phases(
    add: Callable[[list[str], np.ndarray], object],
    select: Callable[[int], object],
    weigh: Callable[[], object],
    steps: Iterable[tuple[np.ndarray, int]],
    interleave: bool,
) -> dict[str, float]:
    """Seconds per phase of a sampler given by its ``add(ids, x)``, ``select(n)`` and ``weigh()`` on ``steps``."""
    seconds = {"add_s": 0.0, "select_s": 0.0, "weights_s": 0.0}
    n = 0
    bursts = []
    for x, burst in steps:
        ids = [f"p{i:08d}" for i in range(n, n + len(x))]
        n += len(x)
        t = time.perf_counter()
        add(ids, x)
        seconds["add_s"] += time.perf_counter() - t
        if interleave:
            t = time.perf_counter()
            select(burst)
            seconds["select_s"] += time.perf_counter() - t
        else:
            bursts.append(burst)
    for burst in bursts:
        t = time.perf_counter()
        select(burst)
        seconds["select_s"] += time.perf_counter() - t
    t = time.perf_counter()
    weigh()
    seconds["weights_s"] = time.perf_counter() - t
    seconds["total_s"] = sum(seconds.values())
    return {key: round(value, 3) for key, value in seconds.items()}


def _steps(args: argparse.Namespace, candidates: int, selections: int) -> Iterable[tuple[np.ndarray, int]]:
    stream = MixtureStream(decay=args.decay, uniform=args.uniform, seed=args.seed)
    for n, burst in schedule(candidates, selections, args.batch):
        yield stream.draw(n), burst


def _sampler(args: argparse.Namespace, index: str) -> DynimSampler:
    settings = SamplerSettings(k=args.k, candidate_cap=args.cap, index=index, index_probe=args.probe, device="auto")
    return DynimSampler(15, settings, seed=args.seed)


def index_accuracy(sampler: DynimSampler, queries: np.ndarray, k: int) -> dict[str, float]:
    """k-NN recall of the sampler's index, and how far it overestimates scores, on fresh queries."""
    truth = make_index("flat", sampler.dim)
    truth.add(sampler.selected_latents)
    dist, found = sampler._index.search(queries, k)
    exact_dist, exact = truth.search(queries, k)
    over = knn_scores(dist, sampler.n_selected) / knn_scores(exact_dist, sampler.n_selected) - 1
    return {
        "knn_recall": round(float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found, exact)])), 4),
        "score_overestimate_median": round(float(np.median(over)), 4),
        "score_overestimate_p90": round(float(np.quantile(over, 0.9)), 4),
    }


def exact_weights(sampler: DynimSampler) -> np.ndarray:
    """Weights of the sampler's selection with every nearest selected point found exactly."""
    flat = make_index("flat", sampler.dim)
    flat.add(sampler.selected_latents)
    others = np.flatnonzero(sampler._status.view != SELECTED)
    _, pos = flat.search(sampler._x[others], 1)
    return 1.0 + np.bincount(pos[:, 0], minlength=sampler.n_selected)


def compare(args: argparse.Namespace, candidates: int) -> dict[str, object]:
    """Exact vs approximate index on a scaled-down run of the same schedule."""
    selections = round(args.selections * candidates / args.candidates)
    runs = {}
    for index in ("flat", args.index):
        sampler = _sampler(args, index)
        seconds = drive(sampler, _steps(args, candidates, selections))
        runs[index] = (sampler, seconds)
    exact, approx = runs["flat"][0], runs[args.index][0]
    same_order = sum(a == b for a, b in zip(exact.selected_ids, approx.selected_ids))
    queries = MixtureStream(decay=args.decay, uniform=args.uniform, seed=args.seed + 1).draw(2000)
    w_approx = approx.weight_array()
    return {
        "candidates": candidates,
        "selections": exact.n_selected,
        "exact_seconds": runs["flat"][1],
        "approx_seconds": runs[args.index][1],
        **index_accuracy(approx, queries, args.k),
        "selections_same_position": same_order,
        "selections_differing_position": exact.n_selected - same_order,
        "selected_ids_not_in_exact_run": len(set(approx.selected_ids) - set(exact.selected_ids)),
        "weights_points_misassigned": int(np.abs(w_approx - exact_weights(approx)).sum() // 2),
    }


def run(args: argparse.Namespace) -> dict[str, object]:
    with blas_threads(args.blas_threads or None):
        return _run(args)


def _run(args: argparse.Namespace) -> dict[str, object]:
    compile_kernels(15, args.k)
    start = time.perf_counter()
    sampler = _sampler(args, args.index)
    seconds = drive(sampler, _steps(args, args.candidates, args.selections))
    result: dict[str, object] = {
        "index": args.index,
        "exact": sampler._index.exact,
        "stream": {"dim": 15, "modes": 8, "decay": args.decay, "uniform": args.uniform, "seed": args.seed},
        "candidates": sampler.n_seen,
        "selections": sampler.n_selected,
        "discarded": sampler.n_discarded,
        "batch": args.batch,
        "bursts": -(-args.candidates // args.batch),
        "cap": args.cap,
        "k": args.k,
        "seconds": seconds,
        "wall_s_with_stream_generation": round(time.perf_counter() - start, 3),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
    }
    if not sampler._index.exact:
        queries = MixtureStream(decay=args.decay, uniform=args.uniform, seed=args.seed + 1).draw(2000)
        result["index_accuracy_on_final_selection"] = index_accuracy(sampler, queries, args.k)
    del sampler
    if args.compare and args.index != "flat":
        result["exact_vs_approximate"] = compare(args, args.compare)
    return result
