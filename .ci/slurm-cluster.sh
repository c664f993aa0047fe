#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine, for tests and local trials.
#
#   sudo .ci/slurm-cluster.sh start    # munge + slurmctld + slurmd, 4 fake GPUs
#   sudo .ci/slurm-cluster.sh stop
#
# The node advertises Gres=gpu:4 backed by /dev/fakegpu[0-3] (character devices
# that alias /dev/null), so Slurm schedules GPUs and sets CUDA_VISIBLE_DEVICES per
# job exactly as on a GPU node, and 8 CPUs whatever the machine has (scheduling
# slots: task/none binds nothing), so a campaign's macro model, sims and analyses
# fit beside each other as on a real node. Needs root and the Debian packages slurm-wlm and
# munge. Accounting is off: finished jobs are read from squeue/scontrol and the
# jobcomp/filetxt log.
set -euo pipefail

NGPUS=${MUMMI_SLURM_GPUS:-4}
NCPUS=${MUMMI_SLURM_CPUS:-8}
CONF_DIR=/etc/slurm
SPOOL=/var/spool/slurm
LOGS=/var/log/slurm

stop() {
    pkill -x slurmd 2>/dev/null || true
    pkill -x slurmctld 2>/dev/null || true
    sleep 1
}

start() {
    command -v slurmctld >/dev/null || { echo "slurmctld not found: apt-get install slurm-wlm munge" >&2; exit 1; }
    stop
    mkdir -p "$SPOOL/ctld" "$SPOOL/d" "$LOGS" /run/munge
    chown munge:munge /run/munge
    chmod 0755 /run/munge

    # munge: Debian's postinst makes a key; make one if it is missing.
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    if ! pgrep -x munged >/dev/null; then
        runuser -u munge -- /usr/sbin/munged
    fi
    munge -n | unmunge >/dev/null

    for i in $(seq 0 $((NGPUS - 1))); do
        [ -e "/dev/fakegpu$i" ] || mknod "/dev/fakegpu$i" c 1 3
    done

    local host node_line
    host=$(hostname -s)
    # slurmd -C prints this machine's real memory; the CPU layout is NCPUS cores on one socket.
    node_line="NodeName=$host CPUs=$NCPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$NCPUS ThreadsPerCore=1 \
$(slurmd -C | head -n 1 | grep -o 'RealMemory=[0-9]*')"
    cat > "$CONF_DIR/slurm.conf" <<CONF
ClusterName=mummi-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
ReturnToService=2
SchedulerType=sched/backfill
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOGS/jobcomp.log
MinJobAge=300
KillWait=5
InactiveLimit=0
SlurmdParameters=config_overrides
$node_line Gres=gpu:$NGPUS State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
    echo "Name=gpu File=/dev/fakegpu[0-$((NGPUS - 1))]" > "$CONF_DIR/gres.conf"
    rm -f "$CONF_DIR/cgroup.conf"

    slurmctld
    slurmd
    for _ in $(seq 60); do
        if sinfo -h -o %T 2>/dev/null | grep -q -E '^(idle|mixed|allocated)'; then
            scontrol update nodename="$host" state=resume 2>/dev/null || true
            sinfo
            return 0
        fi
        sleep 1
    done
    echo "Slurm did not come up; logs:" >&2
    tail -n 30 "$LOGS/slurmctld.log" "$LOGS/slurmd.log" >&2 || true
    exit 1
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
