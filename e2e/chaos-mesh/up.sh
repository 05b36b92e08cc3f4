#!/usr/bin/env bash
# Runs the real Chaos Mesh against a cluster, as host processes (no pods):
# applies Chaos Mesh's CRDs, creates namespace chaos-mesh and starts
# chaos-controller-manager; with COMMLAB_CHAOS_DAEMON_RUNTIME_SOCKET set,
# also chaos-daemon for the one real node on this machine.
#
#   e2e/chaos-mesh/up.sh KUBECONFIG    (binaries from e2e/chaos-mesh/build.sh)
#
# Idempotent: when what is asked for already runs and answers, it only
# prints. The last line of stdout is the path of an env file holding the
# ports and paths in use; logs go to stderr. Pids are recorded in
# $COMMLAB_CLUSTER_DIR/pids/, logs written to $COMMLAB_CLUSTER_DIR/logs/,
# certificates and state kept in $COMMLAB_CLUSTER_DIR/chaos-mesh/.
# e2e/chaos-mesh/down.sh stops it.
#
# Environment:
#   COMMLAB_CLUSTER_DIR                  the cluster's state directory (as for e2e/cluster/up.sh)
#   COMMLAB_PAUSE_IMAGE                  the image pod-failure swaps in (default localhost/commlab/pause:3.10)
#   COMMLAB_CHAOS_TARGET_NAMESPACE       act in this namespace only (default: every namespace)
#   COMMLAB_CHAOS_DAEMON_RUNTIME_SOCKET  containerd's socket: start chaos-daemon too
#   COMMLAB_CHAOS_DAEMON_RUNTIME         the daemon's --runtime (default containerd; docker, crio)
#   COMMLAB_CHAOS_DAEMON_GRPC_PORT       the daemon's gRPC port (default 31767, Chaos Mesh's)
#   COMMLAB_NODE_IP                      the node's address (required with the daemon)
#   COMMLAB_NODE_NAME                    the node's name (default: this host's name)
#   COMMLAB_KUBECTL                      kubectl to use (default: e2e/cluster's, else PATH)
#   COMMLAB_START_TIMEOUT                seconds per wait (default 60)
#   COMMLAB_CHAOS_MESH_WEBHOOKS          1 (default): register the controller's admission webhooks
#                                        (defaults and validation, as a Helm install does); 0: none
#   COMMLAB_KEEP_FAILED=1                keep what started when up.sh fails
set -euo pipefail

CHAOS_MESH_SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$CHAOS_MESH_SCRIPT_DIR/lib.sh"

