"""``python -I -S local_runner.py EXIT_FILE -- COMMAND...``

Pins itself to the cores in ``MUMMI_CPU_LIST`` (indices into this process's
allowed CPUs), runs COMMAND in the runner's process group (the backend starts the
runner in a session of its own), and writes COMMAND's exit code to EXIT_FILE
(atomically) when it ends. SIGTERM and SIGINT are for the
COMMAND: the backend signals the whole process group, so the runner outlives
them to record how COMMAND ended (forwarding them would deliver each twice, and a
second SIGTERM can catch a job while it exits). The local backend starts every job through
this runner so that a coordinator which restarted, and is no longer the job's
parent, can still learn how the job ended.

It imports nothing beyond the standard library (it starts once per job: an
import of numpy would cost a tenth of a second each time) and is run by its path,
so the interpreter can start without ``site``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: python -I -S local_runner.py EXIT_FILE -- COMMAND...\n")
        return 2
    exit_file, command = Path(argv[0]), argv[2:]
    _pin(os.environ.get("MUMMI_CPU_LIST", ""))
    # A handler, not SIG_IGN: exec resets handlers to the default, so COMMAND still gets the signals.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _outlive)
    try:
        child = subprocess.Popen(command)
    except OSError as err:
        sys.stderr.write(f"local_runner: cannot start {command[0]!r}: {err}\n")
        _write_atomically(exit_file, "127\n")
        return 127
    code = child.wait()
    # A child killed by signal N reports -N; shells report 128 + N.
    code = 128 - code if code < 0 else code
    _write_atomically(exit_file, f"{code}\n")
    return code


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
