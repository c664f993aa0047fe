"""``mummi-bench backend``: trivial jobs through each live backend, side by side in one run.

For each backend asked for (``--backend local,flux,slurm``): ``--jobs`` jobs of
``true`` handed over in one ``submit`` and polled with ``status`` until all have
ended; reported: submissions/s, completions/s (end to end) and the coordinator's
own CPU time per job. For Flux the same number of jobs also goes through Flux's
own ``flux submit --cc`` (waited for with ``flux queue drain``) in the same
instance, and the ratio of the two end-to-end rates is reported. A Flux instance
(4 fake nodes) or a Slurm allocation is made for the run when none is given.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mummi.adapters.backend import Backend, JobSpec
from mummi.adapters.flux import FluxBackend, local_instance
from mummi.adapters.local import LocalBackend
from mummi.adapters.slurm import SlurmBackend
from mummi.core.spec import JobResources
from mummi.core.states import JobState

Reference = Callable[[int], dict[str, float]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="local,flux,slurm", help="comma-separated backends (default: all three)")
    parser.add_argument("--jobs", type=int, default=1000, help="trivial jobs per backend")
    parser.add_argument("--slots", type=int, default=8, help="the local backend's core slots")
    parser.add_argument("--flux-uri", default=None, help="default: FLUX_URI, else a 4-node instance made for the run")
    parser.add_argument("--slurm-job", default=None, help="default: SLURM_JOB_ID, else an allocation made for the run")


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mummi-bench-") as tmp:
        for name in [b.strip() for b in args.backend.split(",") if b.strip()]:
            with _backend(name, args, Path(tmp) / name) as (backend, reference):
                figures = measure(backend, args.jobs, Path(tmp) / name)
                if reference is not None:
                    ref = reference(args.jobs)
                    figures["reference"] = ref
                    figures["completions_vs_reference"] = figures["completions_per_s"] / ref["completions_per_s"]
                results[name] = figures
    return {"jobs": args.jobs, "backends": results}


def measure(backend: Backend, n: int, workdir: Path) -> dict[str, Any]:
    """Submit ``n`` jobs of ``true`` in one call, poll until all ended; rates and coordinator CPU per job."""
    jobs = [
        JobSpec(
            name=f"bench-{i}",
            command=("true",),
            resources=JobResources(walltime_min=30.0),
            workdir=workdir / "work",
            log_path=workdir / "logs" / f"{i}.log",
        )  # fmt: skip
        for i in range(n)
    ]
    cpu0, t0 = time.process_time(), time.perf_counter()
    ids = backend.submit(jobs)
    submitted = time.perf_counter() - t0
    polls = 0
    while True:
        status = backend.status(ids)
        polls += 1
        if all(s.state.terminal for s in status.values()):
            break
        time.sleep(0.02)
    total, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    backend.close()
    return {
        "submit_s": round(submitted, 3),
        "submissions_per_s": round(n / submitted, 1),
        "total_s": round(total, 3),
        "completions_per_s": round(n / total, 1),
        "coordinator_cpu_ms_per_job": round(1000 * cpu / n, 3),
        "polls": polls,
        "failed": sum(s.state is not JobState.DONE for s in status.values()),
    }


@contextlib.contextmanager
def _backend(name: str, args: argparse.Namespace, workdir: Path) -> Iterator[tuple[Backend, Reference | None]]:
    if name == "local":
        yield LocalBackend(workdir / "state", cores=args.slots, gpus=0), None
    elif name == "flux":
        with contextlib.ExitStack() as stack:
            uri = args.flux_uri or os.environ.get("FLUX_URI") or stack.enter_context(local_instance())
            yield FluxBackend(uri), lambda n: _flux_submit_cc(uri, n)
    elif name == "slurm":
        with contextlib.ExitStack() as stack:
            job_id = args.slurm_job or os.environ.get("SLURM_JOB_ID") or stack.enter_context(_allocation())
            yield SlurmBackend(workdir / "state", job_id), None
    else:
        raise SystemExit(f"mummi-bench backend: unknown backend {name!r}; allowed: local, flux, slurm")


def _flux_submit_cc(uri: str, n: int) -> dict[str, float]:
    """Flux's own rate for the same jobs: ``flux submit --cc=1-N true``, then ``flux queue drain``."""
    flux = shutil.which("flux") or "flux"
    env = {**os.environ, "FLUX_URI": uri}
    t0 = time.perf_counter()
    subprocess.run([flux, "submit", "--quiet", f"--cc=1-{n}", "true"], env=env, check=True, timeout=1800)
    submitted = time.perf_counter() - t0
    subprocess.run([flux, "queue", "drain"], env=env, check=True, timeout=1800)
    total = time.perf_counter() - t0
    return {"submit_s": round(submitted, 3), "total_s": round(total, 3), "completions_per_s": round(n / total, 1)}


@contextlib.contextmanager
def _allocation() -> Iterator[str]:
    done = subprocess.run(["salloc", "--no-shell", "-N1", "--exclusive", "--time=60", "-J", "mummi-bench"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    match = re.search(r"Granted job allocation (\d+)", done.stdout + done.stderr)
    if match is None:
        raise SystemExit(f"mummi-bench backend: salloc failed: {done.stderr.strip()}")
    try:
        yield match.group(1)
    finally:
        subprocess.run(["scancel", match.group(1)], capture_output=True, timeout=60)