[[ $# -eq 1 && -n "$1" ]] || die "usage: e2e/chaos-mesh/up.sh KUBECONFIG"
[[ -f "$1" ]] || die "no kubeconfig at $1"
kubeconfig="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"

# One up.sh or down.sh at a time (released when the script exits).
lock chaos-mesh

START_TIMEOUT="${COMMLAB_START_TIMEOUT:-60}"
PAUSE_IMAGE="${COMMLAB_PAUSE_IMAGE:-localhost/commlab/pause:3.10}"
TARGET_NAMESPACE="${COMMLAB_CHAOS_TARGET_NAMESPACE:-}"
WEBHOOKS="${COMMLAB_CHAOS_MESH_WEBHOOKS:-1}"
[[ "$WEBHOOKS" == 0 || "$WEBHOOKS" == 1 ]] || die "COMMLAB_CHAOS_MESH_WEBHOOKS must be 0 or 1"
DAEMON_SOCKET="${COMMLAB_CHAOS_DAEMON_RUNTIME_SOCKET:-}"
DAEMON_RUNTIME="${COMMLAB_CHAOS_DAEMON_RUNTIME:-containerd}"
NODE_IP="${COMMLAB_NODE_IP:-}"
NODE_NAME="${COMMLAB_NODE_NAME:-$(hostname | tr '[:upper:]' '[:lower:]')}"

for f in chaos-controller-manager chaos-daemon crd.yaml; do
  [[ -s "$CHAOS_MESH_DIR/$f" ]] || die "$CHAOS_MESH_DIR/$f is missing; run e2e/chaos-mesh/build.sh first"
done
command -v openssl >/dev/null || die "openssl is required"
command -v curl >/dev/null || die "curl is required"
command -v python3 >/dev/null || die "python3 is required (to pick free ports)"
KUBECTL="${COMMLAB_KUBECTL:-$(component_bin kubectl 2>/dev/null || true)}"
[[ -x "$KUBECTL" ]] || KUBECTL="$(command -v kubectl || true)"
[[ -x "$KUBECTL" ]] || die "no kubectl: run e2e/cluster/build.sh, put kubectl on PATH or set COMMLAB_KUBECTL"
kube() { "$KUBECTL" --kubeconfig "$kubeconfig" "$@"; }

if [[ -n "$DAEMON_SOCKET" ]]; then
  [[ -S "$DAEMON_SOCKET" ]] || die "COMMLAB_CHAOS_DAEMON_RUNTIME_SOCKET=$DAEMON_SOCKET is not a socket"
  case "$DAEMON_RUNTIME" in
    containerd | docker | crio) ;;
    *) die "COMMLAB_CHAOS_DAEMON_RUNTIME=$DAEMON_RUNTIME: chaos-daemon knows containerd, docker and crio" ;;
  esac
  [[ -n "$NODE_IP" ]] || die "COMMLAB_NODE_IP is required with COMMLAB_CHAOS_DAEMON_RUNTIME_SOCKET"
  # grep reads everything (no -q): ip would die of SIGPIPE, failing the pipe.
  ip -o addr show | grep -F " $NODE_IP/" >/dev/null || die "COMMLAB_NODE_IP=$NODE_IP is not an address of this machine"
  # The API server refuses loopback addresses in an EndpointSlice.
  [[ "$NODE_IP" != 127.* ]] || die "COMMLAB_NODE_IP=$NODE_IP: an EndpointSlice may not hold a loopback address"
  for tool in nsenter unshare ip ipset iptables tc; do
    command -v "$tool" >/dev/null || die "$tool is required by chaos-daemon (Debian: iproute2, ipset, iptables, util-linux)"
  done
fi

# What this run asks for, to compare with what runs.
wanted="$(printf '%s\n' "kubeconfig=$kubeconfig" "bin=$CHAOS_MESH_DIR" "pause=$PAUSE_IMAGE" \
  "target=$TARGET_NAMESPACE" "webhooks=$WEBHOOKS" "daemon=$DAEMON_RUNTIME:$DAEMON_SOCKET:$CM_DAEMON_GRPC_PORT" "node=$NODE_NAME/$NODE_IP")"

# answers URL [CURL ARGS...]: URL answers 2xx.
answers() { curl -sf --max-time 2 -o /dev/null "$@"; }

already_up() {
  [[ -f "$CM_ENV_FILE" && "$(cat "$CM_STATE_DIR/wanted" 2>/dev/null)" == "$wanted" ]] || return 1
  local METRICS_PORT="" DAEMON_HTTP_PORT=""
  # shellcheck disable=SC1090 # written by this script
  source "$CM_ENV_FILE"
  [[ -n "$(recorded_pid chaos-controller-manager)" ]] && answers "http://127.0.0.1:$METRICS_PORT/metrics" || return 1
  if [[ -n "$DAEMON_SOCKET" ]]; then
    [[ -n "$(recorded_pid chaos-daemon)" ]] && answers "http://127.0.0.1:$DAEMON_HTTP_PORT/metrics" || return 1
    # The daemon fails every fault without its helper (seen removed once).
    nsexec_is_ours || return 1
  fi
}

if already_up; then
  log "chaos-mesh already up ($CM_STATE_DIR)"
  echo "$CM_ENV_FILE"
  exit 0
fi
if [[ -d "$CM_STATE_DIR" ]] || any_recorded; then
  log "found a stale, partial or differently configured chaos-mesh; stopping it first"
  COMMLAB_CHAOS_MESH_LOCKED=1 "$CHAOS_MESH_SCRIPT_DIR/down.sh" >&2
