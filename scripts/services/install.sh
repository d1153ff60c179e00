#!/usr/bin/env bash
# Install the packages needed for the local single-node SLURM cluster and the
# loopback sshd used by the SLURM backend tests, and the headless Chromium with its
# chromedriver that the browser test of the Dagster UI drives (Debian 12 / bookworm).
#
# Idempotent: when every binary is already present, apt is not touched at all.
# Package maintainer scripts are prevented from starting daemons (munge, sshd on
# 0.0.0.0:22, slurm*) through a temporary policy-rc.d; our start-*.sh scripts
# start them with their own configs on loopback only.
set -euo pipefail

log() { printf '[install] %s\n' "$*" >&2; }

# binary -> package
declare -A PKG=(
  [slurmctld]=slurmctld
  [slurmd]=slurmd
  [sbatch]=slurm-client
  [sacct]=slurm-client
  [sacctmgr]=slurm-client
  [slurmdbd]=slurmdbd
  [munged]=munge
  [munge]=munge
  [sshd]=openssh-server
  [ssh]=openssh-client
  [ssh-keygen]=openssh-client
  [ssh-keyscan]=openssh-client
  [mysql]=mariadb-client
  [python3]=python3
  [bwrap]=bubblewrap          # a real container stand-in for the contract tests
  [chromium]=chromium         # the browser test of the Dagster UI (tests/ui/)
  [chromedriver]=chromium-driver
)

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }

missing=()
for bin in "${!PKG[@]}"; do
  have "$bin" || missing+=("${PKG[$bin]}")
done
have mariadbd || have mysqld || missing+=(mariadb-server)

if [ "${#missing[@]}" -eq 0 ]; then
  log "all binaries present, skipping apt"
  exit 0
fi

# De-duplicate; slurm-wlm is the meta package pulling slurmctld+slurmd+client.
mapfile -t pkgs < <(printf '%s\n' "${missing[@]}" | sort -u)
case " ${pkgs[*]} " in
  *" slurmctld "*|*" slurmd "*|*" slurm-client "*) pkgs+=(slurm-wlm) ;;
esac

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

log "installing: ${pkgs[*]}"

# Stop postinst scripts from starting services (only if no policy already set).
POLICY=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod 755 "$POLICY"
  created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then $SUDO rm -f "$POLICY"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt_install() {
  $SUDO apt-get install -y --no-install-recommends "${pkgs[@]}"
}
if ! apt_install; then
  log "apt-get install failed; running apt-get update and retrying"
  $SUDO apt-get update
  apt_install
fi
log "done"
