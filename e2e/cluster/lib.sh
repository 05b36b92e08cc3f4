#!/usr/bin/env bash
# Shared definitions for e2e/cluster/*.sh: versions and paths, defined once.
# Source it; do not execute it.

# shellcheck disable=SC2034 # variables are used by the scripts that source this file
COMMLAB_CACHE="${COMMLAB_CACHE:-$HOME/.cache/commlab}"
COMMLAB_CLUSTER_DIR="${COMMLAB_CLUSTER_DIR:-$COMMLAB_CACHE/cluster}"
CLUSTER_SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# shellcheck disable=SC2034
ETCD_VERSION="v3.6.8"
# shellcheck disable=SC2034
KUBE_VERSION="v1.34.4"
# Staging modules (k8s.io/api, client-go, ...) are tagged v0.<minor>.<patch>.
# shellcheck disable=SC2034
KUBE_STAGING_VERSION="v0.${KUBE_VERSION#v1.}"
# shellcheck disable=SC2034
KWOK_VERSION="v0.8.0"
# shellcheck disable=SC2034
HELM_VERSION="v3.22.0"

BIN_ROOT="$COMMLAB_CACHE/bin"
SRC_ROOT="$COMMLAB_CACHE/src"

# shellcheck disable=SC2034
COREDNS_VERSION="v1.12.4"

# component_version NAME: the version a component is built at.
component_version() {
  case "$1" in
    etcd) echo "$ETCD_VERSION" ;;
    kube-apiserver | kube-controller-manager | kube-scheduler | kubectl | kubelet | kube-proxy) echo "$KUBE_VERSION" ;;
    kwok) echo "$KWOK_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    coredns) echo "$COREDNS_VERSION" ;;
    *) echo "unknown component: $1" >&2; return 1 ;;
  esac
}

# component_dir NAME: the cache directory holding one component's binary.
component_dir() {
  local version
  version="$(component_version "$1")" || return 1
  echo "$BIN_ROOT/$1-$version"
}

# component_bin NAME: the full path of one component's binary.
component_bin() {
  local dir
  dir="$(component_dir "$1")" || return 1
  echo "$dir/$1"
}

# The commands built from one k8s.io/kubernetes wrapper module (one go build).
KUBE_COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
COMPONENTS=("${KUBE_COMPONENTS[@]}" etcd kwok helm coredns)

# lock NAME: hold an exclusive lock on $COMMLAB_CACHE/NAME.lock (fd 9) until
# the script exits, so concurrent runs of the same script take turns.
lock() {
  mkdir -p "$COMMLAB_CACHE"
  exec 9>"$COMMLAB_CACHE/$1.lock"
  if ! flock -n 9; then
    log "waiting for another $1 run to finish ($COMMLAB_CACHE/$1.lock)"
    flock 9
  fi
}

log() {
  printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# --- state of a running cluster (written by up.sh, read by down.sh) ---
# shellcheck disable=SC2034
KUBECONFIG_PATH="$COMMLAB_CLUSTER_DIR/admin.kubeconfig"
PID_DIR="$COMMLAB_CLUSTER_DIR/pids"
# shellcheck disable=SC2034
PORTS_FILE="$COMMLAB_CLUSTER_DIR/ports.env"
# What clients of the real node need (e2e/run.sh local): its name, address,
# taint, containerd socket; beside the admin kubeconfig.
# shellcheck disable=SC2034
NODE_ENV="$COMMLAB_CLUSTER_DIR/node.env"
# shellcheck disable=SC2034
LOG_DIR="$COMMLAB_CLUSTER_DIR/logs"
# Processes up.sh starts, in start order (down.sh stops them in reverse).
# shellcheck disable=SC2034
PROCESSES=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok containerd coredns kubelet kube-proxy)

# process_bin NAME: the executable up.sh starts for NAME (containerd is
# Debian's; everything else is built by build.sh).
process_bin() {
  case "$1" in
    containerd) echo /usr/bin/containerd ;;
    *) component_bin "$1" ;;
  esac
}

