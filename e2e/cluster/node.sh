#!/usr/bin/env bash
# The real node of the local cluster: containerd, the kubelet, kube-proxy and
# CoreDNS as host processes, pods on a bridge CNI network. Sourced by up.sh
# (it uses up.sh's start, sign, write_kubeconfig, healthy and ports); see
# ../../shared/REAL-NODE.md for why each setting is what it is.
# shellcheck disable=SC2153,SC2154 # variables of lib.sh and up.sh

NODE_DIR="$COMMLAB_CLUSTER_DIR/node"
CONTAINERD_DIR="$(dirname "$CONTAINERD_SOCK")"
CNI_CONF_DIR="$NODE_DIR/cni"

# node_host_prepare: the host changes the node needs, journaled (host.sh)
# before anything listens on the node's address.
node_host_prepare() {
  command -v ip >/dev/null || die "ip (iproute2) is required"
  command -v iptables >/dev/null || die "iptables is required (scripts/install-deps.sh)"
  [[ -x /usr/bin/containerd && -x /usr/sbin/runc ]] || die "containerd and runc are required (scripts/install-deps.sh)"
  [[ -x /usr/lib/cni/bridge ]] || die "the CNI plugins are required in /usr/lib/cni (scripts/install-deps.sh)"
  ((EUID == 0)) || die "the real node needs root (bridge, iptables, cgroups, mounts)"
  ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1 ||
    die "a link named $NODE_BRIDGE exists already; run e2e/cluster/down.sh (or delete it) first"

  # Nothing that nobody serves may follow the default route out.
  local prefix
  for prefix in "$SERVICE_CIDR" "$POD_CIDR" "$NODE_RANGE"; do host_blackhole "$prefix"; done
  host_bridge "$NODE_BRIDGE" "$NODE_IP/${NODE_SUBNET#*/}"
  host_forward_guard "$NODE_BRIDGE"
  # Replies between two pods on the bridge must pass kube-proxy's conntrack
  # (a Service's DNAT is undone there).
  host_sysctl net.bridge.bridge-nf-call-iptables 1
  host_sysctl net.ipv4.ip_forward 1
  # What the kubelet sets for itself (REAL-NODE.md, "Host changes").
  local name
  for name in vm.overcommit_memory kernel.panic kernel.panic_on_oops; do host_sysctl_keep "$name"; done
  # The kubelet insists on every cgroup v1 controller the kernel has.
  host_mount_cgroup hugetlb
  # Paths the kubelet, containerd and the CNI plugins use whatever they are told.
  local dir
  # containerd 1.6's shims put their sockets in /run/containerd/s whatever
  # its config says.
  for dir in /var/lib/kubelet /var/lib/cni /var/log/containers /var/log/pods /run/netns /run/containerd; do
    host_dir "$dir"
  done
  host_netns_baseline
  # Chains the kubelet, kube-proxy and portmap create, and the pods' cgroups.
  journal iptables
  journal cgroup kubepods
}

