#!/usr/bin/env bash
# Starts a real Kubernetes cluster on this machine: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kwok playing the kubelet for fake
# nodes, and one real node (containerd, kubelet, kube-proxy, CoreDNS; see
# node.sh) whose pods run in containers on a bridge. Idempotent: when the
# cluster is already up and healthy it only prints the kubeconfig path.
#
# Needs root: the node changes the host (a bridge, routes, iptables chains,
# sysctls, a cgroup mount); each change is journaled (host.sh) and reverted
# by down.sh.
#
# The admin kubeconfig's path is the last line of stdout; logs go to stderr.
# Binaries come from build.sh; state, logs and pids live in
# ${COMMLAB_CLUSTER_DIR:-$HOME/.cache/commlab/cluster}.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=host.sh
source "$CLUSTER_SCRIPT_DIR/host.sh"
# shellcheck source-path=SCRIPTDIR source=node.sh
source "$CLUSTER_SCRIPT_DIR/node.sh"

# One up.sh or down.sh at a time (the lock is released when the script exits).
lock cluster

# How many fake nodes to register; each fits 200 pods, 32 CPUs, 128 GiB.
FAKE_NODES="${COMMLAB_FAKE_NODES:-2}"
START_TIMEOUT="${COMMLAB_START_TIMEOUT:-60}"

for c in "${PROCESSES[@]}" kubectl; do
  [[ -x "$(process_bin "$c")" ]] || die "$(process_bin "$c") is missing; run e2e/cluster/build.sh first"
done
command -v openssl >/dev/null || die "openssl is required"
command -v curl >/dev/null || die "curl is required"
command -v python3 >/dev/null || die "python3 is required (to pick free ports)"

PKI="$COMMLAB_CLUSTER_DIR/pki"

kubectl_admin() {
  "$(component_bin kubectl)" --kubeconfig "$KUBECONFIG_PATH" "$@"
}

apiserver_ready() {
  [[ -f "$PORTS_FILE" ]] || return 1
  local APISERVER_PORT
  APISERVER_PORT="$(sed -n 's/^APISERVER_PORT=//p' "$PORTS_FILE")"
  curl -sf --max-time 2 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://$NODE_IP:$APISERVER_PORT/readyz" >/dev/null
}

cluster_healthy() {
  local p
  for p in "${PROCESSES[@]}"; do
    [[ -n "$(recorded_pid "$p")" ]] || return 1
  done
  [[ -f "$KUBECONFIG_PATH" ]] && apiserver_ready
}

if cluster_healthy; then
  log "cluster already up ($COMMLAB_CLUSTER_DIR)"
  echo "$KUBECONFIG_PATH"
  exit 0
fi
if [[ -d "$COMMLAB_CLUSTER_DIR" ]]; then
  log "found a stale or partial cluster in $COMMLAB_CLUSTER_DIR; tearing it down first"
  COMMLAB_CLUSTER_LOCKED=1 "$CLUSTER_SCRIPT_DIR/down.sh" >&2
fi

start_ns=$(date +%s%N)
elapsed() { echo "$((($(date +%s%N) - start_ns) / 1000000))ms"; }

mkdir -p "$COMMLAB_CLUSTER_DIR" "$PID_DIR" "$LOG_DIR" "$PKI"
chmod 700 "$COMMLAB_CLUSTER_DIR"

# fd 3 is stderr, kept for messages from inside wait_until's quiet checks.
exec 3>&2

