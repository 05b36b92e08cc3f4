#!/usr/bin/env bash
# commlab end to end: install the operator with its Helm chart, apply a
# manifest (a PatternComparison or CommunicationPatterns), wait until every
# experiment is Completed, and print `kubectl get cpat,pcmp`.
#
#   e2e/run.sh kind  [manifest]   # NEEDS DOCKER (and kind, kubectl, helm on PATH)
#   e2e/run.sh local [manifest]   # the local control plane of e2e/cluster; no Docker
#
# The manifest defaults to examples/compare-all.yaml (six patterns, about
# two minutes each) for kind, and to e2e/manifests/real-faults.yaml (five
# patterns, whose fault effects e2e/assert_faults.py then checks from the
# status) for local. Exit status 0 only when every experiment Completed (and,
# for real-faults, every fault had its effect).
#
# kind: creates a kind cluster, builds the repository's Dockerfile and loads
#   the image into the cluster, installs Chaos Mesh from its Helm chart (so
#   the faults are real), installs charts/commlab and runs the manifest.
#   The cluster is deleted afterwards unless COMMLAB_E2E_KEEP=1.
# local: the same on the local cluster of e2e/cluster (up.sh, or the one
#   COMMLAB_KUBECONFIG names), whose real node runs every pod in a container:
#   the images are built here without Docker (e2e/images) and imported into
#   the node's containerd, Chaos Mesh's controller and daemon run on the host
#   (e2e/chaos-mesh), the kwok nodes are cordoned and the real node's taint
#   lifted for the run. The operator runs in its pod with the chart's
#   ServiceAccount, the runner Jobs' pods run the experiments, Chaos Mesh
#   applies the faults. Needs root and what scripts/install-deps.sh installs.
#
# Environment: COMMLAB_E2E_TIMEOUT (seconds to wait for Completed, default
# 1800), COMMLAB_E2E_OUT (logs, default target/e2e), COMMLAB_KUBECONFIG,
# COMMLAB_KUBECTL, COMMLAB_HELM (local: an existing cluster and binaries),
# COMMLAB_E2E_KEEP=1 (keep what was installed), CHAOS_MESH_VERSION (kind).
set -euo pipefail

usage() {
  echo "usage: e2e/run.sh kind|local [manifest]" >&2
  exit 2
}
(($# >= 1 && $# <= 2)) || usage
target="$1"
# A manifest named relative to where the script was started from.
case "$target" in
  local) default_manifest=e2e/manifests/real-faults.yaml ;;
  *) default_manifest=examples/compare-all.yaml ;;
esac
manifest="$(readlink -f -- "${2:-$(dirname "$0")/../$default_manifest}")"
[[ -f "$manifest" ]] || { echo "no manifest ${2:-}" >&2; exit 2; }
cd "$(dirname "$0")/.."

# The operator's release and namespace, and where the experiments run.
RELEASE=commlab
OPERATOR_NS=commlab-system
EXPERIMENT_NS=commlab-e2e
TIMEOUT="${COMMLAB_E2E_TIMEOUT:-1800}"
OUT="${COMMLAB_E2E_OUT:-target/e2e}"
CHAOS_MESH_VERSION="${CHAOS_MESH_VERSION:-2.8.2}"
mkdir -p "$OUT"

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# kubectl and helm against the cluster under test (set by each target).
KUBECTL=kubectl
HELM=helm
k() { "$KUBECTL" --request-timeout=60s "$@"; }
h() { "$HELM" "$@"; }

