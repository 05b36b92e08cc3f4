#!/usr/bin/env bash
# Shared definitions for e2e/chaos-mesh/*.sh: the pinned Chaos Mesh version,
# where its files and its state live. Source it; do not execute it.
# It sources e2e/cluster/lib.sh (log, die, lock, recorded_pid, wait_until,
# COMMLAB_CACHE, COMMLAB_CLUSTER_DIR, BIN_ROOT, SRC_ROOT, PID_DIR, LOG_DIR).

# shellcheck source-path=SCRIPTDIR source=../cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib.sh"

# The Go module proxy serves github.com/chaos-mesh/chaos-mesh only at its
# @latest pseudo-version (a release-2.8 commit); tags are refused. Its api
# module lives in ./api of the same repository and is served only at its own
# @latest. Both were read with `go list -m -json <module>@latest`.
# shellcheck disable=SC2034 # used by the scripts that source this file
CHAOS_MESH_VERSION="v0.9.1-0.20260902003049-47411975a8cb"
# shellcheck disable=SC2034
CHAOS_MESH_API_VERSION="v0.0.0-20260906172039-d70b66ad97ac"
# The commit of CHAOS_MESH_VERSION: names the cache directories.
CHAOS_MESH_SHORT="${CHAOS_MESH_VERSION##*-}"
# chaos-controller-manager, chaos-daemon, crd.yaml and VERSIONS.
# shellcheck disable=SC2034
CHAOS_MESH_DIR="$BIN_ROOT/chaos-mesh-$CHAOS_MESH_SHORT"

# --- state of a running Chaos Mesh (written by up.sh, read by down.sh) ---
# shellcheck disable=SC2034
CM_STATE_DIR="$COMMLAB_CLUSTER_DIR/chaos-mesh"
# shellcheck disable=SC2034
CM_CERTS_DIR="$CM_STATE_DIR/certs"
# shellcheck disable=SC2034
CM_ENV_FILE="$CM_STATE_DIR/chaos-mesh.env"
# The namespace the controller runs "in" (its NAMESPACE): where it looks for
# the chaos-daemon EndpointSlices.
# shellcheck disable=SC2034
CM_NAMESPACE="chaos-mesh"
# chaos-daemon's gRPC port, the same on every node (CHAOS_DAEMON_SERVICE_PORT);
# Chaos Mesh's default, 31767, unless COMMLAB_CHAOS_DAEMON_GRPC_PORT says.
# shellcheck disable=SC2034
CM_DAEMON_GRPC_PORT="${COMMLAB_CHAOS_DAEMON_GRPC_PORT:-31767}"
# Processes up.sh starts, in start order (down.sh stops them in reverse).
CM_PROCESSES=(chaos-controller-manager chaos-daemon)
# The kinds whose admission webhooks up.sh registers: upstream's Helm value
# webhook.CRDS (helm/chaos-mesh/values.yaml), the kinds the controller serves
# /mutate-... and /validate-... for.
# shellcheck disable=SC2034
CM_WEBHOOK_KINDS=(podchaos iochaos timechaos networkchaos kernelchaos stresschaos awschaos azurechaos
  gcpchaos dnschaos jvmchaos schedule workflow httpchaos blockchaos physicalmachinechaos
  physicalmachine statuscheck remotecluster)
# The webhook configurations up.sh creates: mutation, validation, validate-auth.
# shellcheck disable=SC2034
CM_WEBHOOK_CONFIGS=(chaos-mesh-mutation chaos-mesh-validation chaos-mesh-validate-auth)
# chaos-daemon runs its helper from this hard-coded path.
CM_NSEXEC=/usr/local/bin/nsexec

# nsexec_is_ours: $CM_NSEXEC is commlab's shim (e2e/chaos-mesh/nsexec).
nsexec_is_ours() {
  [[ -f "$CM_NSEXEC" ]] && sed -n 2p "$CM_NSEXEC" | grep -q '^# commlab-nsexec-shim:'
}

# chaos_daemon_running: some chaos-daemon built by build.sh runs on this
# machine (read from /proc; nothing is signalled).
chaos_daemon_running() {
  local exe bin="$CHAOS_MESH_DIR/chaos-daemon"
  for exe in /proc/[0-9]*/exe; do
    case "$(readlink "$exe" 2>/dev/null)" in
      "$bin" | "$bin (deleted)") return 0 ;;
    esac
  done
  return 1
}

# any_recorded: a process up.sh started still runs.
any_recorded() {
  local name
  for name in "${CM_PROCESSES[@]}"; do
    [[ -z "$(recorded_pid "$name")" ]] || return 0
  done
  return 1
}
