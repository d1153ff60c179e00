# shellcheck shell=sh
# Environment for the tests that use the local SLURM cluster + sshd started by
# scripts/services/up.sh. Source it (POSIX sh, works from make's /bin/sh):
#     . scripts/services/env.sh
# No `set -e` here on purpose: it is sourced into the caller's shell.
CCAT_SERVICES_DIR="${CCAT_SERVICES_DIR:-/var/lib/ccat-slurm}"
export CCAT_SERVICES_DIR

export CCAT_TEST_SLURM_SSH_HOST=127.0.0.1
export CCAT_TEST_SLURM_SSH_PORT="${CCAT_TEST_SLURM_SSH_PORT:-2222}"
export CCAT_TEST_SLURM_SSH_USER=root
export CCAT_TEST_SLURM_SSH_KEY="$CCAT_SERVICES_DIR/ssh/id_ed25519"
export CCAT_TEST_SLURM_KNOWN_HOSTS="$CCAT_SERVICES_DIR/ssh/known_hosts"
export CCAT_TEST_SLURM_PARTITION=debug

# Lets `sinfo`, `sacct`, ... run locally against the test cluster (commands run
# through the test sshd get it from its SetEnv anyway).
export SLURM_CONF="$CCAT_SERVICES_DIR/etc/slurm.conf"