# Cleanup steps, run in reverse order on exit, whatever the outcome.
cleanups=()
on_exit() {
  local status=$?
  local i
  # Cleanup steps may look at how the run ended.
  exit_status=$status
  for ((i = ${#cleanups[@]} - 1; i >= 0; i--)); do
    eval "${cleanups[i]}" || true
  done
  exit "$status"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Installs the chart (extra helm arguments in "$@").
install_chart() {
  log "helm install $RELEASE charts/commlab (namespace $OPERATOR_NS)"
  h upgrade --install "$RELEASE" charts/commlab --namespace "$OPERATOR_NS" --create-namespace \
    --wait --timeout 5m "$@" >&2
  if [[ "${COMMLAB_E2E_KEEP:-0}" != 1 ]]; then
    # Run in reverse: the release (with its cluster-wide RBAC) goes first.
    cleanups+=("k delete namespace $OPERATOR_NS --ignore-not-found --wait=false >/dev/null")
    cleanups+=("h uninstall $RELEASE --namespace $OPERATOR_NS >/dev/null")
  fi
}

# Creates the experiment namespace and applies the manifest there, once the
# operator runs (it removes its finalizers from a leftover namespace's objects).
apply_manifest() {
  # A namespace left by an interrupted run holds old objects: start clean.
  k delete namespace "$EXPERIMENT_NS" --ignore-not-found --timeout=120s >/dev/null
  k create namespace "$EXPERIMENT_NS" >/dev/null
  log "kubectl apply -f $manifest (namespace $EXPERIMENT_NS)"
  k apply --namespace "$EXPERIMENT_NS" -f "$manifest" >&2
}

# Deletes the experiment namespace and waits (bounded) until it is gone:
# while the operator still runs, since each CommunicationPattern carries the
# operator's finalizer. Registered as a cleanup once the operator runs.
delete_experiments() {
  [[ "${COMMLAB_E2E_KEEP:-0}" == 1 ]] && return
  log "deleting namespace $EXPERIMENT_NS"
  k delete namespace "$EXPERIMENT_NS" --ignore-not-found --timeout=180s >/dev/null
}

# Waits until every PatternComparison and CommunicationPattern in the
# experiment namespace is Completed; fails at the first Failed one, when a
# helper process dies, or after $TIMEOUT seconds.
wait_completed() {
  local deadline=$((SECONDS + TIMEOUT)) phases previous=""
  log "waiting up to ${TIMEOUT}s for the experiments to complete"
  while true; do
    phases="$(k get pcmp,cpat --namespace "$EXPERIMENT_NS" \
      -o jsonpath='{range .items[*]}{.kind}/{.metadata.name}={.status.phase}{"\n"}{end}')"
    if [[ "$phases" != "$previous" ]]; then
      log "$(tr '\n' ' ' <<<"$phases")"
      previous="$phases"
    fi
    if grep -q '=Failed$' <<<"$phases"; then
      log "an experiment failed:"
      k get cpat --namespace "$EXPERIMENT_NS" \
        -o jsonpath='{range .items[*]}{.metadata.name}: {.status.conditions[?(@.type=="ExperimentComplete")].message}{"\n"}{end}' >&2
      return 1
    fi
    if [[ -n "$phases" ]] && ! grep -qv '=Completed$' <<<"$phases"; then
      return 0
    fi
    ((SECONDS < deadline)) || { log "not Completed after ${TIMEOUT}s"; return 1; }
    sleep 5
  done
}

# The result table; the exit status of the run.
report() {
  local status=$1
  echo
  k get cpat,pcmp --namespace "$EXPERIMENT_NS" || true
  # BEST is one axis; the rankings show how close the others came.
  k get pcmp --namespace "$EXPERIMENT_NS" -o jsonpath='{range .items[*]}{"\n"}{.metadata.name}, per axis, best first:{"\n"}{range .status.rankings[*]}  {.axis}: {.order}{"\n"}{end}{end}' || true
  if ((status == 0)); then
    log "every experiment Completed in ${SECONDS}s"
  else
    log "FAILED after ${SECONDS}s (logs in $OUT)"
  fi
  return "$status"
}

run_kind() {
  local tool
  for tool in docker kind kubectl helm; do
    command -v "$tool" >/dev/null || die "e2e/run.sh kind needs $tool (and a running Docker engine)"
  done
  docker info >/dev/null 2>&1 || die "e2e/run.sh kind needs a running Docker engine"
  local cluster="${COMMLAB_KIND_CLUSTER:-commlab-e2e}" image=commlab:e2e
  export KUBECONFIG="$OUT/kind.kubeconfig"

  log "kind create cluster $cluster"
  kind create cluster --name "$cluster" --kubeconfig "$KUBECONFIG" --wait 180s >&2
  [[ "${COMMLAB_E2E_KEEP:-0}" == 1 ]] || cleanups+=("kind delete cluster --name $cluster >&2")

  log "docker build -t $image ."
  docker build -t "$image" . >&2
  kind load docker-image "$image" --name "$cluster" >&2

  log "Chaos Mesh $CHAOS_MESH_VERSION from its chart"
  h repo add chaos-mesh https://charts.chaos-mesh.org --force-update >&2
  h upgrade --install chaos-mesh chaos-mesh/chaos-mesh --version "$CHAOS_MESH_VERSION" \
    --namespace chaos-mesh --create-namespace --wait --timeout 10m \
    --set chaosDaemon.runtime=containerd \
    --set chaosDaemon.socketPath=/run/containerd/containerd.sock >&2

  # The image is only in the cluster's nodes: never pull it.
  install_chart --set image.repository=commlab --set image.tag=e2e --set image.pullPolicy=Never
  cleanups+=(delete_experiments)
  apply_manifest
  local status=0
  wait_completed || status=$?
  report "$status"
}

run_local() {
  if [[ -n "${COMMLAB_KUBECONFIG:-}" ]]; then
    log "using the cluster of COMMLAB_KUBECONFIG=$COMMLAB_KUBECONFIG"
  else
    e2e/cluster/build.sh >&2
    COMMLAB_KUBECONFIG="$(e2e/cluster/up.sh | tail -n 1)"
    cleanups+=("e2e/cluster/down.sh >&2")
  fi
  local admin="$COMMLAB_KUBECONFIG"
  KUBECTL="${COMMLAB_KUBECTL:-$(e2e/cluster/build.sh --print-bin kubectl)}"
  HELM="${COMMLAB_HELM:-$(e2e/cluster/build.sh --print-bin helm)}"
  export KUBECONFIG="$admin"
  # The real node's name, address, taint and containerd socket (up.sh).
  local node_env
  node_env="$(dirname "$admin")/node.env"
  [[ -f "$node_env" ]] || die "$node_env is missing: the cluster has no real node (e2e/cluster/up.sh makes one)"
  # shellcheck source=/dev/null
  source "$node_env"

  log "images: build and import into the node's containerd"
  e2e/images/build.sh --import "$CONTAINERD_SOCK" >&2

  log "Chaos Mesh: the controller and chaos-daemon on the host"
  e2e/chaos-mesh/build.sh >&2
  COMMLAB_CHAOS_DAEMON_RUNTIME_SOCKET="$CONTAINERD_SOCK" COMMLAB_NODE_IP="$NODE_IP" COMMLAB_NODE_NAME="$NODE_NAME" \
    COMMLAB_PAUSE_IMAGE="$PAUSE_IMAGE" e2e/chaos-mesh/up.sh "$admin" >&2
  # Runs last: the controller removes its finalizers from the chaos objects
  # of the experiments deleted before it.
  cleanups+=("e2e/chaos-mesh/down.sh >&2")

  place_pods_on_the_real_node

  # The images built here, never pulled. A comparison keeps the children of
  # the patterns it has run, so on a 2-CPU node the services request little
  # (they stay idle once their experiment is over).
  install_chart -f - <<EOF
image: { repository: localhost/commlab/commlab, tag: dev, pullPolicy: Never }
databaseImage: localhost/commlab/postgres:15
brokerImage: localhost/commlab/nats:2.9
serviceResources: { cpu: 20m, memory: 64Mi }
EOF
  cleanups+=(delete_experiments)
  cleanups+=(dump_on_failure)

  apply_manifest
  local status=0
  wait_completed || status=$?
  if [[ "$manifest" == "$(readlink -f e2e/manifests/real-faults.yaml)" ]]; then
    ((status != 0)) || assert_fault_effects || status=$?
  else
    log "no fault effects asserted for $manifest (only for e2e/manifests/real-faults.yaml)"
  fi
  report "$status"
}

# place_pods_on_the_real_node: the kwok nodes take no new pods and the real
# node's taint is lifted for this run (both undone afterwards), so that the
# operator, its children and the runners run in containers.
place_pods_on_the_real_node() {
  local fake
  fake="$(k get nodes --selector=type=kwok -o name)"
  if [[ -n "$fake" ]]; then
    # shellcheck disable=SC2086 # one node name per word
    k cordon $fake >&2
    cleanups+=("k uncordon $(tr '\n' ' ' <<<"$fake") >&2")
  fi
  k taint node "$NODE_NAME" "$NODE_TAINT-" >&2
  cleanups+=("k taint node $NODE_NAME $NODE_TAINT=true:NoSchedule --overwrite >&2")
}

# dump_on_failure: what a failed run needs to be understood, in $OUT.
dump_on_failure() {
  ((exit_status != 0)) || return 0
  log "dumping pods, events and logs to $OUT"
  k get pods,jobs,statefulsets,deployments -A -o wide >"$OUT/objects.txt" 2>&1 || true
  k get events -A --sort-by=.lastTimestamp >"$OUT/events.txt" 2>&1 || true
  k logs --namespace "$OPERATOR_NS" "deployment/$RELEASE-operator" >"$OUT/operator.log" 2>&1 || true
  local pod
  for pod in $(k get pods --namespace "$EXPERIMENT_NS" -o name 2>/dev/null); do
    k logs --namespace "$EXPERIMENT_NS" "$pod" --all-containers >"$OUT/${pod#pod/}.log" 2>&1 || true
  done
  tail -n 40 "$OUT/operator.log" >&2 || true
}

# assert_fault_effects: what the faults must have done, read from the
# CommunicationPatterns' status (e2e/assert_faults.py says what and why).
assert_fault_effects() {
  k get cpat --namespace "$EXPERIMENT_NS" -o json | python3 e2e/assert_faults.py
}

case "$target" in
  kind) run_kind ;;
  local) run_local ;;
  *) usage ;;
esac
