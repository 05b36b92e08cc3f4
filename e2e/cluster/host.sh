#!/usr/bin/env bash
# Changes the real node makes to this host, journaled so that down.sh can
# undo exactly those, even after a crash. Source it after lib.sh; do not
# execute it.
#
# Every change is written to $HOST_JOURNAL *before* it is made, one line per
# change ("KIND ARGS..."); down.sh reads the journal backwards and reverts
# each line. A change the host already had (a directory, a mount, a sysctl
# at the wanted value) is not journaled, so it is never undone.

# shellcheck disable=SC2034
HOST_JOURNAL="$COMMLAB_CLUSTER_DIR/host.journal"

journal() { echo "$*" >>"$HOST_JOURNAL"; }

# host_sysctl NAME VALUE: set a sysctl, journaling its old value.
host_sysctl() {
  local name="$1" value="$2" old
  old="$(sysctl -n "$name")"
  [[ "$old" == "$value" ]] && return 0
  journal sysctl "$name" "$old"
  sysctl -q -w "$name=$value"
}

# host_sysctl_keep NAME: journal a sysctl's value so that down.sh restores it
# after a process that sets it itself (the kubelet, the bridge plugin).
host_sysctl_keep() {
  journal sysctl "$1" "$(sysctl -n "$1")"
}

# host_dir PATH: make sure PATH exists; remove it on the way down only if it
# did not exist before (the kubelet and the CNI plugins use fixed paths).
host_dir() {
  [[ -e "$1" ]] && return 0
  journal dir "$1"
  mkdir -p "$1"
}

# host_bridge NAME CIDR: a Linux bridge holding the node's address.
host_bridge() {
  local name="$1" cidr="$2"
  journal link "$name"
  ip link add "$name" type bridge
  ip addr add "$cidr" dev "$name"
  ip link set "$name" up
}

# host_blackhole PREFIX: a blackhole route, so that traffic to an address of
# the cluster that nothing serves is dropped here instead of following the
# default route off the machine.
host_blackhole() {
  journal route "$1"
  ip route replace blackhole "$1"
}

# host_mount_cgroup CONTROLLER: mount a cgroup v1 controller the host lacks.
host_mount_cgroup() {
  local path="/sys/fs/cgroup/$1"
  mountpoint -q "$path" && return 0
  journal mount "$path"
  mkdir -p "$path"
  mount -t cgroup -o "$1" cgroup "$path"
}

# host_forward_guard BRIDGE: drop whatever pods send that would leave the
# bridge for another interface (the outside). Pod-to-pod, pod-to-Service and
# pod-to-node traffic never takes that path.
host_forward_guard() {
  journal forward-guard "$1"
  iptables -N COMMLAB-NODE-EGRESS
  iptables -A COMMLAB-NODE-EGRESS -i "$1" ! -o "$1" -j DROP
  iptables -I FORWARD 1 -j COMMLAB-NODE-EGRESS
}

# The iptables tables where the kubelet, kube-proxy and the CNI plugins make
# chains of their own.
HOST_IPTABLES_TABLES=(filter nat mangle)

# remove_chains IPTABLES PATTERN: delete every rule that jumps to a chain
# matching PATTERN, then the chains themselves, in every table.
remove_chains() {
  local ipt="$1" pattern="$2" table rule chain
  command -v "$ipt" >/dev/null || return 0
  for table in "${HOST_IPTABLES_TABLES[@]}"; do
    # Rules of other chains that jump into ours, deleted by their spec
    # (iptables -S quotes its words for a shell: comments hold spaces).
    while read -r rule; do
      [[ -n "$rule" ]] || continue
      eval "\"\$ipt\" -t \"\$table\" ${rule/-A /-D }" 2>/dev/null || true
    done < <("$ipt" -t "$table" -S 2>/dev/null | grep -E "^-A " | grep -E -- "-j $pattern" | grep -vE "^-A $pattern" || true)
    local chains=()
    mapfile -t chains < <("$ipt" -t "$table" -S 2>/dev/null | sed -n "s/^-N \(${pattern}[^ ]*\)\$/\1/p")
    for chain in "${chains[@]}"; do "$ipt" -t "$table" -F "$chain" 2>/dev/null || true; done
    for chain in "${chains[@]}"; do "$ipt" -t "$table" -X "$chain" 2>/dev/null || true; done
  done
}

# revert_host: undo the journal, newest change first. Each step tolerates a
# change that is already gone, so a second run is harmless.
revert_host() {
  [[ -f "$HOST_JOURNAL" ]] || return 0
  local lines=() i kind a b
  mapfile -t lines <"$HOST_JOURNAL"
  for ((i = ${#lines[@]} - 1; i >= 0; i--)); do
    read -r kind a b <<<"${lines[i]}"
    case "$kind" in
      sysctl) sysctl -q -w "$a=$b" || log "could not restore $a=$b" ;;
      dir) rm -rf --one-file-system -- "$a" ;;
      link) ip link del "$a" 2>/dev/null || true ;;
      route) ip route del blackhole "$a" 2>/dev/null || true ;;
      mount) umount "$a" 2>/dev/null || log "could not unmount $a" ;;
      forward-guard)
        iptables -D FORWARD -j COMMLAB-NODE-EGRESS 2>/dev/null || true
        iptables -F COMMLAB-NODE-EGRESS 2>/dev/null || true
        iptables -X COMMLAB-NODE-EGRESS 2>/dev/null || true
        ;;
      iptables)
        # Chains the kubelet (KUBE-FIREWALL, KUBE-KUBELET-CANARY), kube-proxy
        # (KUBE-SERVICES, ...) and the portmap plugin (CNI-HOSTPORT-*) made.
        local ipt
        for ipt in iptables ip6tables; do
          remove_chains "$ipt" 'KUBE-'
          remove_chains "$ipt" 'CNI-'
        done
        ;;
      cgroup) remove_cgroups "$a" ;;
      netns) remove_netns "$a" ;;
      *) log "unknown host journal line: ${lines[i]}" ;;
    esac
  done
  rm -f "$HOST_JOURNAL"
}

# host_netns_baseline: journal the network namespaces that exist now; the
# ones containerd adds (cni-*) are removed on the way down if it could not.
host_netns_baseline() {
  journal netns "$(find /run/netns -maxdepth 1 -name 'cni-*' -printf '%f,' 2>/dev/null)"
}

# remove_netns KEEP: unmount and remove the cni-* namespaces not in KEEP (a
# comma-separated list); their veth pairs go with them.
remove_netns() {
  local keep=",$1" ns
  for ns in /run/netns/cni-*; do
    [[ -e "$ns" ]] || continue
    [[ "$keep" == *",${ns##*/},"* ]] && continue
    umount "$ns" 2>/dev/null || true
    rm -f "$ns"
  done
}

# remove_cgroups NAME: kill what is left in the cgroup NAME (the kubelet's
# kubepods) under every controller, then remove its directories, deepest first.
remove_cgroups() {
  local name="$1" root dir pid
  for root in /sys/fs/cgroup/*/; do
    dir="$root$name"
    [[ -d "$dir" ]] || continue
    while read -r pid; do
      kill -KILL "$pid" 2>/dev/null || true
    done < <(find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null)
  done
  for root in /sys/fs/cgroup/*/; do
    dir="$root$name"
    [[ -d "$dir" ]] || continue
    local tries
    for tries in 1 2 3 4 5 6 7 8 9 10; do
      find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
      [[ -d "$dir" ]] || break
      sleep 0.2
    done
    [[ -d "$dir" ]] && log "could not remove cgroup $dir (try $tries)"
  done
  return 0
}
