"""``python -I -S local_runner.py EXIT_FILE [OPTIONS] -- COMMAND...``

Pins itself to the cores in ``MUMMI_CPU_LIST`` (indices into this process's
allowed CPUs), runs COMMAND in the runner's process group (the backend starts the
runner in a session of its own), and writes COMMAND's exit code to EXIT_FILE
(atomically) when it ends. SIGTERM and SIGINT are for the
COMMAND: the backend signals the whole process group, so the runner outlives
them to record how COMMAND ended (forwarding them would deliver each twice, and a
second SIGTERM can catch a job while it exits). The local backend starts every job through
this runner so that a coordinator which restarted, and is no longer the job's
parent, can still learn how the job ended.

Where no coordinator can signal the job (a Parsl worker on another node), the
runner watches over it itself: with ``--walltime`` and ``--cancel-file`` it runs
COMMAND in a session of its own and stops it (SIGTERM, then SIGKILL after
``--grace`` seconds) at its walltime or when the cancel file appears, and adds
the reason (``walltime``, ``cancelled``) as a second line of EXIT_FILE;
``--started-file`` receives the host's name when COMMAND starts.

It imports nothing beyond the standard library (it starts once per job: an
import of numpy would cost a tenth of a second each time) and is run by its path,
so the interpreter can start without ``site``.
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
    "python -I -S local_runner.py EXIT_FILE [--walltime S --grace S --cancel-file PATH --started-file PATH] "
    "-- COMMAND..."
)


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") < 1 or argv.index("--") == len(argv) - 1:
        sys.stderr.write(f"usage: {USAGE}\n")
        return 2
    split = argv.index("--")
    exit_file, options, command = Path(argv[0]), _options(argv[1:split]), argv[split + 1 :]
    _pin(os.environ.get("MUMMI_CPU_LIST", ""))
    # A handler, not SIG_IGN: exec resets handlers to the default, so COMMAND still gets the signals.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _outlive)
    watch = "cancel-file" in options or "walltime" in options
    if "started-file" in options:
        _write_atomically(Path(options["started-file"]), f"{socket.gethostname()}\n")
    try:
        child = subprocess.Popen(command, start_new_session=watch)
    except OSError as err:
        sys.stderr.write(f"local_runner: cannot start {command[0]!r}: {err}\n")
        _write_atomically(exit_file, "127\n")
        return 127
    reason = _watch(child, options) if watch else ""
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
    """The signal is COMMAND's business (it got it too, from the same process group)."""


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _pin(cpu_list: str) -> None:
    """Restrict this process (and so the command it starts) to its share of cores."""
    if not cpu_list or not hasattr(os, "sched_setaffinity"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[int(i) % len(cpus)] for i in cpu_list.split(",")})


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
