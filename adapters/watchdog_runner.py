"""``python -I -S watchdog_runner.py EXIT_FILE [OPTIONS] -- COMMAND...``

Runs COMMAND in a session of its own and watches over it where no coordinator
can signal it (a Parsl worker on another node): it stops COMMAND (SIGTERM, then
SIGKILL after ``--grace`` seconds) at ``--walltime`` or when ``--cancel-file``
appears, and writes COMMAND's exit code (128 + N for signal N) to EXIT_FILE,
atomically, with the reason it was stopped (``walltime``, ``cancelled``) as a
second line; ``--started-file`` receives the host's name when COMMAND starts.
SIGTERM and SIGINT sent to the runner itself are left to COMMAND's session.

It imports nothing beyond the standard library and is run by its path, so the
interpreter starts without ``site``. (The local and Slurm backends, which signal
their jobs themselves, use the lighter ``job_runner.sh``.)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

USAGE = (
    "python -I -S watchdog_runner.py EXIT_FILE [--walltime S --grace S --cancel-file PATH --started-file PATH] "
    "-- COMMAND..."
)


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") < 1 or argv.index("--") == len(argv) - 1:
        sys.stderr.write(f"usage: {USAGE}\n")
        return 2
    split = argv.index("--")
    exit_file, options, command = Path(argv[0]), _options(argv[1:split]), argv[split + 1 :]
    # A handler, not SIG_IGN, which COMMAND would inherit.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _outlive)
    if "started-file" in options:
        _write_atomically(Path(options["started-file"]), f"{socket.gethostname()}\n")
    try:
        child = subprocess.Popen(command, start_new_session=True)
    except OSError as err:
        sys.stderr.write(f"watchdog_runner: cannot start {command[0]!r}: {err}\n")
        _write_atomically(exit_file, "127\n")
        return 127
    reason = _watch(child, options)
    code = child.wait()
    # A child killed by signal N reports -N; shells report 128 + N.
    code = 128 - code if code < 0 else code
    _write_atomically(exit_file, f"{code}\n{reason}\n" if reason else f"{code}\n")
    return code


def _options(args: list[str]) -> dict[str, str]:
    """``--name value`` pairs before ``--``."""
    if len(args) % 2 or not all(a.startswith("--") for a in args[::2]):
        raise SystemExit(f"usage: {USAGE}")
    return {name[2:]: value for name, value in zip(args[::2], args[1::2])}


def _watch(child: subprocess.Popen[bytes], options: dict[str, str]) -> str:
    """Stop COMMAND (its own session here) at its walltime or when the cancel file appears.

    SIGTERM first, SIGKILL ``grace`` seconds later; returns why it was stopped ("" if it was not).
    """
    started = time.monotonic()
    walltime = float(options.get("walltime", "inf"))
    grace = float(options.get("grace", "30"))
    cancel = Path(options["cancel-file"]) if "cancel-file" in options else None
    reason, stop_at = "", None
    while child.poll() is None:
        if not reason and cancel is not None and cancel.exists():
            reason = "cancelled"
        elif not reason and time.monotonic() - started >= walltime:
            reason = "walltime"
        if reason and stop_at is None:
            stop_at = time.monotonic()
            _signal_session(child.pid, signal.SIGTERM)
        elif stop_at is not None and time.monotonic() - stop_at >= grace:
            _signal_session(child.pid, signal.SIGKILL)
        try:
            child.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            pass
    return reason


def _signal_session(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass


def _outlive(_signum: int, _frame: object) -> None:
    """The runner stays to stop COMMAND at its walltime or on cancel, and to record how it ended."""


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
