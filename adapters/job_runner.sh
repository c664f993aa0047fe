#!/bin/sh
# job_runner.sh EXIT_FILE COMMAND...
#
# Runs COMMAND (pinned to the CPUs in MUMMI_CPUS, when set, through taskset) and
# writes its exit code to EXIT_FILE, atomically, when it ends; a command killed by
# signal N reports 128 + N. The local and Slurm backends start every job through
# it, in a session of its own, so that a coordinator which restarted, and is no
# longer the job's parent, still learns how the job ended.
#
# SIGTERM and SIGINT are COMMAND's business: the backend signals the whole process
# group, so the runner traps them (a trap, not an ignore: COMMAND gets the default
# handlers back) and outlives them to record how COMMAND ended.
#
# POSIX sh, not Python: it starts once per job, in a millisecond instead of tens.
exit_file=$1
shift
trap : TERM INT
if [ -n "${MUMMI_CPUS:-}" ]; then
    taskset -c "$MUMMI_CPUS" "$@"
else
    "$@"
fi
code=$?
printf '%s\n' "$code" > "$exit_file.tmp.$$" && mv -f "$exit_file.tmp.$$" "$exit_file"
exit "$code"