fi

start_ns=$(date +%s%N)
elapsed() { echo "$((($(date +%s%N) - start_ns) / 1000000))ms"; }

mkdir -p "$CM_STATE_DIR" "$CM_CERTS_DIR" "$PID_DIR" "$LOG_DIR"
chmod 700 "$CM_STATE_DIR"
# fd 3 is stderr, kept for messages from inside wait_until's quiet checks.
exec 3>&2

on_exit() {
  local rc=$?
  ((rc != 0)) || return 0
  log "chaos-mesh up.sh failed (exit $rc); last lines of its logs:"
  local name
  for name in "${CM_PROCESSES[@]}"; do
    [[ -f "$LOG_DIR/$name.log" ]] || continue
    printf '==> %s <==\n' "$LOG_DIR/$name.log" >&2
    tail -n 20 "$LOG_DIR/$name.log" >&2
  done
  if [[ -z "${COMMLAB_KEEP_FAILED:-}" ]]; then
    log "stopping what was started (set COMMLAB_KEEP_FAILED=1 to keep it)"
    COMMLAB_CHAOS_MESH_LOCKED=1 "$CHAOS_MESH_SCRIPT_DIR/down.sh" >&2 || true
  fi
  exit "$rc"
}
trap on_exit EXIT
printf '%s\n' "$wanted" >"$CM_STATE_DIR/wanted"
echo "$kubeconfig" >"$CM_STATE_DIR/kubeconfig-path"

# --- CRDs: Chaos Mesh's own, server-side (workflownodes is too large for the
# last-applied annotation of a client-side apply) ---
crd="$CHAOS_MESH_DIR/crd.yaml"
kube apply --server-side --force-conflicts --field-manager=commlab-e2e -f "$crd" >/dev/null
kube wait --for=condition=Established --timeout="${START_TIMEOUT}s" -f "$crd" >/dev/null
log "$(grep -c '^kind: CustomResourceDefinition' "$crd") Chaos Mesh CRDs applied and Established ($(elapsed))"

kube apply --server-side --field-manager=commlab-e2e -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $CM_NAMESPACE
  labels:
    app.kubernetes.io/part-of: chaos-mesh
EOF

# --- ports: free on loopback (the daemon's HTTP port: on every address,
# where chaos-daemon binds it) ---
read -r METRICS_PORT WEBHOOK_PORT DAEMON_HTTP_PORT < <(free_ports 127.0.0.1 127.0.0.1 0.0.0.0)

