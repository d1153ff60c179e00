#!/usr/bin/env bash
# Install (if needed) and start the local test services: sshd on
# 127.0.0.1:2222 and a single-node SLURM cluster with accounting.
# Safe to re-run; a quick no-op when everything is already up.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=env.sh
. "$SCRIPT_DIR/env.sh"
start=$SECONDS

run() { # step
  if ! bash "$SCRIPT_DIR/$1"; then
    printf '[up] FAILED: %s did not complete; see the messages above and the logs in %s/log\n' \
      "$1" "$CCAT_SERVICES_DIR" >&2
    exit 1
  fi
}

run install.sh
run start-sshd.sh
run start-slurm.sh

# Final end-to-end probe, the way the tests use it: SSH with the throwaway key
# and strict host key checking, then SLURM commands on the other side.
if ! node="$(ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null \
  -o UserKnownHostsFile="$CCAT_TEST_SLURM_KNOWN_HOSTS" -o ConnectTimeout=5 -o LogLevel=ERROR \
  -i "$CCAT_TEST_SLURM_SSH_KEY" -p "$CCAT_TEST_SLURM_SSH_PORT" \
  "$CCAT_TEST_SLURM_SSH_USER@$CCAT_TEST_SLURM_SSH_HOST" \
  "sinfo -h -p '$CCAT_TEST_SLURM_PARTITION' -o '%N:%t' && sacct -n -X -S now-1minutes >/dev/null && echo ok" </dev/null)" \
  || [ "${node##*$'\n'}" != ok ]; then
  printf '[up] FAILED: SLURM not usable through ssh %s@%s:%s (got: %s)\n' "$CCAT_TEST_SLURM_SSH_USER" \
    "$CCAT_TEST_SLURM_SSH_HOST" "$CCAT_TEST_SLURM_SSH_PORT" "${node:-nothing}" >&2
  exit 1
fi
printf 'services up in %ss: ssh %s@%s:%s (key %s), slurm partition %s node %s, state %s\n' \
  "$((SECONDS - start))" "$CCAT_TEST_SLURM_SSH_USER" "$CCAT_TEST_SLURM_SSH_HOST" \
  "$CCAT_TEST_SLURM_SSH_PORT" "$CCAT_TEST_SLURM_SSH_KEY" "$CCAT_TEST_SLURM_PARTITION" \
  "${node%%$'\n'*}" "$CCAT_SERVICES_DIR"
