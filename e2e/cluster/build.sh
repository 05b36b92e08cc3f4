#!/usr/bin/env bash
# Builds the control-plane binaries from source with Go, once per version.
#
#   e2e/cluster/build.sh                  build what is missing, print the bin root
#   e2e/cluster/build.sh --print-bin-dir  print the bin root only
#   e2e/cluster/build.sh --print-bin NAME print one binary's path (e.g. kubectl, helm)
#
# Binaries land in ${COMMLAB_CACHE:-$HOME/.cache/commlab}/bin/<component>-<version>/.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case "${1:-}" in
  --print-bin-dir)
    echo "$BIN_ROOT"
    exit 0
    ;;
  --print-bin)
    [[ -n "${2:-}" ]] || die "usage: build.sh --print-bin NAME (one of: ${COMPONENTS[*]})"
    component_bin "$2"
    exit 0
    ;;
  "") ;;
  *) die "unknown argument: $1 (usage: build.sh [--print-bin-dir | --print-bin NAME])" ;;
esac

lock build
export CGO_ENABLED=0
mkdir -p "$BIN_ROOT" "$SRC_ROOT"

need_go() {
  command -v go >/dev/null 2>&1 ||
    die "go is not on PATH; install Go >= 1.24 to build the control plane (missing: $*)"
}

have() { [[ -x "$(component_bin "$1")" ]]; }
all_have() {
  local c
  for c in "$@"; do have "$c" || return 1; done
}

# timed NAME CMD...: run a build step and report how long it took.
timed() {
  local name="$1" start end
  shift
  need_go "$name"
  log "build $name: start"
  start=$(date +%s)
  "$@"
  end=$(date +%s)
  log "build $name: done in $((end - start))s"
}

build_etcd() {
  local src="$SRC_ROOT/etcd-$ETCD_VERSION"
  mkdir -p "$src"
  # The etcd binary's main lives in the root module go.etcd.io/etcd/v3, whose
  # go.mod uses replace directives, so `go install` refuses it. A two-line
  # wrapper calling etcdmain.Main is the same program.
  cat >"$src/main.go" <<'GO'
// Command etcd: the etcd server, built from go.etcd.io/etcd/server/v3.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
GO
  (
    cd "$src"
    [[ -f go.mod ]] || go mod init commlab.dev/build/etcd >/dev/null 2>&1
    go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    go mod tidy >/dev/null
    mkdir -p "$(component_dir etcd)"
    go build -trimpath -o "$(component_bin etcd).partial" .
    mv "$(component_bin etcd).partial" "$(component_bin etcd)"
  )
}

# kube_ldflags: what kubernetes' hack/lib/version.sh stamps, so /version is real.
kube_ldflags() {
  local minor="${KUBE_VERSION#v1.}"
  minor="${minor%%.*}"
  local flags=() pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=(
      "-X" "$pkg.gitVersion=$KUBE_VERSION"
      "-X" "$pkg.gitMajor=1"
      "-X" "$pkg.gitMinor=$minor"
      "-X" "$pkg.gitTreeState=clean"
      "-X" "$pkg.buildDate=1970-01-01T00:00:00Z"
    )
  done
  echo "-s -w ${flags[*]}"
}

build_kube() {
  local missing=() c
  for c in "${KUBE_COMPONENTS[@]}"; do
    have "$c" || missing+=("$c")
  done
  ((${#missing[@]})) || return 0

  local src="$SRC_ROOT/kubernetes-$KUBE_VERSION"
  mkdir -p "$src"
  (
    cd "$src"
    go mod download "k8s.io/kubernetes@$KUBE_VERSION"
    local kube_mod
    kube_mod="$(go env GOMODCACHE)/k8s.io/kubernetes@$KUBE_VERSION/go.mod"
    [[ -f "$kube_mod" ]] || die "k8s.io/kubernetes go.mod not found at $kube_mod"

    # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them
    # with ./staging/src/...; a module depending on it must pin each one.
    local staging=()
    mapfile -t staging < <(
      sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#\1#p' "$kube_mod" | sort -u
    )
    ((${#staging[@]})) || die "no staging replace directives found in $kube_mod"

    rm -f go.mod go.sum
    {
      echo "module commlab.dev/build/kubernetes"
      echo
      echo "go $(sed -n 's/^go \([0-9.]*\).*/\1/p' "$kube_mod")"
      echo
      echo "require k8s.io/kubernetes $KUBE_VERSION"
      echo
      echo "replace ("
      local m
      for m in "${staging[@]}"; do
        echo "	$m => $m $KUBE_STAGING_VERSION"
      done
      echo ")"
    } >go.mod
    cat >tools.go <<'GO'
//go:build tools

// Package tools pins the kubernetes commands this module builds.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
    # tidy reads tools.go (it considers every build tag) and fills go.sum.
    # Never `go get` the packages: that would upgrade k8s.io/kubernetes.
    go mod tidy
    grep -q "^require k8s.io/kubernetes $KUBE_VERSION\$" go.mod ||
      die "go mod tidy changed the k8s.io/kubernetes version in $src/go.mod"
    local pkgs=()
    for c in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
    local out
    # Build next to the cache so the final mv is an atomic rename.
    out="$(mktemp -d "$BIN_ROOT/.build.XXXXXX")"
    go build -trimpath -ldflags "$(kube_ldflags)" -o "$out/" "${pkgs[@]}"
    for c in "${missing[@]}"; do
      mkdir -p "$(component_dir "$c")"
      mv "$out/$c" "$(component_bin "$c")"
    done
    rmdir "$out"
  )
}

build_kwok() {
  GOBIN="$(component_dir kwok)" go install -trimpath "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
}

build_helm() {
  # helm reports only its minor version unless the release build's ldflag is set.
  GOBIN="$(component_dir helm)" go install -trimpath \
    -ldflags "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

build_coredns() {
  # Only the plugins in CoreDNS's default plugin.cfg; the node's Corefile
  # uses kubernetes, cache, errors, health and ready.
  GOBIN="$(component_dir coredns)" go install -trimpath \
    "github.com/coredns/coredns@$COREDNS_VERSION"
}

total_start=$(date +%s)
for step in kube etcd kwok helm coredns; do
  case "$step" in
    kube)
      if all_have "${KUBE_COMPONENTS[@]}"; then
        log "kubernetes $KUBE_VERSION: cached"
      else
        timed "kubernetes $KUBE_VERSION (${KUBE_COMPONENTS[*]})" build_kube
      fi
      ;;
    *)
      if have "$step"; then
        log "$step $(component_version "$step"): cached"
      else
        timed "$step $(component_version "$step")" "build_$step"
      fi
      ;;
  esac
done
for c in "${COMPONENTS[@]}"; do
  have "$c" || die "missing after build: $(component_bin "$c")"
done
log "all binaries ready in $(($(date +%s) - total_start))s"
echo "$BIN_ROOT"