# node_pki: the node's identities, signed by the cluster CA (up.sh's sign).
node_pki() {
  local name
  for name in kubelet kubelet-serving kube-proxy coredns apiserver-kubelet-client; do
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$name.key" 2>/dev/null
  done
  chmod 600 "$PKI"/*.key
  # The Node authorizer and NodeRestriction admit this identity to its own node.
  sign kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "$client_ext"
  sign kubelet-serving "/CN=$NODE_NAME" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$NODE_IP,DNS:$NODE_NAME"
  # Bound to system:node-proxier by the default RBAC policy.
  sign kube-proxy "/CN=system:kube-proxy" "$client_ext"
  # Gets read access to Services and EndpointSlices in node_rbac.
  sign coredns "/CN=commlab:coredns" "$client_ext"
  # The API server's identity towards the kubelet (logs, exec, port-forward).
  sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client_ext"
  for name in kubelet kube-proxy coredns; do
    write_kubeconfig "$COMMLAB_CLUSTER_DIR/$name.kubeconfig" "$name"
  done
}

# node_rbac: what CoreDNS may read (the default policy has no role for it).
node_rbac() {
  kubectl_admin apply -f - >&2 <<'EOF'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: "commlab:coredns" }
rules:
  - { apiGroups: [""], resources: [services, namespaces], verbs: [list, watch] }
  - { apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch] }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: "commlab:coredns" }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "commlab:coredns" }
subjects: [{ apiGroup: rbac.authorization.k8s.io, kind: User, name: "commlab:coredns" }]
EOF
}

# node_start_containerd: containerd with its own root, state, socket and runc
# root, so it never meets another containerd on this host.
node_start_containerd() {
  mkdir -p "$CONTAINERD_DIR" "$CNI_CONF_DIR" "$NODE_DIR/ipam"
  cat >"$CONTAINERD_DIR/config.toml" <<EOF
version = 2
root = "$CONTAINERD_DIR/root"
state = "$CONTAINERD_DIR/state"
disabled_plugins = ["io.containerd.internal.v1.tracing", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$CONTAINERD_DIR/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  disable_apparmor = true
  # Root here lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj
  # (the pause container's -998) and every sandbox would fail.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$CONTAINERD_DIR/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CNI_CONF_DIR"
EOF
  # One bridge network: no masquerade (nothing leaves the machine), the
  # bridge's address as the pods' gateway, host-local addresses kept in our
  # own directory, hairpin so that a pod reaches itself through its Service.
  cat >"$CNI_CONF_DIR/10-commlab.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "commlab",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$NODE_DIR/ipam",
        "ranges": [[{ "subnet": "$NODE_SUBNET", "gateway": "$NODE_IP" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    { "type": "loopback" }
  ]
}
EOF
  start containerd --config "$CONTAINERD_DIR/config.toml" --log-level warn
  wait_until "$START_TIMEOUT" "containerd's socket" \
    alive_and containerd ctr --address "$CONTAINERD_SOCK" version
}

# node_import_pause: the sandbox image must be there before the first pod.
node_import_pause() {
  "$CLUSTER_SCRIPT_DIR/../images/build.sh" --import "$CONTAINERD_SOCK" pause >&2
}

# node_start_kubelet: the kubelet on the node's address, client certificates
# only, authorizing callers through the API server.
node_start_kubelet() {
  mkdir -p "$NODE_DIR/kubelet" "$NODE_DIR/pod-logs"
  # Pods with dnsPolicy Default get this file: no resolver beyond CoreDNS,
  # so no name is ever looked up off the machine.
  echo "nameserver $NODE_IP" >"$NODE_DIR/resolv.conf"
  cat >"$NODE_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
protectKernelDefaults: false
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: false }
  x509: { clientCAFile: $PKI/ca.crt }
authorization:
  mode: Webhook
clusterDomain: cluster.local
clusterDNS: [$NODE_IP]
resolvConf: $NODE_DIR/resolv.conf
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
podLogsDir: $NODE_DIR/pod-logs
registerWithTaints:
  - { key: $NODE_TAINT, value: "true", effect: NoSchedule }
serializeImagePulls: false
# Images are imported, never pulled: none may be collected.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: { memory.available: 200Mi, nodefs.available: 2%, imagefs.available: 2%, nodefs.inodesFree: 2% }
maxPods: 60
nodeStatusReportFrequency: 10s
EOF
  host_sysctl_keep vm.panic_on_oom
  start kubelet \
    --config="$NODE_DIR/kubelet.yaml" \
    --kubeconfig="$COMMLAB_CLUSTER_DIR/kubelet.kubeconfig" \
    --root-dir="$NODE_DIR/kubelet" \
    --cert-dir="$NODE_DIR/kubelet/pki" \
    --hostname-override="$NODE_NAME" \
    --node-ip="$NODE_IP" \
    --node-labels="commlab.dev/node=real" \
    --v=1
}

# node_start_kube_proxy: Services by iptables; it touches no sysctl it does
# not need (conntrack limits stay the host's, no localhost NodePorts).
node_start_kube_proxy() {
  cat >"$NODE_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: $COMMLAB_CLUSTER_DIR/kube-proxy.kubeconfig
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$KUBE_PROXY_METRICS_PORT
clusterCIDR: $NODE_SUBNET
nodePortAddresses: [$NODE_IP/32]
iptables:
  localhostNodePorts: false
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
  start kube-proxy --config="$NODE_DIR/kube-proxy.yaml" --v=1
}

# node_start_coredns: names of Services in cluster.local, answered on the
# node's address; nothing else is answered (no forwarding off the machine).
node_start_coredns() {
  cat >"$NODE_DIR/Corefile" <<EOF
cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {
    bind $NODE_IP
    errors
    health 127.0.0.1:$COREDNS_HEALTH_PORT
    ready 127.0.0.1:$COREDNS_READY_PORT
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $COMMLAB_CLUSTER_DIR/coredns.kubeconfig commlab-e2e
        pods disabled
    }
    cache 5
}
EOF
  start coredns -conf "$NODE_DIR/Corefile"
}

# node_wait_ready: the node Ready, kube-proxy synced and CoreDNS serving.
node_wait_ready() {
  wait_until "$START_TIMEOUT" "kubelet /healthz" healthy kubelet "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz"
  wait_until "$START_TIMEOUT" "node $NODE_NAME Ready" \
    kubectl_admin wait --for=condition=Ready "node/$NODE_NAME" --timeout=2s
  wait_until "$START_TIMEOUT" "kube-proxy /healthz" healthy kube-proxy "http://127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT/healthz"
  wait_until "$START_TIMEOUT" "CoreDNS /ready" healthy coredns "http://127.0.0.1:$COREDNS_READY_PORT/ready"
}

# node_write_env: the node's facts for the scripts that place pods on it.
node_write_env() {
  cat >"$NODE_ENV" <<EOF
NODE_NAME=$NODE_NAME
NODE_IP=$NODE_IP
NODE_TAINT=$NODE_TAINT
CONTAINERD_SOCK=$CONTAINERD_SOCK
PAUSE_IMAGE=$PAUSE_IMAGE
EOF
}
