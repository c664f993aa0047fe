"""Command-line entry points: ``mummi-run`` and ``mummi-status``.

Exit codes are those of :mod:`mummi.core.exit_codes`. Every check that can refuse
a spec runs when it is loaded, so ``--validate`` and a run refuse the same specs,
and a refused spec leaves nothing behind.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sqlite3
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

from mummi.adapters.backend import BackendError, backend_class
from mummi.adapters.gromacs import system_input_problems
from mummi.adapters.md_engine import missing_executables
from mummi.core.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_RESUMABLE, EXIT_USAGE, EXIT_WORKDIR
from mummi.core.layout import CampaignLayout
from mummi.core.spec import CampaignSpec
from mummi.core.spec_loader import SpecError, load_spec
from mummi.core.unreadable import UnreadableFileError

log = logging.getLogger("mummi.run")


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mummi-run",
        description="Run, or resume, an ML-steered multiscale campaign described by a YAML spec.",
        epilog="Exit codes: 0 done, 1 failed, 2 invalid spec or usage, 3 workdir refused, 75 stopped but resumable.",
    )
    parser.add_argument("spec", type=Path, help="campaign YAML file, e.g. specs/laptop.yaml")
    parser.add_argument("--validate", action="store_true", help="print the resolved settings and exit")
    parser.add_argument(
        "--dry-run", action="store_true", help="local backend and mock MD engine: the whole loop on a laptop"
    )
    parser.add_argument("--fresh", action="store_true", help="start a new campaign; refuses if the workdir holds one")
    parser.add_argument("--force", action="store_true", help="with --fresh: delete the existing campaign first")
    parser.add_argument("--chain", type=int, metavar="N", default=None,
                        help="submit up to N follow-up allocations, one at a time, until the campaign is done "
                             "(in an sbatch job; overrides campaign.chain)")  # fmt: skip
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def run_main(argv: Sequence[str] | None = None) -> int:
    args = _run_parser().parse_args(argv)
    _configure_logging(args.verbose)
    os.umask(os.umask(0) | stat.S_IWOTH)  # nothing the campaign (or its local jobs) writes is writable by any user
    if args.force and not args.fresh:
        sys.stderr.write("mummi-run: --force only applies with --fresh\n")
        return EXIT_USAGE
    try:
        spec = load_spec(args.spec)
    except SpecError as err:
        sys.stderr.write(f"mummi-run: {err}\n")
        return EXIT_USAGE
    if args.chain is not None:
        try:
            spec = spec.with_chain(args.chain)
        except ValueError as err:
            sys.stderr.write(f"mummi-run: --chain {args.chain}: {err}\n")
            return EXIT_USAGE
    if args.dry_run:
        spec = spec.for_dry_run()
    try:
        backend_class(spec).preflight(spec)
    except BackendError as err:
        sys.stderr.write(f"mummi-run: {args.spec}: {err}\n")
        return EXIT_USAGE
    problems = [] if spec.resources.backend == "simulated" else missing_executables(spec)
    problems += _encoder_problems(spec, discarding=args.fresh and args.force) + system_input_problems(spec)
    if problems:
        sys.stderr.write("".join(f"mummi-run: {args.spec}: {problem}\n" for problem in problems))
        return EXIT_USAGE
    if args.validate:
        sys.stdout.write(f"# {args.spec}: valid. Resolved settings:\n{spec.to_yaml()}")
        return EXIT_OK
    return _run_campaign(spec, fresh=args.fresh, force=args.force)


def _encoder_problems(spec: CampaignSpec, *, discarding: bool) -> list[str]:
    """Where the encoder model the campaign would use does not fit the spec: the given encoder.model, or the model
    the campaign saved in its workdir (unless ``discarding``: --fresh --force deletes the campaign first)."""
    if spec.encoder.model is not None:
        return _given_model_problems(spec, spec.encoder.model)
    cdir = CampaignLayout(spec.campaign.workdir)
    if not cdir.encoder.is_dir() or (discarding and cdir.holds_campaign()):
        return []
    return _saved_model_problems(spec, cdir.encoder)


def _given_model_problems(spec: CampaignSpec, model: Path) -> list[str]:
    """A given encoder.model that is not a model, is not of encoder.kind, or whose latent size is not
    encoder.latent_dim."""
    from mummi.sampler.encoder import MANIFEST, saved_kind, saved_latent_dim

    try:
        dim, kind = saved_latent_dim(model), saved_kind(model)
    except ValueError as err:
        return [f"encoder.model: {err}; point it at a model saved by mummi-train-encoder"]
    want = spec.encoder.kind
    if kind != want:
        return [f"encoder.kind: the model {model / MANIFEST} was trained for encoder.kind {kind!r}, but the spec asks "
                f"for {want!r}; set encoder.kind: {kind}, or give a {want!r} model"]  # fmt: skip
    if dim != spec.encoder.latent_dim:
        return [f"encoder.model: the model in {model} has latent size {dim}, but encoder.latent_dim is "
                f"{spec.encoder.latent_dim}; set encoder.latent_dim: {dim}, or give a model of that size"]  # fmt: skip
    return []


def _saved_model_problems(spec: CampaignSpec, saved: Path) -> list[str]:
    """The campaign's saved encoder, when it was trained for another encoder.kind (the campaign would use it as is)."""
    from mummi.sampler.encoder import MANIFEST, Encoder, saved_kind

    want = spec.encoder.kind
    if not Encoder.exists(saved) or (kind := saved_kind(saved)) == want:
        return []
    return [f"encoder.kind: the campaign's saved model {saved / MANIFEST} was trained for encoder.kind {kind!r}, but "
            f"the spec asks for {want!r}; delete the model ({saved}) to train a {want!r} one, or set "
            f"encoder.kind: {kind}"]  # fmt: skip


