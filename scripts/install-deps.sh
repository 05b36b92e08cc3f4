#!/usr/bin/env bash
# Installs what commlab's local runs and tests need from Debian's packages:
# PostgreSQL and NATS (the services' database and broker), openssl (the local
# control plane's certificates) and shellcheck (CI lints the scripts).
# Safe to run again: apt-get skips what is already installed.
set -euo pipefail

packages=(postgresql nats-server openssl curl shellcheck)
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

# Debian's postgresql package may start a cluster of its own; ours are
# throw-away clusters on free ports, so the packaged one is not needed.
command -v cargo >/dev/null || { echo "cargo is missing: install Rust with rustup first" >&2; exit 1; }
command -v go >/dev/null || { echo "go is missing: the local Kubernetes control plane is built with Go" >&2; exit 1; }