# --- addresses ---
# The real node: a bridge whose address is the node's IP, serving the pods'
# subnet. The API server, CoreDNS and the kubelet listen on that address so
# that pods can reach them. kwok's fake pods get (unrouted) addresses from
# POD_CIDR; Services get theirs from SERVICE_CIDR. Nothing here is routed off
# the machine: up.sh adds blackhole routes for all three ranges.
# shellcheck disable=SC2034
NODE_NAME="commlab-node"
# shellcheck disable=SC2034
NODE_BRIDGE="commlab0"
# shellcheck disable=SC2034
NODE_IP="10.245.0.1"
# shellcheck disable=SC2034
NODE_SUBNET="10.245.0.0/24"
# shellcheck disable=SC2034
NODE_RANGE="10.245.0.0/16"
# shellcheck disable=SC2034
SERVICE_CIDR="10.96.0.0/16"
# shellcheck disable=SC2034
SERVICE_IP="10.96.0.1"
# shellcheck disable=SC2034
POD_CIDR="10.244.0.0/16"
# Pods go to the real node only when they tolerate this taint, or when
# e2e/run.sh local lifts it: the kwok tests keep their fake nodes.
# shellcheck disable=SC2034
NODE_TAINT="commlab.dev/real-node"
# shellcheck disable=SC2034
CONTAINERD_SOCK="$COMMLAB_CLUSTER_DIR/containerd/containerd.sock"
# The pods' sandbox image, built by e2e/images/build.sh and imported by up.sh.
# shellcheck disable=SC2034
PAUSE_IMAGE="localhost/commlab/pause:3.10"

# recorded_pid NAME: the pid up.sh recorded for NAME if that pid is still the
# binary up.sh started (same executable path); nothing otherwise.
recorded_pid() {
  local file="$PID_DIR/$1.pid" pid exe actual
  [[ -f "$file" ]] || return 0
  read -r pid exe <"$file" || return 0
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  actual="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
  # A running binary that was replaced on disk reads as "<path> (deleted)".
  if [[ "$actual" == "$exe" || "$actual" == "$exe (deleted)" ]]; then
    echo "$pid"
  fi
}

# start_recorded NAME EXECUTABLE COMMAND...: run COMMAND (EXECUTABLE itself,
# or a wrapper that ends by exec'ing it) in its own session, logging to
# $LOG_DIR/NAME.log, and record "pid EXECUTABLE" in $PID_DIR/NAME.pid.
# Returns once that pid runs EXECUTABLE (until the exec, $! is still a copy
# of this shell).
start_recorded() {
  local name="$1" bin="$2" pid
  shift 2
  # Close fd 3 (the caller's stderr) and fd 9 (the lock) in the child: a
  # daemon holding them would keep pipes open and the lock taken.
  setsid "$@" >"$LOG_DIR/$name.log" 2>&1 </dev/null 3>&- 9>&- &
  pid=$!
  echo "$pid $bin" >"$PID_DIR/$name.pid"
  for _ in $(seq 1 100); do
    [[ -z "$(recorded_pid "$name")" ]] || return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.02
  done
  die "$name did not start; see $LOG_DIR/$name.log"
}

# alive_and NAME CMD...: NAME's recorded process runs and CMD succeeds;
# exits 3 when the process is gone, so that wait_until gives up at once
# (its message goes to fd 3, the caller's stderr).
alive_and() {
  local name="$1"
  shift
  if [[ -z "$(recorded_pid "$name")" ]]; then
    log "$name exited; see $LOG_DIR/$name.log" 2>&3
    return 3
  fi
  "$@"
}

# free_ports HOST...: one free TCP port on each HOST, all distinct (every
# socket is held until all are picked), on one line.
free_ports() {
  python3 - "$@" <<'PY'
import socket, sys
socks = []
for host in sys.argv[1:]:
    s = socket.socket()
    s.bind((host, 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# port_free HOST PORT: nothing listens on HOST:PORT. SO_REUSEADDR, as Go's
# listeners set it: connections of a server that just stopped, still in
# TIME_WAIT, do not keep the next one from listening there.
port_free() {
  python3 -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))' "$1" "$2" 2>/dev/null
}

# wait_until SECONDS WHAT CMD...: run CMD every 0.2 s until it succeeds;
# fail after SECONDS, or at once when CMD exits with 3 (it can never succeed).
wait_until() {
  local timeout="$1" what="$2" deadline rc
  shift 2
  deadline=$(($(date +%s) + timeout))
  while :; do
    rc=0
    "$@" >/dev/null 2>&1 || rc=$?
    ((rc != 0)) || return 0
    if ((rc == 3)); then
      log "gave up waiting for $what"
      return 1
    fi
    if (($(date +%s) >= deadline)); then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 0.2
  done
}
