#!/usr/bin/env bash
# commlab's main job on a fresh machine: installs PostgreSQL and NATS from
# Debian's packages, builds the `commlab` binary and runs `commlab compare`
# with the given arguments (e.g. --quick), writing out/report.{json,html}.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --locked -q -p commlab-workload --bin commlab
exec target/release/commlab compare "$@"
