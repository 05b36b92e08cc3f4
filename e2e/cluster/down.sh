#!/usr/bin/env bash
# Stops the processes up.sh started (only those: by recorded pid, checked to
# still be the same executable), removes what the real node left (its
# containers, mounts, network namespaces), reverts every host change up.sh
# journaled (host.sh), and removes the cluster state directory.
# Idempotent, and safe after a crash: each step tolerates what is already gone.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=host.sh
source "$CLUSTER_SCRIPT_DIR/host.sh"

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

# stop NAME: SIGTERM to a recorded process, SIGKILL after 5 s.
stop() {
  local name="$1" pid
  pid="$(recorded_pid "$name")"
  [[ -n "$pid" ]] || return 1
  kill -TERM "$pid" 2>/dev/null || return 1
  for _ in $(seq 1 50); do
    [[ -n "$(recorded_pid "$name")" ]] || return 0
    sleep 0.1
  done
  log "$name (pid $pid) ignored SIGTERM for 5s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
}

# drain_node: while the API server and the kubelet still run, delete the real
# node's pods so that the kubelet stops them and tears their network down
# through the CNI plugins (bounded; what is left is killed below).
drain_node() {
  [[ -n "$(recorded_pid kubelet)" && -n "$(recorded_pid kube-apiserver)" ]] || return 0
  local kubectl=("$(component_bin kubectl)" --kubeconfig "$KUBECONFIG_PATH" --request-timeout=10s)
  "${kubectl[@]}" delete pods --all-namespaces --field-selector "spec.nodeName=$NODE_NAME" \
    --grace-period=2 --wait=false >/dev/null 2>&1 || return 0
  local left
  for _ in $(seq 1 40); do
    left="$(ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks ls -q 2>/dev/null | wc -l)"
    ((left == 0)) && return 0
    sleep 0.5
  done
  log "the node's pods did not all stop within 20 s; killing their containers"
}

# kill_containers: every task of the node's containerd, and the shims that
# outlive containerd by design (matched by our socket in their command line).
kill_containers() {
  local id
  if [[ -n "$(recorded_pid containerd)" ]]; then
    for id in $(ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
    done
  fi
  pkill -KILL -f -- "containerd-shim.*-address $CONTAINERD_SOCK" 2>/dev/null || true
}

# unmount_under DIR: what the kubelet (secret and token volumes) and
# containerd (overlay roots, sandbox /dev/shm) mounted below DIR, deepest first.
unmount_under() {
  local dir mounts=()
  dir="$(readlink -f "$1")"
  mapfile -t mounts < <(awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r)
  local m
  for m in "${mounts[@]}"; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
  done
}

# Chaos Mesh (e2e/chaos-mesh, started by e2e/run.sh local) keeps its state
# here too; a run that could not stop it leaves it to us.
if [[ -d "$COMMLAB_CLUSTER_DIR/chaos-mesh" && -x "$CLUSTER_SCRIPT_DIR/../chaos-mesh/down.sh" ]]; then
  "$CLUSTER_SCRIPT_DIR/../chaos-mesh/down.sh" >&2 || log "e2e/chaos-mesh/down.sh failed"
fi
drain_node
# Stop in reverse start order: the node before the control plane, kwok and
# the controllers before the apiserver, the apiserver before etcd; the node's
# containers are killed before containerd goes.
stopped=()
for ((i = ${#PROCESSES[@]} - 1; i >= 0; i--)); do
  name="${PROCESSES[i]}"
  [[ "$name" == containerd ]] && kill_containers
  pid="$(recorded_pid "$name")"
  stop "$name" && stopped+=("$name($pid)")
done
# A crash may have left shims and containers behind a dead containerd, and
# the containers outlive their shims: kill what is left in the pods' cgroups.
kill_containers
if grep -qx 'cgroup kubepods' "$HOST_JOURNAL" 2>/dev/null; then remove_cgroups kubepods; fi
log "stopped: ${stopped[*]:-nothing was running}"

unmount_under "$COMMLAB_CLUSTER_DIR"
revert_host
log "host changes reverted"

rm -rf --one-file-system "$COMMLAB_CLUSTER_DIR"
log "removed $COMMLAB_CLUSTER_DIR"
