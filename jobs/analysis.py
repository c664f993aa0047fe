"""``python -m mummi.jobs.analysis --spec SPEC --sim-dir DIR [--follow]``: in situ RDF analysis.

Counts every frame of the sim's trajectory not yet counted (``rdf_counts.npz``
says how many are); with ``--follow`` it keeps polling the growing trajectory
until the sim's status record says done, counts the last frames and writes
``analysis.status.json``. See :mod:`mummi.analysis.insitu`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from mummi.analysis.insitu import analyse_sim
from mummi.core.simdir import is_done
from mummi.core.spec import CampaignSpec
from mummi.core.states import JobKind
from mummi.jobs.entry import sim_job_main


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--follow", action="store_true", help="follow the growing trajectory until the sim is done")


def _run(spec: CampaignSpec, sim_dir: Path, args: argparse.Namespace) -> int:
    if not is_done(sim_dir, "analysis"):
        analyse_sim(sim_dir, spec, follow=args.follow)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return sim_job_main(JobKind.ANALYSIS, argv, _run, _add_arguments)


if __name__ == "__main__":
    raise SystemExit(main())
