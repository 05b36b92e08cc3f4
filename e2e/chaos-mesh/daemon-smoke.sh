#!/usr/bin/env bash
# Proves chaos-daemon's path without a real node: a NetworkChaos partition
# between two kwok pods really cuts a TCP connection, and recovery restores
# it. The pods' "containers" are two network namespaces this script makes
# (unshare --net, joined by a veth named eth0 on both sides, addressed with
# the pods' IPs); a stand-in for the Docker Engine API on a unix socket tells
# chaos-daemon their pids. Everything else is real: controller, webhooks,
# EndpointSlice lookup, mTLS gRPC, chaos-daemon, the nsexec shim, and this
# machine's ipset and iptables inside those namespaces.
#
#   e2e/chaos-mesh/daemon-smoke.sh KUBECONFIG
#
# Runs e2e/chaos-mesh/up.sh with a daemon (COMMLAB_CHAOS_DAEMON_RUNTIME=docker,
# the stand-in's socket, COMMLAB_NODE_IP = this machine's first global IPv4
# address unless set), so it restarts a running Chaos Mesh of this
# COMMLAB_CLUSTER_DIR, and stops it (down.sh) at the end. Needs root, the
# daemon's gRPC port free (31767, or COMMLAB_CHAOS_DAEMON_GRPC_PORT), and a
# cluster with kwok nodes. No packet leaves
# the two namespaces.
set -euo pipefail

CHAOS_MESH_SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$CHAOS_MESH_SCRIPT_DIR/lib.sh"

[[ $# -eq 1 && -f "$1" ]] || die "usage: e2e/chaos-mesh/daemon-smoke.sh KUBECONFIG"
kubeconfig="$1"
TIMEOUT="${COMMLAB_START_TIMEOUT:-60}"
KUBECTL="${COMMLAB_KUBECTL:-$(component_bin kubectl 2>/dev/null || true)}"
[[ -x "$KUBECTL" ]] || KUBECTL="$(command -v kubectl || true)"
[[ -x "$KUBECTL" ]] || die "no kubectl: set COMMLAB_KUBECTL"
kube() { "$KUBECTL" --kubeconfig "$kubeconfig" "$@"; }
for tool in unshare nsenter ip python3; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
port_free 0.0.0.0 "$CM_DAEMON_GRPC_PORT" ||
  die "port $CM_DAEMON_GRPC_PORT is in use (another chaos-daemon?); set COMMLAB_CHAOS_DAEMON_GRPC_PORT to a free one"
node_ip="${COMMLAB_NODE_IP:-$(ip -o -4 addr show scope global | awk '{sub("/.*", "", $4); print $4; exit}')}"
[[ -n "$node_ip" ]] || die "no global IPv4 address here; set COMMLAB_NODE_IP"
node="$(kube get nodes -l type=kwok -o jsonpath='{.items[0].metadata.name}')"
[[ -n "$node" ]] || die "no kwok node (label type=kwok) in this cluster"

work="$(mktemp -d /tmp/commlab-daemon-smoke.XXXXXX)"
ns="commlab-daemon-smoke-$(head -c 3 /dev/urandom | od -An -tx1 | tr -d ' \n')"
pids=()
cleanup() {
  local rc=$? pid
  kube -n "$ns" delete networkchaos --all --wait=false >/dev/null 2>&1 || true
  kube -n "$ns" wait --for=delete networkchaos --all --timeout="${TIMEOUT}s" >/dev/null 2>&1 || true
  kube delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
  "$CHAOS_MESH_SCRIPT_DIR/down.sh" || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
  ((rc == 0)) || log "daemon smoke failed (exit $rc); logs: $LOG_DIR/chaos-*.log"
}
trap cleanup EXIT

# --- two pods on one kwok node, and a network namespace for each ---
kube create namespace "$ns" >/dev/null
for role in target peer; do
  kube apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $role, namespace: $ns, labels: {app.kubernetes.io/component: $role}}
spec:
  nodeName: $node
  containers: [{name: app, image: localhost/commlab/smoke-app:1}]
EOF
done
wait_until "$TIMEOUT" "pods Ready" kube -n "$ns" wait --for=condition=Ready pod --all --timeout=2s
target_ip="$(kube -n "$ns" get pod target -o jsonpath='{.status.podIP}')"
peer_ip="$(kube -n "$ns" get pod peer -o jsonpath='{.status.podIP}')"

unshare --net sleep 3600 &
target_pid=$!
pids+=("$target_pid")
unshare --net sleep 3600 &
peer_pid=$!
pids+=("$peer_pid")
sleep 0.2
# Partition rules match interface eth0, as in a pod; rename after creation.
ip link add cmsmoke0 netns "$target_pid" type veth peer name cmsmoke1 netns "$peer_pid"
for side in "$target_pid cmsmoke0 $target_ip" "$peer_pid cmsmoke1 $peer_ip"; do
  read -r pid dev addr <<<"$side"
  nsenter -t "$pid" -n sh -c "ip link set lo up && ip link set $dev name eth0 && ip addr add $addr/16 dev eth0 && ip link set eth0 up"
done
nsenter -t "$peer_pid" -n python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 8080)); s.listen(16)
while True:
    c, _ = s.accept(); c.sendall(b"peer\n"); c.close()' "$peer_ip" >/dev/null 2>&1 &
