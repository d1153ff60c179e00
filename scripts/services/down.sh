#!/usr/bin/env bash
# Stop what start-sshd.sh / start-slurm.sh started, using the pid files under
# the state dir. MariaDB is left alone; munged only if start-slurm.sh started it.
# State (keys, config, accounting DB, job state) is kept, so up.sh is fast.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=env.sh
. "$SCRIPT_DIR/env.sh"
RUN="$CCAT_SERVICES_DIR/run"

log() { printf '[down] %s\n' "$*" >&2; }

stop() { # name pidfile [comm]
  local name="$1" pidfile="$2" comm="${3:-$1}" pid
  if [ ! -s "$pidfile" ]; then log "$name: no pid file"; return 0; fi
  pid="$(tr -dc '0-9' <"$pidfile")"
  if [ -z "$pid" ] || [ ! -r "/proc/$pid/comm" ] || [ "$(cat "/proc/$pid/comm")" != "$comm" ]; then
    log "$name: not running"
    rm -f "$pidfile"
    return 0
  fi
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) did not exit after 15s; sending SIGKILL"
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  log "$name stopped (pid $pid)"
}

stop slurmd "$RUN/slurmd.pid"
stop slurmctld "$RUN/slurmctld.pid"
stop slurmdbd "$RUN/slurmdbd.pid"
stop sshd "$RUN/sshd.pid"
# munged: only the instance start-slurm.sh started (its pid was copied there).
stop munged "$RUN/munged.pid"
