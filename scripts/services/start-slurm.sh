#!/usr/bin/env bash
# Start a single-node SLURM cluster with accounting, on loopback only:
#   munged -> MariaDB database/user -> slurmdbd -> sacctmgr cluster/account/user
#   -> slurmctld -> slurmd -> wait for the node to be idle and sacct to answer.
# Config is rendered from slurm.conf.in / slurmdbd.conf.in (next to this script)
# into <state>/etc. Idempotent: running daemons that answer are left alone
# (they are restarted only if the rendered config changed).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=env.sh
. "$SCRIPT_DIR/env.sh"

STATE="$CCAT_SERVICES_DIR"
ETC="$STATE/etc"
RUN="$STATE/run"
LOGD="$STATE/log"
SLURM_CONF="$ETC/slurm.conf"
DBD_CONF="$ETC/slurmdbd.conf"
export SLURM_CONF # every slurm command and slurmdbd (finds slurmdbd.conf next to it)

CLUSTER="${CCAT_SLURM_CLUSTER:-ccat}"
PARTITION="$CCAT_TEST_SLURM_PARTITION"
ACCOUNT="${CCAT_SLURM_ACCOUNT:-ccat}"
SLURMCTLD_PORT="${CCAT_SLURMCTLD_PORT:-6817}"
SLURMD_PORT="${CCAT_SLURMD_PORT:-6818}"
SLURMDBD_PORT="${CCAT_SLURMDBD_PORT:-6819}"
DB_HOST=127.0.0.1
DB_PORT="${CCAT_MARIADB_PORT:-3306}"
DB_NAME=ccat_slurm_acct_db
DB_USER=ccat_slurm
HN="$(hostname -s)"

log() { printf '[start-slurm] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

pid_of() { # pidfile comm -> prints pid if that process is alive and is <comm>
  local pid
  [ -s "$1" ] || return 1
  pid="$(tr -dc '0-9' <"$1")"
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 1
  [ "$(cat "/proc/$pid/comm")" = "$2" ] || return 1
  echo "$pid"
}

wait_for() { # seconds description command...
  local secs="$1"; shift 2 # $2: description, for the reader
  local end=$((SECONDS + secs))
  while ! "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.5
  done
}

stop_pid() { # pid
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
}

show_log() { [ -f "$1" ] && { log "last lines of $1:"; tail -n 25 "$1" >&2; }; return 0; }

for b in munged munge unmunge slurmdbd slurmctld slurmd sacctmgr sinfo sacct scontrol mysql; do
  command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || die "$b not found; run scripts/services/install.sh"
done
export PATH="$PATH:/usr/sbin:/sbin"

# ---------------------------------------------------------------- host name
if ! getent hosts "$HN" >/dev/null 2>&1; then
  log "adding '127.0.0.1 $HN' to /etc/hosts"
  printf '127.0.0.1\t%s\n' "$HN" >>/etc/hosts
fi
case "$(getent hosts "$HN" | awk '{print $1; exit}')" in
  127.*) ;;
  *) log "WARNING: '$HN' resolves to a non-loopback address; slurmd/slurmdbd bind to" \
       "what the host name resolves to (CommunicationParameters=NoInAddrAny)" ;;
esac

umask 022
mkdir -p "$STATE" "$ETC" "$RUN" "$LOGD" "$STATE/slurm/ctld" "$STATE/slurm/d"
chmod 755 "$STATE"

# ---------------------------------------------------------------- munge
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
if munge_ok; then
  log "munged already running"
else
  if [ ! -s /etc/munge/munge.key ]; then
    log "creating /etc/munge/munge.key"
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null 2>&1; then
      mungekey --create --keyfile=/etc/munge/munge.key
    else
      dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
    chown munge:munge /etc/munge /etc/munge/munge.key
    chmod 700 /etc/munge
    chmod 400 /etc/munge/munge.key
  fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  chmod 755 /run/munge
  log "starting munged"
  runuser -u munge -- munged
  wait_for 20 munged munge_ok || { show_log /var/log/munge/munged.log; die "munged did not come up"; }
  # remember that we started it, so that down.sh may stop it
  cp /run/munge/munged.pid "$RUN/munged.pid"
fi

# ---------------------------------------------------------------- MariaDB
mysql_root() { mysql -uroot --protocol=socket "$@" 2>/dev/null || mysql -uroot -h127.0.0.1 -P"$DB_PORT" "$@"; }
db_ok() { mysql -uroot -e 'SELECT 1' >/dev/null 2>&1 || mysql -uroot -h127.0.0.1 -P"$DB_PORT" -e 'SELECT 1' >/dev/null 2>&1; }
if ! db_ok; then
  log "MariaDB not answering; starting mariadbd"
  mkdir -p /run/mysqld
  chown mysql:mysql /run/mysqld 2>/dev/null || true
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
  wait_for 60 mariadb db_ok || die "MariaDB did not come up (try: mysql -uroot -e 'select 1')"