# On failure, show where to look and stop what was started.
on_exit() {
  local rc=$?
  ((rc != 0)) || return 0
  log "up.sh failed (exit $rc); last lines of the component logs:"
  local f
  for f in "$LOG_DIR"/*.log; do
    [[ -f "$f" ]] || continue
    printf '==> %s <==\n' "$f" >&2
    tail -n 15 "$f" >&2
  done
  if [[ -z "${COMMLAB_KEEP_FAILED:-}" ]]; then
    log "stopping what was started (set COMMLAB_KEEP_FAILED=1 to keep it for debugging)"
    COMMLAB_CLUSTER_LOCKED=1 "$CLUSTER_SCRIPT_DIR/down.sh" >&2 || true
  fi
  exit "$rc"
}
trap on_exit EXIT

# --- the host: bridge, routes, sysctls, mounts (journaled for down.sh) ---
node_host_prepare
log "host prepared: bridge $NODE_BRIDGE $NODE_IP, blackhole routes for $SERVICE_CIDR $POD_CIDR $NODE_RANGE ($(elapsed))"

# --- ports: ask the kernel for free ports, all distinct (a port free on
# loopback is free on the node's address too: nothing else listens there) ---
PORT_NAMES=(ETCD_CLIENT_PORT ETCD_PEER_PORT APISERVER_PORT CONTROLLER_MANAGER_PORT SCHEDULER_PORT KWOK_PORT
  KUBELET_PORT KUBELET_HEALTHZ_PORT KUBE_PROXY_HEALTHZ_PORT KUBE_PROXY_METRICS_PORT COREDNS_HEALTH_PORT COREDNS_READY_PORT)
port_hosts=()
for _ in "${PORT_NAMES[@]}"; do port_hosts+=(127.0.0.1); done
read -r "${PORT_NAMES[@]}" < <(free_ports "${port_hosts[@]}")
for name in "${PORT_NAMES[@]}"; do echo "$name=${!name}"; done >"$PORTS_FILE"
log "ports: etcd $ETCD_CLIENT_PORT (peer $ETCD_PEER_PORT), kube-apiserver $APISERVER_PORT, kube-controller-manager $CONTROLLER_MANAGER_PORT, kube-scheduler $SCHEDULER_PORT, kwok $KWOK_PORT, kubelet $KUBELET_PORT"
# Pods reach the API server through the kubernetes Service, which points at
# the advertised address: the node's.
APISERVER_URL="https://$NODE_IP:$APISERVER_PORT"

# --- PKI: a cluster CA, the apiserver serving cert, client certs, SA keys ---
# ECDSA P-256 keys: generated in milliseconds (RSA takes seconds on a busy
# machine), and accepted by every component and by rustls clients.
for name in ca apiserver admin front-proxy-client kube-controller-manager kube-scheduler kwok sa; do
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$name.key" 2>/dev/null
done
chmod 600 "$PKI"/*.key

# sign NAME SUBJECT EXTENSIONS: a CA-signed certificate for $PKI/NAME.key.
sign() {
  local name="$1" subject="$2" ext="$3"
  openssl req -new -key "$PKI/$name.key" -subj "$subject" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 365 -sha256 -extfile <(printf '%s\n' "$ext") -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr"
}
client_ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"

openssl req -x509 -key "$PKI/ca.key" -out "$PKI/ca.crt" -days 365 -sha256 \
  -subj "/CN=commlab-e2e-ca" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
sign apiserver "/CN=kube-apiserver" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$NODE_IP,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
sign admin "/O=system:masters/CN=commlab-admin" "$client_ext"
# The apiserver's identity towards aggregated API servers; publishing the
# request-header CA also lets the controller manager and the scheduler
# authenticate delegated requests.
sign front-proxy-client "/CN=front-proxy-client" "$client_ext"
sign kube-controller-manager "/CN=system:kube-controller-manager" "$client_ext"
sign kube-scheduler "/CN=system:kube-scheduler" "$client_ext"
# kwok plays the kubelet of every fake node; the Node authorizer only admits a
# kubelet to its own node, so kwok gets cluster-admin instead.
sign kwok "/O=system:masters/CN=kwok" "$client_ext"
openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null

# write_kubeconfig FILE USER: a kubeconfig with the CA and USER's cert embedded.
write_kubeconfig() {
  local file="$1" user="$2"
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: commlab-e2e
  cluster:
    server: $APISERVER_URL
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$user.crt")
    client-key-data: $(base64 -w0 "$PKI/$user.key")
contexts:
- name: commlab-e2e
  context:
    cluster: commlab-e2e
    user: $user
current-context: commlab-e2e
EOF
  chmod 600 "$file"
}
write_kubeconfig "$KUBECONFIG_PATH" admin
for user in kube-controller-manager kube-scheduler kwok; do
  write_kubeconfig "$COMMLAB_CLUSTER_DIR/$user.kubeconfig" "$user"
done
node_pki
log "pki ready ($(elapsed))"

# start NAME ARGS...: start a component with ARGS (lib.sh's start_recorded).
start() {
  local name="$1" bin
  shift
  bin="$(process_bin "$name")"
  start_recorded "$name" "$bin" "$bin" "$@"
}

# healthy NAME URL [CURL ARGS...]: the process is alive and URL answers 2xx;
# exits 3 when the process is gone (see wait_until).
healthy() {
  local name="$1" url="$2"
  shift 2
  alive_and "$name" curl -sf --max-time 2 "$@" "$url"
}

# --- etcd ---
start etcd \
  --name=commlab \
  --data-dir="$COMMLAB_CLUSTER_DIR/etcd" \
  --listen-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --advertise-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster="commlab=http://127.0.0.1:$ETCD_PEER_PORT" \
  --unsafe-no-fsync \
  --log-level=warn
wait_until "$START_TIMEOUT" "etcd /health" healthy etcd "http://127.0.0.1:$ETCD_CLIENT_PORT/health"
log "etcd ready ($(elapsed))"

# --- kube-apiserver ---
# On the node's address, which it publishes in the `kubernetes` Service, so
# that pods (the operator, the runner) reach it. It reaches the kubelet by the
# node's InternalIP and checks the kubelet's certificate against the CA.
start kube-apiserver \
  --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --bind-address="$NODE_IP" \
  --advertise-address="$NODE_IP" \
  --kubelet-preferred-address-types=InternalIP \
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
  --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="$PKI/ca.crt" \
  --secure-port="$APISERVER_PORT" \
  --tls-cert-file="$PKI/apiserver.crt" \
  --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" \
  --requestheader-client-ca-file="$PKI/ca.crt" \
  --requestheader-allowed-names=front-proxy-client \
  --requestheader-username-headers=X-Remote-User \
  --requestheader-group-headers=X-Remote-Group \
  --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --proxy-client-cert-file="$PKI/front-proxy-client.crt" \
  --proxy-client-key-file="$PKI/front-proxy-client.key" \
  --authorization-mode=Node,RBAC \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" \
  --service-account-signing-key-file="$PKI/sa.key" \
  --service-cluster-ip-range="$SERVICE_CIDR" \
  --allow-privileged=true \
  --enable-admission-plugins=NodeRestriction \
  --profiling=false
apiserver_curl=(--cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key")
wait_until "$START_TIMEOUT" "kube-apiserver /readyz" healthy kube-apiserver "$APISERVER_URL/readyz" "${apiserver_curl[@]}"
log "kube-apiserver ready ($(elapsed))"

# --- kube-controller-manager, kube-scheduler, kwok (started together) ---
kcm_kubeconfig="$COMMLAB_CLUSTER_DIR/kube-controller-manager.kubeconfig"
start kube-controller-manager \
  --kubeconfig="$kcm_kubeconfig" \
  --authentication-kubeconfig="$kcm_kubeconfig" \
  --authorization-kubeconfig="$kcm_kubeconfig" \
  --bind-address=127.0.0.1 \
  --secure-port="$CONTROLLER_MANAGER_PORT" \
  --controllers='*' \
  --use-service-account-credentials=true \
  --service-account-private-key-file="$PKI/sa.key" \
  --root-ca-file="$PKI/ca.crt" \
  --cluster-signing-cert-file="$PKI/ca.crt" \
  --cluster-signing-key-file="$PKI/ca.key" \
  --cluster-name=commlab-e2e \
  --service-cluster-ip-range="$SERVICE_CIDR" \
  --leader-elect=false \
  --kube-api-qps=100 \
  --kube-api-burst=200 \
  --profiling=false

scheduler_kubeconfig="$COMMLAB_CLUSTER_DIR/kube-scheduler.kubeconfig"
start kube-scheduler \
  --kubeconfig="$scheduler_kubeconfig" \
  --authentication-kubeconfig="$scheduler_kubeconfig" \
  --authorization-kubeconfig="$scheduler_kubeconfig" \
  --bind-address=127.0.0.1 \
  --secure-port="$SCHEDULER_PORT" \
  --leader-elect=false \
  --profiling=false

start kwok \
  --kubeconfig="$COMMLAB_CLUSTER_DIR/kwok.kubeconfig" \
  --config="$CLUSTER_SCRIPT_DIR/kwok-stages.yaml" \
  --manage-all-nodes=false \
  --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
  --cidr="$POD_CIDR" \
  --server-address="127.0.0.1:$KWOK_PORT"

wait_until "$START_TIMEOUT" "kube-controller-manager /healthz" \
  healthy kube-controller-manager "https://127.0.0.1:$CONTROLLER_MANAGER_PORT/healthz" -k
wait_until "$START_TIMEOUT" "kube-scheduler /readyz" \
  healthy kube-scheduler "https://127.0.0.1:$SCHEDULER_PORT/readyz" -k
wait_until "$START_TIMEOUT" "kwok /healthz" healthy kwok "http://127.0.0.1:$KWOK_PORT/healthz"
log "kube-controller-manager, kube-scheduler, kwok ready ($(elapsed))"

# --- the real node (node.sh) ---
node_rbac
node_start_containerd
node_import_pause
node_start_coredns
node_start_kubelet
node_start_kube_proxy
node_wait_ready
node_write_env
log "node $NODE_NAME Ready, kube-proxy and CoreDNS serving ($(elapsed))"

# --- fake nodes, managed by kwok ---
for i in $(seq 0 $((FAKE_NODES - 1))); do
  cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: ""
    type: kwok
status:
  allocatable: {cpu: "32", memory: 128Gi, pods: "200", ephemeral-storage: 1Ti}
  capacity: {cpu: "32", memory: 128Gi, pods: "200", ephemeral-storage: 1Ti}
EOF
done | kubectl_admin apply -f - >&2
wait_until "$START_TIMEOUT" "fake nodes Ready" \
  kubectl_admin wait --for=condition=Ready node --selector=type=kwok --timeout=2s
# The controller manager is doing its job once the default namespace has its
# ServiceAccount (pods cannot be created before).
wait_until "$START_TIMEOUT" "the default ServiceAccount" kubectl_admin get serviceaccount default -n default
log "$FAKE_NODES fake nodes Ready ($(elapsed))"

trap - EXIT
log "cluster up in $(elapsed): $("$(component_bin kubectl)" version --kubeconfig "$KUBECONFIG_PATH" 2>/dev/null | tail -1)"
log "logs in $LOG_DIR; stop with e2e/cluster/down.sh"
log "use it: export KUBECONFIG=$KUBECONFIG_PATH COMMLAB_KUBECONFIG=$KUBECONFIG_PATH"
echo "$KUBECONFIG_PATH"
