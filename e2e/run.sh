#!/usr/bin/env bash
# commlab end to end: install the operator with its Helm chart, apply a
# manifest (a PatternComparison or CommunicationPatterns), wait until every
# experiment is Completed, and print `kubectl get cpat,pcmp`.
#
#   e2e/run.sh kind  [manifest]   # NEEDS DOCKER (and kind, kubectl, helm on PATH)
#   e2e/run.sh local [manifest]   # the local control plane of e2e/cluster; no Docker
#
# The manifest defaults to examples/compare-all.yaml (six patterns, about
# two minutes each). Exit status 0 only when every experiment Completed.
#
# kind: creates a kind cluster, builds the repository's Dockerfile and loads
#   the image into the cluster, installs Chaos Mesh from its Helm chart (so
#   the faults are real), installs charts/commlab and runs the manifest.
#   The cluster is deleted afterwards unless COMMLAB_E2E_KEEP=1.
# local: the same steps on the local control plane (e2e/cluster/up.sh, or
#   the one COMMLAB_KUBECONFIG names), minus the image and Chaos Mesh: kwok
#   runs no containers, so the Chaos Mesh CRDs come from a test fixture (the
#   chaos objects are created and deleted, never acted on), and the chart's
#   Deployment and runner Jobs are played by local processes: the operator
#   binary with a token of the chart's ServiceAccount (so the chart's RBAC is
#   what is exercised) and the chart's environment, and `play-runners`
#   (e2e/src/player.rs), which runs each runner Job's `commlab experiment`
#   with the runner's token against services started on loopback. Needs what
#   scripts/install-deps.sh installs (PostgreSQL, NATS), and Go when the
#   control plane is not built yet.
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
manifest="$(readlink -f -- "${2:-$(dirname "$0")/../examples/compare-all.yaml}")"
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
  for ((i = ${#cleanups[@]} - 1; i >= 0; i--)); do
    eval "${cleanups[i]}" || true
  done
  exit "$status"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Checked while waiting; the local target watches its processes with it.
helpers_alive() { true; }

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
    helpers_alive || return 1
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

  log "building the operator, commlab and play-runners"
  cargo build --locked -q -p commlab-controller --bin commlab-operator \
    -p commlab-workload --bin commlab -p commlab-e2e --bin play-runners
  local bin="${CARGO_TARGET_DIR:-target}/debug"

  log "Chaos Mesh CRDs from e2e/fixtures/chaos-mesh-crds.yaml"
  k apply -f e2e/fixtures/chaos-mesh-crds.yaml >&2
  k wait --for=condition=Established --timeout=60s \
    crd/podchaos.chaos-mesh.org crd/networkchaos.chaos-mesh.org >&2

  # --wait: kwok makes the operator's pod Ready (it runs nothing). kwok keeps
  # the runner pods Running so that their Jobs wait for the player.
  install_chart -f - <<'EOF'
runnerPodLabels:
  commlab.dev/kwok-keep-running: "true"
EOF

  # The operator as the chart deploys it: its ServiceAccount's token only,
  # and the environment of its container (values, not references).
  local deployment="deployment/$RELEASE-operator" account="$RELEASE-operator"
  local token server ca
  token="$(k create token "$account" --namespace "$OPERATOR_NS" --duration=4h)"
  server="$(k config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')"
  ca="$(k config view --raw --minify --flatten -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"
  local operator_kubeconfig="$OUT/operator.kubeconfig"
  (umask 077 && cat >"$operator_kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{ name: e2e, cluster: { server: "$server", certificate-authority-data: "$ca" } }]
users: [{ name: operator, user: { token: "$token" } }]
contexts: [{ name: operator, context: { cluster: e2e, user: operator, namespace: $OPERATOR_NS } }]
current-context: operator
EOF
  )
  local -a env
  mapfile -t env < <(k get "$deployment" --namespace "$OPERATOR_NS" \
    -o jsonpath='{range .spec.template.spec.containers[0].env[?(@.value)]}{.name}={.value}{"\n"}{end}')
  ((${#env[@]})) || die "no environment in $deployment"
  log "operator: $bin/commlab-operator run, as ServiceAccount $OPERATOR_NS/$account, env: ${env[*]}"
  # Its own /metrics port: the chart's 0.0.0.0:8080 may be taken here.
  env "${env[@]}" COMMLAB_LISTEN=127.0.0.1:0 KUBECONFIG="$operator_kubeconfig" NO_COLOR=1 \
    "$bin/commlab-operator" run >"$OUT/operator.log" 2>&1 &
  operator_pid=$!
  cleanups+=("stop_process $operator_pid operator")
  # Cleanup runs in reverse: the player stops, then the experiments are
  # deleted while the operator can still remove its finalizers.
  cleanups+=(delete_experiments)

  log "player: $bin/play-runners --namespace $EXPERIMENT_NS (log: $OUT/player.log)"
  "$bin/play-runners" --namespace "$EXPERIMENT_NS" --commlab "$bin/commlab" --kubeconfig "$admin" \
    >"$OUT/player.log" 2>&1 &
  player_pid=$!
  cleanups+=("stop_process $player_pid player")

  apply_manifest

  local status=0
  wait_completed || status=$?
  # The player's verdict on the runs it played counts too.
  if ((status == 0)); then
    stop_process "$player_pid" player || status=$?
  fi
  grep '^player:' "$OUT/player.log" >&2 || true
  if ((status != 0)); then
    log "operator log (tail):"
    tail -n 30 "$OUT/operator.log" >&2 || true
    log "player log (tail):"
    tail -n 30 "$OUT/player.log" >&2 || true
  fi
  report "$status"
}

# Fails when the operator or the player has exited, or a play failed (its
# Job would only fail at its deadline, minutes later).
helpers_alive_local() {
  local pid name pid_name
  for pid_name in "$operator_pid:operator" "$player_pid:player"; do
    pid="${pid_name%%:*}" name="${pid_name#*:}"
    if ! kill -0 "$pid" 2>/dev/null; then
      log "the $name exited early (log: $OUT/$name.log)"
      return 1
    fi
  done
  if grep -q '^player: FAILED' "$OUT/player.log"; then
    log "the player failed to play a runner Job"
    return 1
  fi
}

# SIGTERM to a process this script started, SIGKILL after 60 s; its status.
stop_process() {
  local pid=$1 name=$2 waited=0
  kill -0 "$pid" 2>/dev/null || { wait "$pid"; return; }
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && ((waited < 60)); do
    sleep 1
    waited=$((waited + 1))
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "the $name did not stop within 60 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid"
}

case "$target" in
  kind) run_kind ;;
  local)
    operator_pid="" player_pid=""
    helpers_alive() { helpers_alive_local; }
    run_local
    ;;
  *) usage ;;
esac
