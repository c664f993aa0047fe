"""``mummi-bench NAME [options]``: benchmarks that print one JSON object last.

Each benchmark lives beside the code it measures, in a module that defines
``add_arguments(parser)`` and ``run(args) -> dict``; this table names them. The
module is imported only when its benchmark is asked for, so one benchmark's heavy
dependencies never slow another down.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
from collections.abc import Sequence

from mummi.sampler.process_memory import keep_freed_memory

BENCHMARKS: dict[str, str] = {
    "macro": "mummi.macro.bench",
    "dynim-replay": "mummi.sampler.bench_replay",
    "dynim-small": "mummi.sampler.bench_small",
    "dynim-convergence": "mummi.sampler.bench_convergence",
    "encoder": "mummi.sampler.bench_encoder",
    "metric": "mummi.sampler.bench_metric",
    "analysis": "mummi.analysis.bench",
    "backend": "mummi.adapters.bench",
    "createsim": "mummi.adapters.bench_createsim",
    "replay": "mummi.workflow.bench_replay",
    "report": "mummi.workflow.bench_report",
    "scale": "mummi.workflow.bench_scale",
    "reliability": "mummi.workflow.bench_reliability",
}


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    import os

    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mummi-bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="name", required=True, metavar="NAME")
    for name, module_name in BENCHMARKS.items():
        sub.add_parser(name, help=f"see {module_name}", add_help=False)
    args, rest = parser.parse_known_args(argv)
    module = importlib.import_module(BENCHMARKS[args.name])
    bench_parser = argparse.ArgumentParser(prog=f"mummi-bench {args.name}", description=module.__doc__)
    module.add_arguments(bench_parser)
    bench_args = bench_parser.parse_args(rest)
    keep_freed_memory()  # as mummi-run does
    result = {"benchmark": args.name, "machine": machine(), **module.run(bench_args)}
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
