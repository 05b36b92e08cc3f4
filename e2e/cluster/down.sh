#!/usr/bin/env bash
# Stops the processes up.sh started (only those: by recorded pid, checked to
# still be the same executable) and removes the cluster state directory.
# Idempotent: does nothing when no cluster is recorded.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# One up.sh or down.sh at a time; up.sh already holds the lock when it calls us.
[[ -n "${COMMLAB_CLUSTER_LOCKED:-}" ]] || lock cluster

# Refuse to rm -rf anything that is not plainly a cluster state directory.
case "$COMMLAB_CLUSTER_DIR" in
  "" | "/" | "$HOME" | "$HOME/") die "refusing to remove COMMLAB_CLUSTER_DIR=$COMMLAB_CLUSTER_DIR" ;;
esac

if [[ ! -d "$COMMLAB_CLUSTER_DIR" ]]; then
  log "no cluster in $COMMLAB_CLUSTER_DIR"
  exit 0
fi

# Stop in reverse start order: kwok and the controllers before the apiserver,
# the apiserver before etcd.
stopped=()
for ((i = ${#PROCESSES[@]} - 1; i >= 0; i--)); do
  name="${PROCESSES[i]}"
  pid="$(recorded_pid "$name")"
  [[ -n "$pid" ]] || continue
  kill -TERM "$pid" 2>/dev/null || continue
  for _ in $(seq 1 50); do
    [[ -n "$(recorded_pid "$name")" ]] || break
    sleep 0.1
  done
  if [[ -n "$(recorded_pid "$name")" ]]; then
    log "$name (pid $pid) ignored SIGTERM for 5s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  stopped+=("$name($pid)")
done
log "stopped: ${stopped[*]:-nothing was running}"

rm -rf "$COMMLAB_CLUSTER_DIR"
log "removed $COMMLAB_CLUSTER_DIR"
