#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, for the tests (scripts/test.sh) and
# for trying `svcca sweep --submit` on a workstation:
#
#   scripts/slurm/local-cluster.sh start    # install if missing, configure, start, wait
#   scripts/slurm/local-cluster.sh status   # sinfo; exit 0 when the node is usable
#   scripts/slurm/local-cluster.sh stop     # stop slurmd, slurmctld, munged
#
# Needs root on Debian/Ubuntu (apt-get installs slurm-wlm and munge when missing). It
# writes /etc/slurm/slurm.conf (marked as ours; a slurm.conf written by anyone else is
# left alone and the script stops) for one node, this host at 127.0.0.1, with all its
# CPUs and memory: proctrack/linuxproc and task/none (no cgroups, so it runs in
# containers), select/cons_tres by CPU, JobRequeue=1, no accounting database. The job
# credential lifetime (AuthInfo cred_expire) is 10 s instead of 120 s: it is also how
# long a requeued job waits before it may start again.
# `start` is idempotent: when the node already answers it returns at once.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# written by svcca scripts/slurm/local-cluster.sh"
STATE=/var/spool/slurm-svcca
LOGS=/var/log/slurm
NODE=$(hostname -s)

say() { echo "local-cluster: $*" >&2; }

node_state() { sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -1; }

usable() {
  case "$(node_state)" in
    idle*|mixed*|allocated*|completing*) return 0 ;;
    *) return 1 ;;
  esac
}

install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && command -v sbatch >/dev/null; then
    return
  fi
  [ "$(id -u)" = 0 ] || { say "slurm-wlm and munge are not installed and this is not root: install them (apt-get install slurm-wlm munge) or run as root"; exit 1; }
  say "installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends slurm-wlm munge >/dev/null 2>&1 || {
    apt-get update >/dev/null
    apt-get install -y --no-install-recommends slurm-wlm munge >/dev/null
  }
}

write_conf() {
  if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    say "$CONF exists and was not written by this script: leaving it alone (stop here)"
    exit 1
  fi
  local cpus mem
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
  mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d" "$LOGS"
  local text
  text=$(cat <<CONFEOF
$MARK
ClusterName=svcca-local
SlurmctldHost=$NODE(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=10
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobRequeue=1
ReturnToService=2
MinJobAge=600
KillWait=30
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONFEOF
)
  if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$text" ]; then
    printf '%s\n' "$text" > "$CONF.tmp" && mv "$CONF.tmp" "$CONF"
    return 0 # changed
  fi
  return 1
}

# The daemons by their pid files (which they remove on exit), never by name.
SLURMCTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGED_PID=/run/munge/munged.pid

running() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

kill_pidfile() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 0
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 20); do [ -e "$1" ] || return 0; kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
}

start() {
  if usable; then
    say "node $NODE is up ($(node_state))"
    return 0
  fi
  install
  local changed=0
  write_conf && changed=1
  if ! running $MUNGED_PID; then
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    [ -s /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=128 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
    runuser -u munge -- /usr/sbin/munged
  fi
  if [ "$changed" = 1 ]; then
    kill_pidfile $SLURMD_PID
    kill_pidfile $SLURMCTLD_PID
  fi
  running $SLURMCTLD_PID || slurmctld
  running $SLURMD_PID || slurmd
  for _ in $(seq 60); do
    if usable; then
      say "node $NODE is up ($(node_state)); logs in $LOGS"
      return 0
    fi
    case "$(node_state)" in
      down*|drain*) scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 1
  done
  say "the node did not come up within 60 s; state '$(node_state)'; see $LOGS/slurmctld.log and $LOGS/slurmd.log"
  exit 1
}

stop() {
  kill_pidfile $SLURMD_PID
  kill_pidfile $SLURMCTLD_PID
  kill_pidfile $MUNGED_PID
  say "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status)
    if usable; then sinfo; else say "not running (node state '$(node_state)')"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
