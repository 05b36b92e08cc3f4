#!/usr/bin/env bash
# Installs what commlab's local runs and tests need from Debian's packages:
# PostgreSQL and NATS (the services' database and broker), openssl (the local
# control plane's certificates), python3 (the control plane's scripts read
# JSON and YAML with it) and shellcheck (CI lints the scripts); for the real
# node (e2e/cluster/node.sh): containerd, runc, the CNI plugins, iptables,
# ipset and conntrack (kube-proxy, Chaos Mesh's partition), iproute2; for the
# images built without Docker (e2e/images): umoci, jq, a static busybox, gcc
# (the pause binary, chaos-daemon's cgo).
# Safe to run again: apt-get skips what is already installed.
set -euo pipefail

packages=(postgresql nats-server openssl curl python3 shellcheck
  containerd runc containernetworking-plugins iptables ipset conntrack iproute2
  umoci jq busybox-static gcc libc6-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "cargo is missing: install Rust with rustup first" >&2; exit 1; }
