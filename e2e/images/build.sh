#!/usr/bin/env bash
# Builds commlab's container images without Docker: each root file system is
# assembled from this machine's binaries and packed into an OCI image with
# umoci (layout and reasons: README.md beside this script).
#
#   e2e/images/build.sh [IMAGE...]                 build every image, or the ones named
#   e2e/images/build.sh --import SOCKET [IMAGE...] build, then import into that containerd
#   e2e/images/build.sh --list                     print each built image's name and archive
#
# IMAGE is one of: commlab pause postgres nats. Archives land in
# ${COMMLAB_CACHE:-$HOME/.cache/commlab}/images/<image>.oci.tar. The commlab
# image always comes from the current tree's release build; an image whose
# inputs (binaries, Debian packages, these scripts) did not change is kept.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=images.sh
source "$(dirname "${BASH_SOURCE[0]}")/images.sh"

REPO_ROOT="$(cd "$IMAGES_SCRIPT_DIR/../.." && pwd)"
POSTGRES_MAJOR=15
PAUSE_VERSION=3.10
# pause.c ships in the k8s.io/kubernetes module, at the control plane's version.
PAUSE_SOURCE_MODULE="k8s.io/kubernetes@${KUBE_VERSION:-v1.34.4}"
# Debian 12's merged /usr; every image with shared libraries starts from it.
ROOT_LINKS=(bin:usr/bin sbin:usr/sbin lib:usr/lib lib64:usr/lib64)
# The busybox applets the PostgreSQL entrypoint uses (and a shell for exec).
BUSYBOX_APPLETS=(sh cat chmod chown id ls mkdir rm sed)

usage() {
  die "usage: build.sh [--import SOCKET] [IMAGE...] | --list (IMAGE: ${IMAGES[*]})"
}

import_socket=""
wanted=()
while (($#)); do
  case "$1" in
    --import)
      [[ -n "${2:-}" ]] || usage
      import_socket="$2"
      shift 2
      ;;
    --list)
      for name in "${IMAGES[@]}"; do
        if [[ -f "$(image_archive "$name")" ]]; then
          printf '%s %s\n' "$(image_ref "$name")" "$(image_archive "$name")"
        fi
      done
      exit 0
      ;;
    -*) usage ;;
    *)
      known_image "$1"
      wanted+=("$1")
      shift
      ;;
  esac
done
((${#wanted[@]})) || wanted=("${IMAGES[@]}")

# --- prerequisites ---

((EUID == 0)) || die "build.sh runs as root: the layers record files owned by uids 999 and 65532"
need() {
  command -v "$1" >/dev/null || die "$1 is missing: apt-get install -y $2"
}
need umoci umoci
need jq jq
need ldd libc-bin
need chroot coreutils
need dpkg-query dpkg
for name in "${wanted[@]}"; do
  case "$name" in
    commlab) need cargo "Rust (rustup)" ;;
    pause) need gcc gcc && need go "Go (>= 1.24)" ;;
    postgres)
      [[ -x "/usr/lib/postgresql/$POSTGRES_MAJOR/bin/postgres" ]] ||
        die "PostgreSQL $POSTGRES_MAJOR is missing: apt-get install -y postgresql-$POSTGRES_MAJOR"
      need setpriv util-linux
      if [[ ! -x /bin/busybox ]] || ldd /bin/busybox >/dev/null 2>&1; then
        die "a static busybox is missing: apt-get install -y busybox-static"
      fi
      [[ -d /usr/lib/locale/C.utf8 ]] || die "the C.utf8 locale is missing: apt-get install -y libc-bin"
      ;;
    nats) need nats-server nats-server ;;
  esac
done

lock images
mkdir -p "$IMAGE_CACHE"

# --- helpers ---

sha256() { sha256sum | cut -d' ' -f1; }

# Every input of a recipe: these scripts, and each installed Debian
# package's version (the binaries and libraries the images copy).
RECIPE_HASH="$(cat "$IMAGES_SCRIPT_DIR/build.sh" "$IMAGES_SCRIPT_DIR/images.sh" \
  "$IMAGES_SCRIPT_DIR/postgres-entrypoint.sh" | sha256)"
PACKAGES_HASH="$(dpkg-query -W -f='${binary:Package} ${Version}\n' | sha256)"

# seconds_since START: seconds elapsed since an $EPOCHREALTIME reading.
seconds_since() {
  awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'
}
megabytes() {
  awk -v n="$1" 'BEGIN { printf "%.1f", n / 1000000 }'
}