fi

DB_PASS_FILE="$ETC/db.pass"
if [ ! -s "$DB_PASS_FILE" ]; then
  (umask 077; od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$DB_PASS_FILE")
fi
DB_PASS="$(cat "$DB_PASS_FILE")"
# A fresh state dir means fresh slurmctld job ids: drop an accounting database
# left over from an earlier state dir, or sacct would mix old and new job 1, 2...
DB_MARKER="$STATE/slurm/accounting-db-initialized"
if [ ! -e "$DB_MARKER" ] && [ ! -e "$STATE/slurm/ctld/job_state" ]; then
  log "fresh state dir: (re)creating database $DB_NAME"
  mysql_root -e "DROP DATABASE IF EXISTS \`$DB_NAME\`" || die "could not drop database $DB_NAME"
fi
mysql_root <<SQL || die "could not create the slurmdbd database/user with mysql -uroot"
CREATE DATABASE IF NOT EXISTS \`$DB_NAME\`;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL PRIVILEGES ON \`$DB_NAME\`.* TO '$DB_USER'@'localhost';
GRANT ALL PRIVILEGES ON \`$DB_NAME\`.* TO '$DB_USER'@'127.0.0.1';
SQL
touch "$DB_MARKER"

# ---------------------------------------------------------------- config files
# Node hardware as slurmd itself detects it (so the node is not drained for a
# mismatch), and RealMemory below the real memory (90%, at most total-512MB).
NODE_HW="$(slurmd -C | head -n1 | tr ' ' '\n' | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=' | tr '\n' ' ')"
[ -n "$NODE_HW" ] || NODE_HW="CPUs=$(nproc)"
MEM_MB=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
REAL_MEMORY=$(( MEM_MB * 9 / 10 ))
[ "$REAL_MEMORY" -le $((MEM_MB - 512)) ] || REAL_MEMORY=$((MEM_MB - 512))
[ "$REAL_MEMORY" -ge 256 ] || REAL_MEMORY=256

render() { # template -> stdout
  sed -e "s|@STATE_DIR@|$STATE|g" -e "s|@HOSTNAME@|$HN|g" -e "s|@CLUSTER_NAME@|$CLUSTER|g" \
    -e "s|@PARTITION@|$PARTITION|g" -e "s|@NODE_HW@|$NODE_HW|g" -e "s|@REAL_MEMORY@|$REAL_MEMORY|g" \
    -e "s|@SLURMCTLD_PORT@|$SLURMCTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" \
    -e "s|@SLURMDBD_PORT@|$SLURMDBD_PORT|g" -e "s|@MAX_ARRAY_SIZE@|100001|g" \
    -e "s|@MAX_JOB_COUNT@|200000|g" -e "s|@DB_HOST@|$DB_HOST|g" -e "s|@DB_PORT@|$DB_PORT|g" \
    -e "s|@DB_USER@|$DB_USER|g" -e "s|@DB_PASS@|$DB_PASS|g" -e "s|@DB_NAME@|$DB_NAME|g" "$1"
}
install_conf() { # template target mode -> returns 0 if the file changed
  local tmp="$2.new"
  (umask 077; render "$1" >"$tmp")
  grep -v '^#' "$tmp" | grep -q '@[A-Z_]*@' && die "unsubstituted placeholder in $tmp"
  chown root:root "$tmp"
  chmod "$3" "$tmp"
  if [ -f "$2" ] && cmp -s "$tmp" "$2"; then rm -f "$tmp"; return 1; fi
  mv -f "$tmp" "$2"
  return 0
}
slurm_changed=0 dbd_changed=0
install_conf "$SCRIPT_DIR/slurm.conf.in" "$SLURM_CONF" 644 && slurm_changed=1
# slurmdbd refuses a slurmdbd.conf that is not 600 and owned by SlurmUser.
install_conf "$SCRIPT_DIR/slurmdbd.conf.in" "$DBD_CONF" 600 && dbd_changed=1
# An (empty) cgroup.conf avoids warnings from tools that look for one.
[ -f "$ETC/cgroup.conf" ] || echo "# unused: ProctrackType=proctrack/linuxproc, TaskPlugin=task/none" >"$ETC/cgroup.conf"

# Let plain `sinfo`/`sbatch` on this machine find the test cluster, unless a
# real /etc/slurm/slurm.conf exists (a regular file is never touched; a symlink
# is assumed to be ours, from this or an earlier state dir).
if [ -d /etc/slurm ] && { [ ! -e /etc/slurm/slurm.conf ] || [ -L /etc/slurm/slurm.conf ]; }; then
  ln -sfn "$SLURM_CONF" /etc/slurm/slurm.conf
fi

if [ "$slurm_changed" = 1 ] || [ "$dbd_changed" = 1 ]; then
  # Restart whatever is running with the old config.
  for d in slurmd slurmctld; do
    if pid="$(pid_of "$RUN/$d.pid" "$d")"; then log "config changed: stopping $d"; stop_pid "$pid"; fi
  done
  if [ "$dbd_changed" = 1 ] && pid="$(pid_of "$RUN/slurmdbd.pid" slurmdbd)"; then
    log "config changed: stopping slurmdbd"; stop_pid "$pid"
  fi
fi

# ---------------------------------------------------------------- slurmdbd
dbd_ok() { sacctmgr -n -P list cluster format=cluster >/dev/null 2>&1; }
if pid="$(pid_of "$RUN/slurmdbd.pid" slurmdbd)" && dbd_ok; then
  log "slurmdbd already running (pid $pid)"
else
  [ -z "${pid:-}" ] || stop_pid "$pid"
  log "starting slurmdbd"
  slurmdbd
  wait_for 90 slurmdbd dbd_ok || { show_log "$LOGD/slurmdbd.log"; die "slurmdbd did not answer (log: $LOGD/slurmdbd.log)"; }
fi

# ---------------------------------------------------------------- accounting
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
  log "sacctmgr: adding cluster $CLUSTER"
  sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi
if ! sacctmgr -n -P list account format=account | grep -qx "$ACCOUNT"; then
  log "sacctmgr: adding account $ACCOUNT"
  sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description="CCAT tests" Organization=ccat >/dev/null
fi
if ! sacctmgr -n -P list assoc cluster="$CLUSTER" account="$ACCOUNT" user=root format=user | grep -qx root; then
  log "sacctmgr: adding user root to account $ACCOUNT"
  sacctmgr -i add user root Account="$ACCOUNT" Cluster="$CLUSTER" >/dev/null
fi

# ---------------------------------------------------------------- slurmctld
ctld_ok() { scontrol ping 2>/dev/null | grep -q 'is UP'; }
if pid="$(pid_of "$RUN/slurmctld.pid" slurmctld)" && ctld_ok; then
  log "slurmctld already running (pid $pid)"
else
  [ -z "${pid:-}" ] || stop_pid "$pid"
  log "starting slurmctld"
  slurmctld -f "$SLURM_CONF"
  wait_for 60 slurmctld ctld_ok || { show_log "$LOGD/slurmctld.log"; die "slurmctld did not come up (log: $LOGD/slurmctld.log)"; }
fi

# ---------------------------------------------------------------- slurmd
if pid="$(pid_of "$RUN/slurmd.pid" slurmd)"; then
  log "slurmd already running (pid $pid)"
else
  log "starting slurmd"
  slurmd -f "$SLURM_CONF"
  wait_for 30 slurmd pid_of "$RUN/slurmd.pid" slurmd || { show_log "$LOGD/slurmd.log"; die "slurmd did not start (log: $LOGD/slurmd.log)"; }
fi

# ---------------------------------------------------------------- readiness
node_state() { sinfo -h -N -n "$HN" -p "$PARTITION" -o '%t' 2>/dev/null | head -n1; }
node_ready() { case "$(node_state)" in idle|mix|alloc|comp) return 0 ;; *) return 1 ;; esac; }
end=$((SECONDS + 60)); resumed=0
until node_ready; do
  st="$(node_state)"
  if [ "$resumed" = 0 ] && [ $((end - SECONDS)) -lt 50 ]; then
    case "$st" in down*|drain*|drng*|fail*)
      log "node $HN is '$st'; resuming it"
      scontrol update NodeName="$HN" State=RESUME >/dev/null 2>&1 || true
      resumed=1 ;;
    esac
  fi
  if [ "$SECONDS" -ge "$end" ]; then
    scontrol show node "$HN" >&2 || true
    show_log "$LOGD/slurmd.log"
    die "node $HN not idle after 60s (state '${st:-?}')"
  fi
  sleep 0.5
done
wait_for 30 sacct sacct -n -X -S now-1hours || die "sacct does not answer"
log "cluster '$CLUSTER' up: node $HN is $(node_state) in partition $PARTITION"