pids+=("$!")
# reaches: a TCP connection from the target namespace to the peer's server
# succeeds within 1 s.
reaches() {
  nsenter -t "$target_pid" -n python3 -c '
import socket, sys
socket.create_connection((sys.argv[1], 8080), timeout=1).close()' "$peer_ip" 2>/dev/null
}
cut_off() { ! reaches; }
wait_until 10 "the peer's server" reaches
log "namespaces ready: target $target_ip (pid $target_pid), peer $peer_ip (pid $peer_pid), on $node"

# --- a stand-in for the Docker Engine API: ping, container inspect, list ---
cat >"$work/docker-api.py" <<'PY'
import json, os, re, socketserver, sys
from http.server import BaseHTTPRequestHandler

PIDS = dict(arg.split("=") for arg in sys.argv[2:])

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("docker-api stand-in: " + (fmt % args) + "\n")

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Api-Version", "1.41")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = self.path.split("?")[0]
        inspect = re.match(r"^(/v[0-9.]+)?/containers/([^/]+)/json$", path)
        if path.endswith("/_ping"):
            self.reply(200, "OK")
        elif inspect and inspect.group(2) in PIDS:
            pid = int(PIDS[inspect.group(2)])
            self.reply(200, {"Id": inspect.group(2), "State": {"Status": "running", "Running": True, "Pid": pid}})
        elif re.match(r"^(/v[0-9.]+)?/containers/json$", path):
            self.reply(200, [])
        else:
            self.reply(404, {"message": "no such container"})

class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

Server(sys.argv[1], Handler).serve_forever()
PY
socket="$work/docker.sock"
python3 "$work/docker-api.py" "$socket" "target=$target_pid" "peer=$peer_pid" 2>"$work/docker-api.log" &
pids+=("$!")
wait_until 10 "the Docker API stand-in" test -S "$socket"
for role in target peer; do
  kube -n "$ns" patch pod "$role" --subresource=status --type=json \
    -p "[{\"op\": \"add\", \"path\": \"/status/containerStatuses/0/containerID\", \"value\": \"docker://$role\"}]" >/dev/null
done

# --- Chaos Mesh with a daemon for that node ---
COMMLAB_CHAOS_DAEMON_RUNTIME_SOCKET="$socket" COMMLAB_CHAOS_DAEMON_RUNTIME=docker \
  COMMLAB_NODE_IP="$node_ip" COMMLAB_NODE_NAME="$node" \
  "$CHAOS_MESH_SCRIPT_DIR/up.sh" "$kubeconfig" >/dev/null

condition() {
  kube -n "$ns" get networkchaos partition -o json 2>/dev/null | python3 -c "
import json, sys
o = json.load(sys.stdin)
sys.exit(0 if any(c['type'] == '$1' and c['status'] == 'True' for c in (o.get('status') or {}).get('conditions') or []) else 1)"
}
t=$(date +%s%N)
ms_since() { echo "$((($(date +%s%N) - t) / 1000000))ms"; }
kube apply -f - >/dev/null <<EOF
apiVersion: chaos-mesh.org/v1alpha1
kind: NetworkChaos
metadata: {name: partition, namespace: $ns}
spec:
  action: partition
  mode: all
  duration: 15s
  direction: both
  selector: {namespaces: [$ns], labelSelectors: {app.kubernetes.io/component: target}}
  target:
    mode: all
    selector: {namespaces: [$ns], labelSelectors: {app.kubernetes.io/component: peer}}
EOF
wait_until "$TIMEOUT" "partition: AllInjected" condition AllInjected
log "partition: AllInjected after $(ms_since)"
wait_until 10 "partition: the connection cut" cut_off
log "partition: target cannot reach peer ($(ms_since) after the create)"
wait_until $((TIMEOUT + 15)) "partition: AllRecovered" condition AllRecovered
log "partition: AllRecovered after $(ms_since)"
wait_until 10 "partition: the connection back" reaches
log "partition: target reaches peer again ($(ms_since) after the create)"
t=$(date +%s%N)
kube -n "$ns" delete networkchaos partition --wait=false >/dev/null
wait_until "$TIMEOUT" "partition: deleted" kube -n "$ns" wait --for=delete networkchaos/partition --timeout=2s
log "partition: deleted in $(ms_since)"
log "daemon smoke passed"
