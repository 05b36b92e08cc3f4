#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs the Debian packages,
# builds (once, cached in ~/.cache/commlab) and starts the local Kubernetes
# cluster (control plane, kwok's fake nodes, a real node), runs the lints,
# the generated-file checks, every test and the end-to-end run of
# e2e/run.sh local with real pods and the real Chaos Mesh, then stops the
# cluster and reverts what its node changed on the host. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s (%ss)\n' "$1" "$SECONDS" >&2; }

# A CI run builds everything once: incremental compilation would only add
# gigabytes of disk and some time.
if [[ -n "${CI:-}" ]]; then
  export CARGO_INCREMENTAL=0
fi

step "install Debian packages"
scripts/install-deps.sh

step "lint: rustfmt, shellcheck"
cargo fmt --all --check
shellcheck scripts/*.sh e2e/*.sh e2e/cluster/*.sh e2e/images/*.sh e2e/chaos-mesh/*.sh e2e/chaos-mesh/nsexec bench/*.sh .ci/run

step "build the local cluster and Chaos Mesh (cached)"
e2e/cluster/build.sh
e2e/chaos-mesh/build.sh
# The kubectl and helm built with the control plane, for the tests that run them.
COMMLAB_KUBECTL="$(e2e/cluster/build.sh --print-bin kubectl)"
COMMLAB_HELM="$(e2e/cluster/build.sh --print-bin helm)"
export COMMLAB_KUBECTL COMMLAB_HELM

step "start the local control plane"
kubeconfig="$(e2e/cluster/up.sh | tail -n 1)"
trap 'e2e/cluster/down.sh >&2 || true' EXIT
export COMMLAB_KUBECONFIG="$kubeconfig"
echo "kubeconfig: $COMMLAB_KUBECONFIG" >&2

step "lint: clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "generated CRDs are up to date"
cargo run -q -p commlab-controller --bin crdgen -- --check

step "tests"
# operator/controller/tests/runner.rs runs the real `commlab` binary as the
# experiment runner. `cargo test --workspace` builds it before any test runs
# (commlab-workload has integration tests), so the test uses that one instead
# of running `cargo build` itself (what it does when COMMLAB_BIN is unset).
COMMLAB_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/commlab"
export COMMLAB_BIN
cargo test --workspace --no-fail-fast 2>&1 | tee target/test-output.txt
summary="$(grep -E '^test result:' target/test-output.txt | awk '{p+=$4; f+=$6; i+=$8} END {print p" passed, "f" failed, "i" skipped"}')"

step "e2e: e2e/run.sh local (e2e/manifests/real-faults.yaml)"
# On the real node of the cluster above: the images built here, the real
# Chaos Mesh controller and daemon, the chart's operator in its pod, five
# patterns compared one after another by their runner Jobs' pods, until the
# comparison is Completed and every fault had the effect it must have.
e2e/run.sh local

step "done"
echo "$summary"
