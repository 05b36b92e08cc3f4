#!/usr/bin/env bash
# Builds Chaos Mesh's chaos-controller-manager and chaos-daemon from their Go
# module, once per pinned version, and puts Chaos Mesh's own CRDs beside them.
#
#   e2e/chaos-mesh/build.sh                  build what is missing, print the bin dir
#   e2e/chaos-mesh/build.sh --print-dir      print the bin dir only
#   e2e/chaos-mesh/build.sh --print-bin NAME print one file's path
#                                            (chaos-controller-manager, chaos-daemon, crd.yaml)
#
# Files land in ${COMMLAB_CACHE:-$HOME/.cache/commlab}/bin/chaos-mesh-<commit>/.
set -euo pipefail

CHAOS_MESH_SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$CHAOS_MESH_SCRIPT_DIR/lib.sh"

FILES=(chaos-controller-manager chaos-daemon crd.yaml)

case "${1:-}" in
  --print-dir)
    echo "$CHAOS_MESH_DIR"
    exit 0
    ;;
  --print-bin)
    case "${2:-}" in
      chaos-controller-manager | chaos-daemon | crd.yaml) echo "$CHAOS_MESH_DIR/$2" ;;
      *) die "usage: build.sh --print-bin NAME (one of: ${FILES[*]})" ;;
    esac
    exit 0
    ;;
  "") ;;
  *) die "unknown argument: $1 (usage: build.sh [--print-dir | --print-bin NAME])" ;;
esac

# built: every file is present and was made from the pinned versions.
built() {
  local f
  for f in "${FILES[@]}"; do
    [[ -s "$CHAOS_MESH_DIR/$f" ]] || return 1
  done
  [[ "$(cat "$CHAOS_MESH_DIR/VERSIONS" 2>/dev/null)" == "$(pinned_versions)" ]]
}

pinned_versions() {
  printf 'github.com/chaos-mesh/chaos-mesh %s\ngithub.com/chaos-mesh/chaos-mesh/api %s\n' \
    "$CHAOS_MESH_VERSION" "$CHAOS_MESH_API_VERSION"
}

if built; then
  log "chaos-mesh $CHAOS_MESH_VERSION: cached"
  echo "$CHAOS_MESH_DIR"
  exit 0
fi

command -v go >/dev/null 2>&1 || die "go is not on PATH; install Go >= 1.25 to build Chaos Mesh"
# chaos-daemon uses cgo (pkg/ptrace wraps waitpid and process_vm_*): a C
# compiler and the libc headers are all it needs.
command -v gcc >/dev/null 2>&1 || die "gcc is not on PATH; chaos-daemon is built with cgo"
command -v python3 >/dev/null 2>&1 || die "python3 is required (to read the module's go.mod)"

# Concurrent runs of this script take turns (the lock is released on exit).
lock chaos-mesh-build
if built; then
  log "chaos-mesh $CHAOS_MESH_VERSION: built by another run"
  echo "$CHAOS_MESH_DIR"
  exit 0
fi

total_start=$(date +%s)
src="$SRC_ROOT/chaos-mesh-$CHAOS_MESH_SHORT"
mkdir -p "$src" "$BIN_ROOT"
cd "$src"

log "download github.com/chaos-mesh/chaos-mesh@$CHAOS_MESH_VERSION"
module_dir="$(go mod download -json "github.com/chaos-mesh/chaos-mesh@$CHAOS_MESH_VERSION" |
  python3 -c 'import json, sys; d = json.load(sys.stdin); print(d.get("Dir") or sys.exit(d.get("Error", "no Dir")))')"
[[ -f "$module_dir/go.mod" ]] || die "no go.mod in $module_dir"
[[ -f "$module_dir/manifests/crd.yaml" ]] || die "no manifests/crd.yaml in $module_dir"

