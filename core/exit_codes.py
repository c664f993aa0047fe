"""Process exit codes shared by ``mummi-run`` and every job (one definition each).

==  ==========================================================================
0   done (``mummi-run --validate``: the spec is valid)
1   failed; the log (or the job's status record) says why
2   bad usage or an invalid spec; nothing was written
3   the workdir cannot be used as asked (e.g. ``--fresh`` on an existing campaign)
75  stopped early but resumable (end of allocation, walltime, SIGTERM): run it again
==  ==========================================================================
"""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_WORKDIR = 3
EXIT_RESUMABLE = 75  # sysexits.h EX_TEMPFAIL: "try again later"