# put ROOT SRC [DEST]: copies the file SRC (following symlinks) to DEST
# (default: the same path) inside ROOT.
put() {
  local root="$1" src="$2" dest="${3:-$2}"
  mkdir -p "$root$(dirname "$dest")"
  cp -L --preserve=mode,timestamps "$src" "$root$dest"
}

# put_libs ROOT FILE...: copies into ROOT exactly the shared libraries, and the
# dynamic loader, that ldd lists for each dynamically linked FILE, at the
# paths ldd resolves them to. Static executables need nothing.
put_libs() {
  local root="$1" file out line lib
  local -A libs=()
  shift
  for file in "$@"; do
    out="$(ldd "$file" 2>&1)" || continue
    while read -r line; do
      case "$line" in
        *"not found"*) die "$file needs a library this machine lacks: $line" ;;
        *"=> /"*)
          lib="${line#*=> }"
          libs["${lib%% (*}"]=1
          ;;
        /*) libs["${line%% (*}"]=1 ;;
      esac
    done <<<"$out"
  done
  for lib in "${!libs[@]}"; do
    put "$root" "$lib"
  done
}

# skeleton ROOT USER:UID:HOME...: the directories every image has (/tmp,
# /etc, merged /usr), and /etc/passwd and /etc/group with root and USERs.
skeleton() {
  local root="$1" entry name uid home link
  shift
  mkdir -p "$root/etc" "$root/usr/bin" "$root/usr/sbin" "$root/usr/lib" "$root/usr/lib64"
  install -d -m 1777 "$root/tmp"
  install -d -m 0700 "$root/root"
  for link in "${ROOT_LINKS[@]}"; do
    ln -s "${link#*:}" "$root/${link%%:*}"
  done
  printf 'root:x:0:0:root:/root:/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\n' >"$root/etc/group"
  for entry in "$@"; do
    IFS=: read -r name uid home <<<"$entry"
    printf '%s:x:%s:%s:%s:%s:/sbin/nologin\n' "$name" "$uid" "$uid" "$name" "$home" >>"$root/etc/passwd"
    printf '%s:x:%s:\n' "$name" "$uid" >>"$root/etc/group"
  done
  printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
}

# --- the images: ref_NAME, key_NAME, populate_NAME ROOT, check_NAME ROOT, config_NAME ---

TARGET_DIR=""
build_commlab_binaries() {
  local start
  start="$EPOCHREALTIME"
  log "cargo build --release --locked -p commlab-controller -p commlab-workload"
  (cd "$REPO_ROOT" && cargo build --release --locked -p commlab-controller -p commlab-workload)
  TARGET_DIR="$(cd "$REPO_ROOT" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)"
  log "cargo build: $(seconds_since "$start") s"
}
ref_commlab() { echo "localhost/commlab/commlab:dev"; }
key_commlab() {
  echo "$PACKAGES_HASH"
  cat "$TARGET_DIR/release/commlab-operator" "$TARGET_DIR/release/commlab" | sha256
}
populate_commlab() {
  local root="$1" bin
  skeleton "$root" nobody:65534:/nonexistent nonroot:65532:/home/nonroot
  install -d -m 0700 -o 65532 -g 65532 "$root/home/nonroot"
  for bin in commlab-operator commlab; do
    put "$root" "$TARGET_DIR/release/$bin" "/usr/local/bin/$bin"
  done
  put_libs "$root" "$root/usr/local/bin/commlab-operator" "$root/usr/local/bin/commlab"
  # Both binaries link rustls-native-certs, which reads the system's CA bundle.
  put "$root" /etc/ssl/certs/ca-certificates.crt
}
check_commlab() {
  chroot "$1" /usr/local/bin/commlab --version
  chroot "$1" /usr/local/bin/commlab-operator --help >/dev/null
}
config_commlab() {
  printf '%s\n' --config.user=65532:65532 --config.workingdir=/home/nonroot \
    --config.entrypoint=commlab-operator --config.cmd=run \
    --config.env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.env=SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
}

PAUSE_SOURCE=""
find_pause_source() {
  local dir
  dir="$(go mod download -json "$PAUSE_SOURCE_MODULE" | jq -r .Dir)"
  PAUSE_SOURCE="$dir/build/pause/linux/pause.c"
  [[ -f "$PAUSE_SOURCE" ]] || die "pause.c not found in $PAUSE_SOURCE_MODULE (looked at $PAUSE_SOURCE)"
}
ref_pause() { echo "localhost/commlab/pause:$PAUSE_VERSION"; }
key_pause() {
  echo "$PACKAGES_HASH"
  sha256 <"$PAUSE_SOURCE"
}
populate_pause() {
  gcc -static -O2 -DVERSION="$PAUSE_VERSION" -o "$1/pause" "$PAUSE_SOURCE"
  strip "$1/pause"
}
check_pause() { chroot "$1" /pause -v; }
# The user of the upstream pause image.
config_pause() { printf '%s\n' --config.entrypoint=/pause --config.user=65535:65535; }

ref_postgres() { echo "localhost/commlab/postgres:$POSTGRES_MAJOR"; }
key_postgres() { echo "$PACKAGES_HASH"; }
populate_postgres() {
  local root="$1" pg="/usr/lib/postgresql/$POSTGRES_MAJOR" applet
  skeleton "$root" postgres:999:/var/lib/postgresql
  mkdir -p "$root/usr/lib/postgresql" "$root/usr/share/postgresql" "$root/usr/lib/locale"
  cp -a "$pg" "$root/usr/lib/postgresql/"
  # JIT needs LLVM (over 100 MB); without llvmjit.so the server runs without JIT.
  rm -rf "$root$pg/lib/bitcode" "$root$pg"/lib/llvmjit*
  cp -a "/usr/share/postgresql/$POSTGRES_MAJOR" "$root/usr/share/postgresql/"
  rm -rf "$root/usr/share/postgresql/$POSTGRES_MAJOR/man"
  put_libs "$root" "$root$pg"/bin/* "$root$pg"/lib/*.so
  # Debian's PostgreSQL reads time zones from the system's tzdata.
  cp -a /usr/share/zoneinfo "$root/usr/share/"
  rm -rf "$root/usr/share/zoneinfo/right" "$root/usr/share/zoneinfo/localtime"
  cp -a /usr/lib/locale/C.utf8 "$root/usr/lib/locale/"
  # initdb runs `locale -a` to add the system's locales as collations.
  put "$root" /usr/bin/locale
  put_libs "$root" /usr/bin/locale
  # util-linux's setpriv (busybox's has no --reuid), for a start as root.
  put "$root" /usr/bin/setpriv
  put_libs "$root" /usr/bin/setpriv
  put "$root" /bin/busybox /usr/bin/busybox
  for applet in "${BUSYBOX_APPLETS[@]}"; do
    ln -s busybox "$root/usr/bin/$applet"
  done
  install -D -m 0755 "$IMAGES_SCRIPT_DIR/postgres-entrypoint.sh" "$root/usr/local/bin/postgres-entrypoint"
  install -d -m 0755 -o 999 -g 999 "$root/var/lib/postgresql"
  install -d -m 0700 -o 999 -g 999 "$root/var/lib/postgresql/data"
  # The socket directory Debian's build defaults to; writable by any uid, as
  # upstream's. A real /var/run, not Debian's link to /run: the kubelet
  # leaves /run alone, but other runtimes (`ctr run`) mount a tmpfs there.
  install -d -m 3777 -o 999 -g 999 "$root/var/run/postgresql"
}
check_postgres() {
  local bin="/usr/lib/postgresql/$POSTGRES_MAJOR/bin"
  chroot "$1" "$bin/postgres" --version
  chroot "$1" "$bin/initdb" --version >/dev/null
  chroot "$1" "$bin/pg_isready" --version >/dev/null
  chroot "$1" /usr/bin/setpriv --version >/dev/null
  chroot "$1" /bin/sh -c 'test -x /usr/local/bin/postgres-entrypoint'
}
config_postgres() {
  printf '%s\n' --config.user=999:999 \
    --config.entrypoint=/usr/local/bin/postgres-entrypoint --config.cmd=postgres \
    --config.env="PATH=/usr/lib/postgresql/$POSTGRES_MAJOR/bin:/usr/local/bin:/usr/bin:/bin" \
    --config.env=LANG=C.UTF-8 --config.env=PGDATA=/var/lib/postgresql/data \
    --config.exposedports=5432/tcp --config.stopsignal=SIGINT
}

# nats_tag: major.minor of the host's nats-server ("nats-server: v2.9.10" -> 2.9).
nats_tag() {
  local version
  version="$(nats-server --version)"
  version="${version##*v}"
  echo "${version%.*}"
}
ref_nats() { echo "localhost/commlab/nats:$(nats_tag)"; }
key_nats() { echo "$PACKAGES_HASH"; }
populate_nats() {
  local root="$1"
  skeleton "$root" nonroot:65532:/home/nonroot
  put "$root" "$(command -v nats-server)" /usr/local/bin/nats-server
  put_libs "$root" "$root/usr/local/bin/nats-server"
  # JetStream's store when no volume is mounted there.
  install -d -m 0755 -o 65532 -g 65532 "$root/data"
}
check_nats() { chroot "$1" /usr/local/bin/nats-server --version; }
# SIGINT: nats-server shuts down the same way as on SIGTERM but exits 0 (1 on SIGTERM).
config_nats() {
  printf '%s\n' --config.user=65532:65532 --config.entrypoint=/usr/local/bin/nats-server \
    --config.exposedports=4222/tcp --config.exposedports=6222/tcp --config.exposedports=8222/tcp \
    --config.stopsignal=SIGINT
}

# --- packing ---

WORK=""
trap '[[ -z "$WORK" ]] || rm -rf "$WORK"' EXIT
SUMMARY=()

# build_image NAME: packs image NAME unless its archive was built from the
# same inputs; records its sizes and build time in <image>.info.
build_image() {
  local name="$1" ref key archive info start tag layout rootfs layers
  ref="$("ref_$name")"
  key="$( (echo "$RECIPE_HASH" && "key_$name") | sha256)"
  archive="$(image_archive "$name")"
  info="$IMAGE_CACHE/$name.info"
  if [[ -f "$archive" && -f "$info" && "$(cat "$IMAGE_CACHE/$name.key" 2>/dev/null)" == "$key" &&
    "$(cat "$(image_ref_file "$name")")" == "$ref" ]]; then
    log "$ref: inputs unchanged, keeping $archive"
    SUMMARY+=("$(cat "$info") cached")
    return
  fi
  start="$EPOCHREALTIME"
  log "$ref: building"
  WORK="$(mktemp -d "$IMAGE_CACHE/.build-$name.XXXXXX")"
  tag="${ref##*:}"
  layout="$WORK/oci"
  umoci init --layout "$layout"
  umoci new --image "$layout:$tag"
  # unpack/repack rather than `umoci insert`: umoci 0.4.7's insert leaves
  # layers without the tar end-of-archive blocks (umoci issue 436).
  umoci unpack --image "$layout:$tag" "$WORK/bundle" >/dev/null
  "populate_$name" "$WORK/bundle/rootfs"
  "check_$name" "$WORK/bundle/rootfs" >&2
  umoci repack --history.created_by="e2e/images/build.sh $name" --image "$layout:$tag" "$WORK/bundle"
  local config=()
  mapfile -t config < <("config_$name")
  umoci config --history.created_by="e2e/images/build.sh $name (config)" --image "$layout:$tag" "${config[@]}"
  umoci gc --layout "$layout"
  # containerd's importer names the image after this annotation (else "$tag").
  jq --arg ref "$ref" '.manifests[0].annotations["io.containerd.image.name"] = $ref' \
    "$layout/index.json" >"$WORK/index.json"
  mv "$WORK/index.json" "$layout/index.json"
  tar -C "$layout" --sort=name --owner=0 --group=0 --numeric-owner \
    -cf "$WORK/image.tar" oci-layout index.json blobs

  rootfs="$(du -s --block-size=1 --apparent-size "$WORK/bundle/rootfs" | cut -f1)"
  local manifest
  manifest="$(jq -r '.manifests[0].digest | sub(":"; "/")' "$layout/index.json")"
  layers="$(jq '[.layers[].size] | add' "$layout/blobs/$manifest")"
  mv -f "$WORK/image.tar" "$archive"
  echo "$ref" >"$(image_ref_file "$name")"
  echo "$key" >"$IMAGE_CACHE/$name.key"
  printf '%s rootfs=%sMB compressed=%sMB built_in=%ss\n' "$ref" "$(megabytes "$rootfs")" \
    "$(megabytes "$layers")" "$(seconds_since "$start")" >"$info"
  rm -rf "$WORK"
  WORK=""
  SUMMARY+=("$(cat "$info") new")
  log "$ref: $archive"
}

for name in "${wanted[@]}"; do
  case "$name" in
    commlab) build_commlab_binaries ;;
    pause) find_pause_source ;;
  esac
  build_image "$name"
done

for line in "${SUMMARY[@]}"; do
  read -r ref sizes <<<"$line"
  printf '%-34s %s\n' "$ref" "$sizes" >&2
done
if [[ -n "$import_socket" ]]; then
  import_images "$import_socket" "${wanted[@]}"
fi