def _run_campaign(spec: CampaignSpec, *, fresh: bool, force: bool) -> int:
    from mummi.sampler.process_memory import keep_freed_memory
    from mummi.workflow.campaign import CampaignError, prepare
    from mummi.workflow.coordinator import run_campaign
    from mummi.workflow.progress import summary

    keep_freed_memory()  # the sampler's arrays of every step reuse what the last one freed
    try:
        cdir, store, resuming = prepare(spec, fresh=fresh, force=force)
    except CampaignError as err:
        sys.stderr.write(f"mummi-run: {err}\n")
        return EXIT_WORKDIR
    log.info("%s campaign %r in %s", "resuming" if resuming else "created", spec.campaign.name, cdir.root)
    with store:
        try:
            code = run_campaign(spec, cdir, store)
        except BackendError as err:
            sys.stderr.write(f"mummi-run: {err}\n")
            return EXIT_USAGE
        except UnreadableFileError as err:
            sys.stderr.write(f"mummi-run: {err}; the campaign stopped and changed nothing more; remove or restore the "
                             "file, then run the same command again\n")  # fmt: skip
            return EXIT_FAILED
        except (OSError, sqlite3.OperationalError) as err:
            if not _disk_full(err):
                raise
            where = getattr(err, "filename", None) or cdir.root
            sys.stderr.write(f"mummi-run: no space left writing {where} ({err}); free space under {cdir.root}, "
                             "then run the same command again\n")  # fmt: skip
            return EXIT_RESUMABLE
    sys.stdout.write(summary(cdir.root) + "\n")
    if code == EXIT_RESUMABLE:
        sys.stdout.write("  stopped early but resumable: run the same command again to continue\n")
    return code


def _disk_full(err: Exception) -> bool:
    """Whether ``err`` says the disk (or the user's quota) is full."""
    if isinstance(err, OSError):
        return err.errno in (errno.ENOSPC, errno.EDQUOT)
    return getattr(err, "sqlite_errorcode", None) == getattr(sqlite3, "SQLITE_FULL", 13) or "disk is full" in str(err)


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in ("faiss.loader", "matplotlib", "parsl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# ------------------------------------------------------------------ status
def status_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mummi-status", description="Show a campaign's progress from its state store (safe while it runs)."
    )
    parser.add_argument("workdir", type=Path, help="the campaign's workdir (holds campaign.db)")
    parser.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    parser.add_argument("--report", action="store_true",
                        help="write the HTML report into WORKDIR/report instead (as mummi-report WORKDIR)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.report:
        from mummi.workflow.report import write_report

        return write_report(args.workdir, None, "mummi-status")
    from mummi.workflow.status import StatusError, collect, render

    try:
        status = collect(args.workdir)
    except StatusError as err:
        sys.stderr.write(f"mummi-status: {err}\n")
        return EXIT_USAGE
    if args.json:
        sys.stdout.write(json.dumps(status, indent=2) + "\n")
    else:
        render(status)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(run_main())