# The wrapper module. Chaos Mesh's go.mod requires its api module at v0.0.0
# and replaces it with ./api (not part of the main module's zip); it also
# pins every k8s.io module and runtime-spec with replace directives, which
# only apply inside that module. Repeat them here: the api module at its own
# pinned pseudo-version, and every versioned replace as it stands.
module_json="$(go mod edit -json "$module_dir/go.mod")"
# py EXPR: evaluate a Python expression over the module's go.mod as `mod`.
py() { python3 -c "import json, sys; mod = json.load(sys.stdin); $1" <<<"$module_json"; }
go_version="$(py 'print(mod["Go"])')"
# Every requirement of Chaos Mesh's own go.mod, so that the wrapper selects
# the versions upstream selected. Without them `go mod tidy` looks up a
# package that only a dependency's test imports (github.com/pingcap/log, via
# pingcap/failpoint) at its newest version instead of upstream's.
mapfile -t requires < <(py '
for r in mod.get("Require") or []:
    if r["Path"] != "github.com/chaos-mesh/chaos-mesh/api":
        print("-require=" + r["Path"] + "@" + r["Version"])
')
# Its versioned replace directives (every k8s.io module, runtime-spec); the
# directory one (api => ./api) is replaced by the api module's pseudo-version.
mapfile -t replaces < <(py '
for r in mod.get("Replace") or []:
    old, new = r["Old"], r["New"]
    if "Version" in new:
        lhs = old["Path"] + ("@" + old["Version"] if old.get("Version") else "")
        print("-replace=" + lhs + "=" + new["Path"] + "@" + new["Version"])
')
((${#requires[@]} && ${#replaces[@]})) || die "no require or replace directives read from $module_dir/go.mod"

rm -f go.mod go.sum
go mod init commlab.dev/build/chaos-mesh >/dev/null 2>&1
go mod edit -go="$go_version" \
  -require="github.com/chaos-mesh/chaos-mesh@$CHAOS_MESH_VERSION" \
  -require="github.com/chaos-mesh/chaos-mesh/api@$CHAOS_MESH_API_VERSION" \
  -replace="github.com/chaos-mesh/chaos-mesh/api=github.com/chaos-mesh/chaos-mesh/api@$CHAOS_MESH_API_VERSION" \
  "${requires[@]}" "${replaces[@]}"
cat >tools.go <<'GO'
//go:build tools

// Package tools names the Chaos Mesh commands this module builds.
package tools

import (
	_ "github.com/chaos-mesh/chaos-mesh/cmd/chaos-controller-manager"
	_ "github.com/chaos-mesh/chaos-mesh/cmd/chaos-daemon"
)
GO
log "go mod tidy (the first run downloads the module graph)"
step_start=$(date +%s)
go mod tidy 2>&1 | tee go-mod-tidy.log >&2
# "finding module for package" means a version was looked up, not pinned.
! grep -q 'finding module for package' go-mod-tidy.log ||
  die "go mod tidy had to look up a module's newest version (see $src/go-mod-tidy.log)"
[[ "$(go list -m github.com/chaos-mesh/chaos-mesh)" == "github.com/chaos-mesh/chaos-mesh $CHAOS_MESH_VERSION" ]] ||
  die "go mod tidy moved github.com/chaos-mesh/chaos-mesh off $CHAOS_MESH_VERSION (see $src/go.mod)"
[[ "$(go list -m github.com/chaos-mesh/chaos-mesh/api)" == *"=> github.com/chaos-mesh/chaos-mesh/api $CHAOS_MESH_API_VERSION" ]] ||
  die "github.com/chaos-mesh/chaos-mesh/api does not resolve to $CHAOS_MESH_API_VERSION (see $src/go.mod)"
log "go mod tidy: done in $(($(date +%s) - step_start))s"

ldflags="-s -w"
ldflags+=" -X github.com/chaos-mesh/chaos-mesh/pkg/version.gitVersion=$CHAOS_MESH_VERSION"
ldflags+=" -X github.com/chaos-mesh/chaos-mesh/pkg/version.gitCommit=$CHAOS_MESH_SHORT"

# Build next to the cache, so the final mv is a rename.
out="$(mktemp -d "$BIN_ROOT/.chaos-mesh-build.XXXXXX")"
trap 'rm -rf "$out"' EXIT

step_start=$(date +%s)
log "build chaos-controller-manager (CGO_ENABLED=0): start"
CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/chaos-controller-manager" \
  github.com/chaos-mesh/chaos-mesh/cmd/chaos-controller-manager
log "build chaos-controller-manager: done in $(($(date +%s) - step_start))s"

# TimeChaos would inject two object files the upstream Makefile compiles into
# pkg/time/fakeclock/ before this build; the module cache is read-only and
# commlab uses no TimeChaos, so the daemon embeds only the empty placeholder.
step_start=$(date +%s)
log "build chaos-daemon (CGO_ENABLED=1): start"
CGO_ENABLED=1 go build -trimpath -ldflags "$ldflags" -o "$out/chaos-daemon" \
  github.com/chaos-mesh/chaos-mesh/cmd/chaos-daemon
log "build chaos-daemon: done in $(($(date +%s) - step_start))s"

cp "$module_dir/manifests/crd.yaml" "$out/crd.yaml"
chmod 644 "$out/crd.yaml"
pinned_versions >"$out/VERSIONS"

mkdir -p "$CHAOS_MESH_DIR"
for f in "${FILES[@]}" VERSIONS; do
  mv -f "$out/$f" "$CHAOS_MESH_DIR/$f"
done
log "chaos-mesh $CHAOS_MESH_VERSION built in $(($(date +%s) - total_start))s"
echo "$CHAOS_MESH_DIR"
