#!/usr/bin/env bash
# A real single-node Slurm cluster on loopback, for the Slurm test and local trials of
# `saeidx cluster slurm`. Needs Debian's slurm-wlm and munge (`scripts/setup.sh
# --test-tools` installs them) and root, or a munged that already runs.
#
#   scripts/slurm-local.sh start STATE_DIR    configure and start slurmctld + slurmd
#   scripts/slurm-local.sh status STATE_DIR   show the node (exit 1 when not running)
#   scripts/slurm-local.sh stop STATE_DIR     cancel its jobs and stop it
#
# Everything of the cluster lives in STATE_DIR (slurm.conf, state, spool, logs); its
# ports are free loopback ports chosen at start. Point Slurm commands at it with
# `export SLURM_CONF=STATE_DIR/slurm.conf`. munged is the machine's (its socket is
# fixed): it is started as the munge user when not running, and stopped again by `stop`
# only if `start` started it.
set -euo pipefail

say() { printf '[slurm-local] %s\n' "$*" >&2; }
die() { printf '[slurm-local] error: %s\n' "$*" >&2; exit 1; }

(($# == 2)) || die "usage: scripts/slurm-local.sh start|stop|status STATE_DIR"
action=$1
mkdir -p "$2"
state=$(cd "$2" && pwd)
conf=$state/slurm.conf
export SLURM_CONF=$conf

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

# Waits up to $1 tenths of a second for the command in the remaining arguments.
wait_for() {
  local tenths=$1
  shift
  for ((i = 0; i < tenths; i++)); do
    "$@" && return 0
    sleep 0.1
  done
  return 1
}

# A loopback port nothing listens on (a connection to it is refused).
free_port() {
  local port
  for ((try = 0; try < 200; try++)); do
    port=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  die "found no free loopback port"
}

pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_munge() {
  munge_works && return
  [[ $(id -u) -eq 0 ]] || die "munged is not running and starting it needs root"
  id munge >/dev/null 2>&1 || die "no munge user: install munge (apt-get install munge)"
  if [[ ! -f /etc/munge/munge.key ]]; then
    say "creating /etc/munge/munge.key"
    su -s /bin/sh munge -c "mungekey --create"
  fi
  install -d -o munge -g munge -m 0755 /run/munge
  # munged refuses to run as root ("Logfile is insecure"): run it as its own user.
  su -s /bin/sh munge -c /usr/sbin/munged || die "munged did not start (see /var/log/munge/munged.log)"
  touch "$state/munged-started-here"
  wait_for 100 munge_works || die "munged started but munge -n | unmunge fails"
}

node_idle() { [[ $(sinfo -h -n localhost -o %T 2>/dev/null) == idle ]]; }

start() {
  for tool in munge unmunge munged slurmctld slurmd sbatch scontrol sinfo squeue; do
    command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]] \
      || die "$tool is missing: install slurm-wlm and munge (scripts/setup.sh --test-tools)"
  done
  export PATH=$PATH:/usr/sbin
  if pid_alive "$state/slurmctld.pid"; then
    say "already running ($conf)"
    return
  fi
  start_munge
  mkdir -p "$state/ctld" "$state/spool" "$state/log"
  # The node as slurmd sees it (CPUs, sockets, cores), with half its memory declared
  # so that the node is never drained for having less than configured.
  local hardware memory
  hardware=$(slurmd -C | head -n1 | sed -e 's/^NodeName=[^ ]* //' -e 's/ RealMemory=[0-9]*//')
  memory=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  cat >"$conf" <<EOF
# Written by scripts/slurm-local.sh: a single-node cluster on loopback.
ClusterName=saeidx-local
SlurmctldHost=localhost
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=$(id -un)
AuthType=auth/munge
# The default cgroup tracker needs cgroup controllers a container does not mount.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
JobCompType=jobcomp/filetxt
JobCompLoc=$state/log/jobcomp.txt
MailProg=/bin/true
ReturnToService=2
KillWait=5
MinJobAge=3600
NodeName=localhost NodeAddr=127.0.0.1 $hardware RealMemory=$((memory / 2)) State=UNKNOWN
PartitionName=local Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  # A fresh start (-c): no jobs from an earlier cluster in this folder.
  slurmctld -c -f "$conf" || die "slurmctld did not start (see $state/log/slurmctld.log)"
  wait_for 100 scontrol ping >/dev/null || die "slurmctld does not answer (see $state/log/slurmctld.log)"
  slurmd -f "$conf" -N localhost || die "slurmd did not start (see $state/log/slurmd.log)"
  wait_for 200 node_idle || die "the node is not idle: $(sinfo -h -N -o '%T %E' 2>&1) (see $state/log/)"
  say "running: export SLURM_CONF=$conf"
}

stop() {
  export PATH=$PATH:/usr/sbin
  if pid_alive "$state/slurmctld.pid"; then
    # Jobs would outlive the daemons: cancel them first, and wait for them to end.
    scancel --quiet --full --user "$(id -un)" 2>/dev/null || true
    wait_for 150 test -z "$(squeue -h -o %A 2>/dev/null)" || say "jobs still running: $(squeue -h 2>&1)"
    scontrol shutdown >/dev/null 2>&1 || true
  fi
  for daemon in slurmd slurmctld; do
    local pidfile=$state/$daemon.pid
    if ! wait_for 100 bash -c "! { [[ -f '$pidfile' ]] && kill -0 \$(cat '$pidfile'); } 2>/dev/null"; then
      say "$daemon did not stop; killing it"
      kill -9 "$(cat "$pidfile")" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
  if [[ -f $state/munged-started-here ]]; then
    [[ -f /run/munge/munged.pid ]] && kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
    rm -f "$state/munged-started-here"
  fi
  say "stopped"
}

status() {
  export PATH=$PATH:/usr/sbin
  pid_alive "$state/slurmctld.pid" || { say "not running"; exit 1; }
  scontrol ping
  sinfo -N
}

case "$action" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: scripts/slurm-local.sh start|stop|status STATE_DIR" ;;
esac