# --- certificates (ECDSA P-256: milliseconds to make) ---
# One CA signs the webhook server's certificate (the webhook server always
# starts, and reads tls.crt/tls.key from CERTS_DIR) and both ends of the
# controller -> chaos-daemon gRPC link, which is mutual TLS: the daemon
# requires a client certificate from this CA, the controller checks the
# daemon's certificate for the name chaos-daemon.chaos-mesh.org.
certs="$CM_CERTS_DIR"
for name in ca webhook daemon controller; do
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$certs/$name.key" 2>/dev/null
done
chmod 600 "$certs"/*.key
openssl req -x509 -key "$certs/ca.key" -out "$certs/ca.crt" -days 365 -sha256 -subj "/CN=commlab-e2e-chaos-mesh-ca" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
# sign NAME SUBJECT EXTENSIONS: a CA-signed certificate for $certs/NAME.key.
sign() {
  openssl req -new -key "$certs/$1.key" -subj "$2" 2>/dev/null |
    openssl x509 -req -CA "$certs/ca.crt" -CAkey "$certs/ca.key" -CAcreateserial -days 365 -sha256 \
      -extfile <(printf '%s\n' "$3") -out "$certs/$1.crt" 2>/dev/null
}
leaf="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment"
sign webhook "/CN=chaos-mesh-controller-manager" "$leaf
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost"
sign daemon "/CN=chaos-daemon.chaos-mesh.org" "$leaf
extendedKeyUsage=serverAuth
subjectAltName=DNS:chaos-daemon.chaos-mesh.org${NODE_IP:+,IP:$NODE_IP}"
sign controller "/CN=chaos-controller-manager" "$leaf
extendedKeyUsage=clientAuth"
# controller-runtime's webhook server reads these two names from CERTS_DIR.
ln -sf webhook.crt "$certs/tls.crt"
ln -sf webhook.key "$certs/tls.key"

cat >"$CM_ENV_FILE" <<EOF
CHAOS_MESH_VERSION=$CHAOS_MESH_VERSION
CHAOS_MESH_NAMESPACE=$CM_NAMESPACE
KUBECONFIG=$kubeconfig
METRICS_PORT=$METRICS_PORT
WEBHOOK_PORT=$WEBHOOK_PORT
DAEMON_GRPC_PORT=$CM_DAEMON_GRPC_PORT
DAEMON_HTTP_PORT=${DAEMON_SOCKET:+$DAEMON_HTTP_PORT}
CERTS_DIR=$certs
POD_FAILURE_PAUSE_IMAGE=$PAUSE_IMAGE
EOF
log "ports: controller metrics $METRICS_PORT, webhook $WEBHOOK_PORT${DAEMON_SOCKET:+, daemon gRPC $CM_DAEMON_GRPC_PORT, daemon HTTP $DAEMON_HTTP_PORT}"


# --- chaos-controller-manager: configured by environment only (pkg/config);
# a clean environment, so nothing of the caller's leaks into its settings ---
scope=(CLUSTER_SCOPED=true TARGET_NAMESPACE=)
[[ -z "$TARGET_NAMESPACE" ]] || scope=(CLUSTER_SCOPED=false "TARGET_NAMESPACE=$TARGET_NAMESPACE")
controller_start_ns=$(date +%s%N)
start_recorded chaos-controller-manager "$CHAOS_MESH_DIR/chaos-controller-manager" \
  env -i PATH="$PATH" HOME="$HOME" \
  KUBECONFIG="$kubeconfig" \
  NAMESPACE="$CM_NAMESPACE" \
  ENABLE_LEADER_ELECTION=false \
  "${scope[@]}" \
  ENABLED_CONTROLLERS='*' \
  ENABLED_WEBHOOKS="$([[ "$WEBHOOKS" == 1 ]] && echo '*')" \
  CERTS_DIR="$certs" \
  WEBHOOK_HOST=127.0.0.1 WEBHOOK_PORT="$WEBHOOK_PORT" \
  METRICS_HOST=127.0.0.1 METRICS_PORT="$METRICS_PORT" \
  PPROF_ADDR=0 \
  POD_FAILURE_PAUSE_IMAGE="$PAUSE_IMAGE" \
  CHAOS_DAEMON_SERVICE_PORT="$CM_DAEMON_GRPC_PORT" \
  CHAOS_MESH_CA_CERT="$certs/ca.crt" \
  CHAOS_DAEMON_CLIENT_CERT="$certs/controller.crt" \
  CHAOS_DAEMON_CLIENT_KEY="$certs/controller.key" \
  "$CHAOS_MESH_DIR/chaos-controller-manager"

# Ready once the manager serves metrics and the controllers commlab relies
# on have started their workers (their caches have synced): the PodChaos and
# NetworkChaos pipelines, and podnetworkchaos, which talks to chaos-daemon.
# (It has no health endpoint: no health probe address is configured.)
controller_ready() {
  local name
  answers "http://127.0.0.1:$METRICS_PORT/metrics" || return 1
  for name in podchaos-pipeline networkchaos-pipeline podnetworkchaos; do
    grep -q "Starting workers.*\"controller\": \"$name\"" "$LOG_DIR/chaos-controller-manager.log" || return 1
  done
}
wait_until "$START_TIMEOUT" "chaos-controller-manager to start its controllers" \
  alive_and chaos-controller-manager controller_ready
controller_ms=$((($(date +%s%N) - controller_start_ns) / 1000000))
log "chaos-controller-manager ready in ${controller_ms}ms ($(elapsed))"

# --- admission webhooks: what a Helm install registers (upstream's
# helm/chaos-mesh/templates/*-admission-webhooks.yaml), pointed at the
# controller's loopback port. Without them nothing defaults a spec (a
# selector without namespaces, a delay without correlation) or validates
# it, and nothing checks the requester may touch the target namespaces. ---
if [[ "$WEBHOOKS" == 1 ]]; then
  ca_bundle="$(base64 -w0 "$certs/ca.crt")"
  # webhook PREFIX KIND PLURAL PATH OPERATIONS: one entry of a webhook configuration.
  webhook() {
    cat <<EOF
  - name: $1$2.kb.io
    clientConfig: {url: "https://127.0.0.1:$WEBHOOK_PORT$4", caBundle: "$ca_bundle"}
    failurePolicy: Fail
    timeoutSeconds: 5
    sideEffects: None
    admissionReviewVersions: [v1, v1beta1]
    rules:
      - {apiGroups: [chaos-mesh.org], apiVersions: [v1alpha1], operations: [$5], resources: ["$3"]}
EOF
  }
  # Defaults on CREATE only (Helm: CREATE and UPDATE). The api module is
  # newer than the CRDs: its NetworkChaos default partitionBehavior: drop is
  # not in the CRD's schema, so the API server prunes it; defaulted again on
  # each of the controller's updates, it made the spec differ from the stored
  # one, and the validating webhook refused every update ("Cannot update
  # chaos spec"). Nothing but a spec change needs defaults on UPDATE, and the
  # validating webhook refuses spec changes anyway.
  # Chaos kinds' plurals are their names; the others take an s.
  plural() { if [[ "$1" == *chaos ]]; then echo "$1"; else echo "$1s"; fi; }
  {
    printf 'apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\n'
    printf 'metadata: {name: %s}\nwebhooks:\n' "${CM_WEBHOOK_CONFIGS[0]}"
    for kind in "${CM_WEBHOOK_KINDS[@]}"; do
      webhook m "$kind" "$(plural "$kind")" "/mutate-chaos-mesh-org-v1alpha1-$kind" CREATE
    done
    printf -- '---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\n'
    printf 'metadata: {name: %s}\nwebhooks:\n' "${CM_WEBHOOK_CONFIGS[1]}"
    for kind in "${CM_WEBHOOK_KINDS[@]}"; do
      webhook v "$kind" "$(plural "$kind")" "/validate-chaos-mesh-org-v1alpha1-$kind" "CREATE, UPDATE"
    done
    printf -- '---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\n'
    printf 'metadata: {name: %s}\nwebhooks:\n' "${CM_WEBHOOK_CONFIGS[2]}"
    webhook v auth '*' /validate-auth "CREATE, UPDATE"
  } | kube apply --server-side --force-conflicts --field-manager=commlab-e2e -f - >/dev/null
  touch "$CM_STATE_DIR/webhooks-installed"
  # In force once a server-side dry run of a PodChaos without namespaces
  # comes back with the object's namespace defaulted into its selector.
  defaulted() {
    kube create --dry-run=server -o jsonpath='{.spec.selector.namespaces[0]}' -f - <<EOF | grep -qx "$CM_NAMESPACE"
apiVersion: chaos-mesh.org/v1alpha1
kind: PodChaos
metadata: {name: commlab-e2e-webhook-probe, namespace: $CM_NAMESPACE}
spec: {action: pod-kill, mode: all, selector: {labelSelectors: {commlab.dev/none: none}}}
EOF
  }
  wait_until "$START_TIMEOUT" "the admission webhooks to default a PodChaos" alive_and chaos-controller-manager defaulted
  log "admission webhooks registered for ${#CM_WEBHOOK_KINDS[@]} kinds, and validate-auth ($(elapsed))"
fi

# --- chaos-daemon (only for a real node) ---
if [[ -n "$DAEMON_SOCKET" ]]; then
  # The gRPC port is the same for every node of a cluster: one daemon per
  # machine on a port, unless clusters pick different ones.
  if ! port_free 0.0.0.0 "$CM_DAEMON_GRPC_PORT"; then
    die "port $CM_DAEMON_GRPC_PORT (chaos-daemon gRPC) is in use: another chaos-daemon runs here? (COMMLAB_CHAOS_DAEMON_GRPC_PORT)"
  fi
  # The daemon runs ipset, iptables, ip and tc in a pod's namespaces through
  # /usr/local/bin/nsexec (a hard-coded path): install the shim when nothing
  # is there (and only then own it: down.sh removes it), refresh it when it
  # is ours, refuse anything else.
  if [[ ! -e "$CM_NSEXEC" ]]; then
    install -m 0755 "$CHAOS_MESH_SCRIPT_DIR/nsexec" "$CM_NSEXEC"
    touch "$CM_STATE_DIR/nsexec-installed"
  elif nsexec_is_ours; then
    cmp -s "$CHAOS_MESH_SCRIPT_DIR/nsexec" "$CM_NSEXEC" || install -m 0755 "$CHAOS_MESH_SCRIPT_DIR/nsexec" "$CM_NSEXEC"
  else
    die "$CM_NSEXEC exists and is not commlab's shim; not replacing it"
  fi
  daemon_start_ns=$(date +%s%N)
  # chaos-daemon binds 0.0.0.0 (no flag for the address) and at start
  # remounts /sys: give it a mount namespace of its own (receiving the host's
  # later mounts), so that remount does not touch the host's /sys.
  start_recorded chaos-daemon "$CHAOS_MESH_DIR/chaos-daemon" \
    env -i PATH="$PATH" HOME="$HOME" \
    unshare --mount --propagation slave \
    "$CHAOS_MESH_DIR/chaos-daemon" \
    --runtime "$DAEMON_RUNTIME" \
    --runtime-socket-path "$DAEMON_SOCKET" \
    --containerd-ns k8s.io \
    --grpc-port "$CM_DAEMON_GRPC_PORT" \
    --http-port "$DAEMON_HTTP_PORT" \
    --ca "$certs/ca.crt" \
    --cert "$certs/daemon.crt" \
    --key "$certs/daemon.key"
  wait_until "$START_TIMEOUT" "chaos-daemon /metrics" \
    alive_and chaos-daemon answers "http://127.0.0.1:$DAEMON_HTTP_PORT/metrics"
  log "chaos-daemon ready in $((($(date +%s%N) - daemon_start_ns) / 1000000))ms ($(elapsed))"

  # The controller finds a node's daemon in the EndpointSlices of its
  # namespace whose names start with chaos-daemon-, by the endpoint's
  # nodeName, and dials the first address at CHAOS_DAEMON_SERVICE_PORT.
  kube apply --server-side --force-conflicts --field-manager=commlab-e2e -f - >/dev/null <<EOF
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: chaos-daemon-$NODE_NAME
  namespace: $CM_NAMESPACE
  labels:
    kubernetes.io/service-name: chaos-daemon
    endpointslice.kubernetes.io/managed-by: e2e.commlab.dev
    app.kubernetes.io/component: chaos-daemon
addressType: IPv4
endpoints:
  - addresses: ["$NODE_IP"]
    nodeName: $NODE_NAME
    conditions: {ready: true}
ports:
  - {name: grpc, port: $CM_DAEMON_GRPC_PORT, protocol: TCP}
  - {name: http, port: $DAEMON_HTTP_PORT, protocol: TCP}
EOF
  echo "$NODE_NAME" >"$CM_STATE_DIR/endpointslice-node"
  log "EndpointSlice $CM_NAMESPACE/chaos-daemon-$NODE_NAME -> $NODE_IP:$CM_DAEMON_GRPC_PORT"
fi

trap - EXIT
log "chaos-mesh $CHAOS_MESH_SHORT up in $(elapsed); logs in $LOG_DIR/chaos-*.log; stop with e2e/chaos-mesh/down.sh"
echo "$CM_ENV_FILE"
