#!/usr/bin/env bash
# Stops what e2e/chaos-mesh/up.sh started (only that: by recorded pid, checked
# to still run the recorded executable), deletes the admission webhook
# configurations and the chaos-daemon EndpointSlice it created while the API
# server answers, removes the nsexec shim if up.sh installed it and it is
# still ours, and removes
# $COMMLAB_CLUSTER_DIR/chaos-mesh. Idempotent, and safe after a crash: what
# is already gone is skipped. Leaves the CRDs, the chaos-mesh namespace and
# the logs in $COMMLAB_CLUSTER_DIR/logs/.
#
# Run it before e2e/cluster/down.sh: that one removes $COMMLAB_CLUSTER_DIR,
# pid files included, and knows nothing of these processes.
#
# Chaos objects (PodChaos, NetworkChaos, ...) carry the finalizer
# chaos-mesh/records, which only the controller removes once it has
# recovered every target. The controller must outlive the experiments:
# delete them, and wait until they are gone, before this script. Deleted
# afterwards they hang in Terminating (in a cluster that stays up), and a
# pod-failure or partition already injected stays in place.
set -euo pipefail

CHAOS_MESH_SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$CHAOS_MESH_SCRIPT_DIR/lib.sh"

# One up.sh or down.sh at a time; up.sh already holds the lock when it calls us.
[[ -n "${COMMLAB_CHAOS_MESH_LOCKED:-}" ]] || lock chaos-mesh

if [[ ! -d "$CM_STATE_DIR" ]] && ! any_recorded; then
  log "no chaos-mesh recorded in $COMMLAB_CLUSTER_DIR"
  exit 0
fi

# kube ARGS...: kubectl against the recorded cluster, when both are there.
kube() {
  local kubeconfig kubectl
  kubeconfig="$(cat "$CM_STATE_DIR/kubeconfig-path" 2>/dev/null)" || return 1
  kubectl="${COMMLAB_KUBECTL:-$(component_bin kubectl 2>/dev/null || true)}"
  [[ -x "$kubectl" ]] || kubectl="$(command -v kubectl || true)"
  [[ -x "$kubectl" && -f "$kubeconfig" ]] || return 1
  "$kubectl" --kubeconfig "$kubeconfig" --request-timeout=5s "$@"
}

# The webhook configurations first, while the controller still answers:
# left behind, they would refuse every create and update of a chaos-mesh.org
# object (removing a finalizer included) until up.sh runs again.
if [[ -f "$CM_STATE_DIR/webhooks-installed" ]]; then
  if kube delete mutatingwebhookconfiguration "${CM_WEBHOOK_CONFIGS[0]}" --ignore-not-found >/dev/null 2>&1 &&
    kube delete validatingwebhookconfiguration "${CM_WEBHOOK_CONFIGS[1]}" "${CM_WEBHOOK_CONFIGS[2]}" --ignore-not-found >/dev/null 2>&1; then
    log "deleted the admission webhook configurations ${CM_WEBHOOK_CONFIGS[*]}"
  else
    log "could not delete the admission webhook configurations (cluster gone?); skipped"
  fi
fi

# gone_within TENTHS NAME: NAME's recorded process ends within TENTHS/10 s.
gone_within() {
  local _
  for _ in $(seq 1 "$1"); do
    [[ -n "$(recorded_pid "$2")" ]] || return 0
    sleep 0.1
  done
  return 1
}

# The daemon first, then the controller (reverse start order).
stopped=()
for ((i = ${#CM_PROCESSES[@]} - 1; i >= 0; i--)); do
  name="${CM_PROCESSES[i]}"
  pid="$(recorded_pid "$name")"
  if [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null; then
    # chaos-controller-manager takes two: the first stops controller-runtime's
    # manager, after which its fx application waits for a signal of its own.
    if ! gone_within 30 "$name"; then
      kill -TERM "$pid" 2>/dev/null || true
      if ! gone_within 50 "$name"; then
        log "$name (pid $pid) ignored SIGTERM twice; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
    stopped+=("$name($pid)")
  fi
  rm -f "$PID_DIR/$name.pid"
done
log "stopped: ${stopped[*]:-nothing was running}"

# The EndpointSlice that pointed the controller at the daemon (best effort:
# the cluster may be gone already).
if [[ -f "$CM_STATE_DIR/endpointslice-node" ]]; then
  node="$(cat "$CM_STATE_DIR/endpointslice-node")"
  if kube -n "$CM_NAMESPACE" delete endpointslice "chaos-daemon-$node" --ignore-not-found --wait=false >/dev/null 2>&1; then
    log "deleted EndpointSlice $CM_NAMESPACE/chaos-daemon-$node"
  else
    log "could not delete EndpointSlice $CM_NAMESPACE/chaos-daemon-$node (cluster gone?); skipped"
  fi
fi

# The nsexec shim: only if this up.sh installed it, it is still ours, and no
# other chaos-daemon (another cluster's, on another port) still needs it.
if [[ -f "$CM_STATE_DIR/nsexec-installed" ]] && nsexec_is_ours; then
  if chaos_daemon_running; then
    log "left the nsexec shim $CM_NSEXEC: another chaos-daemon runs"
  else
    rm -f "$CM_NSEXEC"
    log "removed the nsexec shim $CM_NSEXEC"
  fi
fi

case "$CM_STATE_DIR" in
  */chaos-mesh) rm -rf "$CM_STATE_DIR" ;;
  *) die "refusing to remove $CM_STATE_DIR" ;;
esac
log "removed $CM_STATE_DIR"
